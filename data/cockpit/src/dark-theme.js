/* SPDX-License-Identifier: Apache-2.0
 *
 * The page follows Cockpit's theme as Cockpit's own pages do: the shell keeps
 * the choice in localStorage "shell:style" ("auto", "light" or "dark"; the
 * shell and its pages share the origin) and tells open pages about a change
 * with a "cockpit-style" event on their window; "auto" follows the system's
 * prefers-color-scheme. Dark = PatternFly's pf-v6-theme-dark class on <html>.
 */

const DARK = "pf-v6-theme-dark";
const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

function storedStyle() {
    try {
        return window.localStorage.getItem("shell:style");
    } catch (e) {
        return null;  /* storage refused: follow the system */
    }
}

function apply(style) {
    const s = style || storedStyle() || "auto";
    const dark = s === "dark" || (s === "auto" && !!media && media.matches);
    document.documentElement.classList.toggle(DARK, dark);
}

window.addEventListener("storage", ev => {
    if (ev.key === "shell:style")
        apply();
});
window.addEventListener("cockpit-style", ev => apply(ev.detail && ev.detail.style));
if (media)
    media.addEventListener("change", () => apply());
apply();
