// SPDX-License-Identifier: Apache-2.0
//
// Drives Debian's chromium (headless) with playwright-core for
// tests/integration/test_cockpit.py. One JSON command per line on stdin, one
// JSON answer per line on stdout ({"ok": true, "result": ...} or
// {"ok": false, "error": "..."}); the page's console and errors go to stderr.
//
//   {"cmd": "goto", "url": "http://127.0.0.1:9090/..."}
//   {"cmd": "waitFor", "js": "document.title == 'x'", "timeout": 10000}
//   {"cmd": "eval", "js": "document.body.innerText"}
//   {"cmd": "click", "selector": "#vm-stop"}
//   {"cmd": "hover", "selector": "#vm-stop"}
//   {"cmd": "press", "key": "Escape"}
//   {"cmd": "context", "viewport": {"width": 390, "height": 844}, "colorScheme": "dark",
//    "locale": "de-DE"}        a fresh page with these (default: 1280x1000, light, en-US)
//   {"cmd": "fill", "selector": "#env-key", "value": "KEY"}
//   {"cmd": "screenshot", "path": "/tmp/x.png"}
//   {"cmd": "cspViolations"}   what the page's Content Security Policy refused
//   {"cmd": "pageErrors"}      uncaught exceptions in the page
//   {"cmd": "quit"}
//
// Chromium gets its own environment without DBUS_SYSTEM_BUS_ADDRESS (it must
// not talk to the test's private bus), a fresh profile (playwright's temporary
// --user-data-dir) and no network beyond the page it is sent to.
'use strict';

const readline = require('readline');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function reply(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

async function main() {
    const env = { ...process.env };
    delete env.DBUS_SYSTEM_BUS_ADDRESS;
    delete env.DBUS_SESSION_BUS_ADDRESS;
    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        env,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
               '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    });
    const cspViolations = [];
    const pageErrors = [];
    let context = null;
    let page = null;

    async function newPage(c) {
        if (context)
            await context.close();
        context = await browser.newContext({
            viewport: c.viewport || { width: 1280, height: 1000 },
            colorScheme: c.colorScheme || 'light',
            locale: c.locale || 'en-US',
        });
        page = await context.newPage();
        page.on('console', m => {
            process.stderr.write('console.' + m.type() + ': ' + m.text() + '\n');
            if (m.text().includes('Content Security Policy'))
                cspViolations.push(m.text());
        });
        page.on('pageerror', e => {
            process.stderr.write('pageerror: ' + e + '\n');
            pageErrors.push(String(e));
        });
        page.on('dialog', d => d.dismiss());
        return true;
    }
    await newPage({});

    // Polls an expression through the DevTools protocol (page.evaluate), which
    // the page's CSP does not govern; waitForFunction would eval() inside the
    // page and be refused by Cockpit's policy.
    async function waitFor(js, timeout) {
        const deadline = Date.now() + timeout;
        for (;;) {
            if (await page.evaluate(js))
                return true;
            if (Date.now() > deadline)
                throw new Error('timeout after ' + timeout + ' ms');
            await new Promise(resolve => setTimeout(resolve, 20));
        }
    }

    const handlers = {
        goto: c => page.goto(c.url, { waitUntil: 'load', timeout: c.timeout || 20000 }).then(r => r && r.status()),
        waitFor: c => waitFor(c.js, c.timeout || 10000),
        eval: c => page.evaluate(c.js),
        click: c => page.click(c.selector, { timeout: c.timeout || 10000 }).then(() => true),
        hover: c => page.hover(c.selector, { timeout: c.timeout || 10000 }).then(() => true),
        press: c => page.keyboard.press(c.key).then(() => true),
        context: c => newPage(c),
        fill: c => page.fill(c.selector, c.value, { timeout: c.timeout || 10000 }).then(() => true),
        select: c => page.selectOption(c.selector, c.value, { timeout: c.timeout || 10000 }).then(() => true),
        cspViolations: () => cspViolations,
        pageErrors: () => pageErrors,
        screenshot: c => page.screenshot({ path: c.path, fullPage: true }).then(() => c.path),
    };

    const rl = readline.createInterface({ input: process.stdin });
    let chain = Promise.resolve();
    rl.on('line', line => {
        chain = chain.then(async () => {
            let c;
            try {
                c = JSON.parse(line);
            } catch (e) {
                return reply({ ok: false, error: 'bad command: ' + e });
            }
            if (c.cmd === 'quit') {
                await browser.close();
                reply({ ok: true, result: null });
                process.exit(0);
            }
            const h = handlers[c.cmd];
            if (!h)
                return reply({ ok: false, error: 'unknown command ' + c.cmd });
            try {
                reply({ ok: true, result: await h(c) });
            } catch (e) {
                reply({ ok: false, error: String(e && e.message || e) });
            }
        });
    });
    rl.on('close', () => chain.then(() => browser.close()).then(() => process.exit(0)));
    reply({ ok: true, result: 'ready' });
}

main().catch(e => {
    process.stderr.write('drive.js: ' + (e && e.stack || e) + '\n');
    process.exit(1);
});
