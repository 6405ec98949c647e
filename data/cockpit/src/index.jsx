/* SPDX-License-Identifier: Apache-2.0
 *
 * platform-launcher's Cockpit page: React + PatternFly, as Cockpit's own
 * pages (cockpit-machines, starter-kit). build.mjs bundles it.
 */
import React from "react";
import { createRoot } from "react-dom/client";

import "./dark-theme.js";
import "@patternfly/patternfly/patternfly-base.css";
import "./fonts.css";
import "./page.css";

import { App } from "./app.jsx";

document.addEventListener("DOMContentLoaded", () => {
    createRoot(document.getElementById("app")).render(<App />);
});
