#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
//
// Builds platform-launcher's Cockpit page (as Cockpit's starter-kit and
// cockpit-machines do: React + PatternFly bundled by esbuild) into OUTDIR:
//
//   node build.mjs [--outdir DIR]        (default: dist, the committed copy)
//
// Output: index.html, manifest.json, platform-launcher.js, platform-launcher.css
// and the licences of what the bundle holds (platform-launcher.LEGAL.txt).
// A production build, minified, no source map, deterministic: the same
// sources and node_modules give the same bytes (test_cockpit.py compares the
// committed dist/ with a fresh build). The page loads Cockpit's own cockpit.js
// (../base1/cockpit.js) and talks to the bus only through it; nothing inline
// (Cockpit's Content-Security-Policy).
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
let outdir = path.join(here, 'dist');
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
    if (args[i] === '--outdir' && i + 1 < args.length)
        outdir = path.resolve(args[++i]);
    else if (args[i].startsWith('--outdir='))
        outdir = path.resolve(args[i].slice('--outdir='.length));
    else {
        process.stderr.write('build.mjs: unknown argument ' + args[i] + '\n');
        process.exit(2);
    }
}

// PatternFly's base stylesheet, without its @font-face rules (the page uses
// the fonts Cockpit serves, src/fonts.css), its Font Awesome and pf-icons
// icon fonts (the page draws icons as SVG from @patternfly/react-icons) and
// the tokens of the themes Cockpit does not use (high contrast, felt, glass):
// a third of its size. Cockpit's light and dark themes stay whole.
const BASE_CSS = /@patternfly[\\/]patternfly[\\/]patternfly-base\.css$/;
const UNUSED_THEMES = /^:root:where\([^)]*pf-v6-theme-(high-contrast|felt|glass)/;

function trimBaseCss(text, file) {
    const from = text.indexOf('@font-face');
    const to = text.indexOf('\n.pf-v6-svg {');
    if (from < 0 || to < from)
        throw new Error(file + ': the font and icon-font rules were not where build.mjs expects them');
    const out = [];
    let skipping = false;
    let dropped = 0;
    for (const line of (text.slice(0, from) + text.slice(to + 1)).split('\n')) {
        if (!skipping && UNUSED_THEMES.test(line)) {
            skipping = true;
            dropped++;
        }
        if (!skipping)
            out.push(line);
        else if (line === '}')
            skipping = false;
    }
    if (dropped === 0 || skipping)
        throw new Error(file + ': the theme blocks were not where build.mjs expects them');
    return out.join('\n');
}

const patternflyBaseTrimmed = {
    name: 'patternfly-base-trimmed',
    setup(build) {
        build.onLoad({ filter: BASE_CSS }, args => ({
            contents: trimBaseCss(fs.readFileSync(args.path, 'utf8'), args.path),
            loader: 'css',
        }));
    },
};

const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { 'platform-launcher': 'src/index.jsx' },
    bundle: true,
    outdir,
    format: 'iife',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    sourcemap: false,
    jsx: 'automatic',
    loader: { '.js': 'jsx' },
    define: { 'process.env.NODE_ENV': '"production"' },
    // Cockpit serves its fonts at /cockpit/static/fonts/ (src/fonts.css); the
    // SVGs are the backgrounds of PatternFly's "glass" theme, which the page
    // does not use (as Cockpit's starter-kit, they stay references).
    external: ['*.woff2', '*.svg'],
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'warning',
    metafile: true,
    plugins: [patternflyBaseTrimmed],
});

// The licences of the bundled packages, from their own files (what a
// legalComments: 'external' build would do, but complete and in a fixed order).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
    const m = input.match(/^node_modules\/((?:@[^/]+\/)?[^/]+)\//);
    if (m && !packages.has(m[1]))
        packages.set(m[1], null);
}
let legal = 'Licences of the packages bundled into platform-launcher.js and platform-launcher.css\n';
for (const name of [...packages.keys()].sort()) {
    const dir = path.join(here, 'node_modules', name);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    const licence = fs.readdirSync(dir).sort().find(f => /^licen[cs]e/i.test(f));
    legal += '\n==== ' + name + ' ' + pkg.version + ' (' + pkg.license + ') ====\n';
    if (licence)
        legal += fs.readFileSync(path.join(dir, licence), 'utf8').trimEnd() + '\n';
}
fs.writeFileSync(path.join(outdir, 'platform-launcher.LEGAL.txt'), legal);

for (const f of ['index.html', 'manifest.json'])
    fs.copyFileSync(path.join(here, 'src', f), path.join(outdir, f));

const sizes = ['platform-launcher.js', 'platform-launcher.css']
        .map(f => f + ' ' + Math.round(fs.statSync(path.join(outdir, f)).size / 1024) + ' KiB');
process.stdout.write('build.mjs: ' + outdir + ': ' + sizes.join(', ') + '\n');
