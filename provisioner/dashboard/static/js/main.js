// The dashboard's shell: hash routes, sign-in gating, the header, flash messages, keyboard
// shortcuts, and a per-view context whose timers and requests stop when the view is left.

import { session, UNAUTHORIZED_EVENT } from "./api.js";
import { h, replace } from "./dom.js";
import * as approvals from "./views/approvals.js";
import * as audit from "./views/audit.js";
import * as create from "./views/create.js";
import * as environment from "./views/environment.js";
import * as environments from "./views/environments.js";
import * as files from "./views/files.js";
import * as rollout from "./views/rollout.js";
import * as rollouts from "./views/rollouts.js";
import * as fleet from "./views/fleet.js";
import * as signin from "./views/signin.js";
import * as template from "./views/template.js";
import * as templates from "./views/templates.js";

const ROUTES = [
  { pattern: /^\/signin$/, view: signin, section: null, public: true },
  { pattern: /^\/environments$/, view: environments, section: "environments" },
  { pattern: /^\/new$/, view: create, section: "new" },
  { pattern: /^\/environments\/([^/]+)\/([^/]+)\/files$/, view: files, section: "environments" },
  { pattern: /^\/environments\/([^/]+)\/([^/]+)$/, view: environment, section: "environments" },
  { pattern: /^\/audit$/, view: audit, section: "audit" },
  { pattern: /^\/fleet$/, view: fleet, section: "fleet" },
  { pattern: /^\/templates$/, view: templates, section: "templates" },
  { pattern: /^\/templates\/([^/]+)$/, view: template, section: "templates" },
  { pattern: /^\/approvals$/, view: approvals, section: "approvals" },
  { pattern: /^\/rollouts$/, view: rollouts, section: "rollouts" },
  { pattern: /^\/rollouts\/([^/]+)$/, view: rollout, section: "rollouts" },
];
const AUTO_REFRESH_MS = 5000;

const main = document.getElementById("main");
const flashArea = document.getElementById("flash");
let current = null; // {cleanups: [], controller}
let pendingFlash = null;
let signInMessage = null;

function parseHash() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/environments";
  const [pathPart, search = ""] = raw.split("?", 2);
  return { path: pathPart.replace(/\/+$/, "") || "/environments", query: new URLSearchParams(search) };
}

export function navigate(target, { replaceEntry = false } = {}) {
  const hash = target.startsWith("#") ? target : `#${target}`;
  if (location.hash === hash) {
    route();
  } else if (replaceEntry) {
    history.replaceState(null, "", hash);
    route();
  } else {
    location.hash = hash;
  }
}

function flash(message, tone = "info") {
  replace(flashArea, h("p", { class: `flash flash-${tone}` }, message));
}

function stopCurrent() {
  if (!current) return;
  current.controller.abort();
  for (const cleanup of current.cleanups.splice(0)) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  current = null;
}

function makeContext(params, query, routePath) {
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };
  return {
    params,
    query,
    signal: controller.signal,
    navigate,
    /** Show a message on the next view (after navigate) or now. */
    flash(message, tone, { afterNavigate = false } = {}) {
      if (afterNavigate) pendingFlash = { message, tone };
      else flash(message, tone);
    },
    clearFlash: () => replace(flashArea),
    onCleanup: (fn) => cleanups.push(fn),
    title(text) {
      document.title = text ? `${text} · Pipeline provisioner` : "Pipeline provisioner";
    },
    /** Keep filters in the address without re-mounting the view. */
    setQuery(values) {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(values)) {
        if (value !== undefined && value !== null && value !== "" && value !== 0) params.set(name, String(value));
      }
      const search = params.toString();
      history.replaceState(null, "", `#${routePath}${search ? `?${search}` : ""}`);
    },
    /**
     * Run fn now and every `ms` while the tab is visible; returns {set(enabled)}.
     * A slow answer never overlaps the next one.
     */
    every(fn, ms = AUTO_REFRESH_MS) {
      let timer = null;
      let enabled = true;
      let running = false;
      const tick = async () => {
        timer = null;
        if (!enabled || controller.signal.aborted) return;
        if (document.visibilityState === "visible" && !running) {
          running = true;
          try {
            await fn();
          } finally {
            running = false;
          }
        }
        if (enabled && !controller.signal.aborted) timer = setTimeout(tick, ms);
      };
      const onVisible = () => {
        if (document.visibilityState === "visible" && enabled && timer !== null) {
          clearTimeout(timer);
          tick();
        }
      };
      document.addEventListener("visibilitychange", onVisible);
      cleanups.push(() => {
        enabled = false;
        clearTimeout(timer);
        document.removeEventListener("visibilitychange", onVisible);
      });
      timer = setTimeout(tick, ms);
      return {
        set(value) {
          enabled = value;
          clearTimeout(timer);
          timer = value ? setTimeout(tick, ms) : null;
        },
      };
    },
  };
}

function updateChrome(section, signedIn) {
  document.getElementById("main-nav").hidden = !signedIn;
  document.getElementById("account").hidden = !signedIn;
  document.getElementById("footer").hidden = !signedIn;
  document.getElementById("key-prefix").textContent = signedIn ? session.displayPrefix : "";
  for (const link of document.querySelectorAll("#main-nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

let firstRoute = true;

function route() {
  const { path, query } = parseHash();
  const match = ROUTES.map((entry) => ({ entry, found: entry.pattern.exec(path) })).find((m) => m.found);
  if (!match) {
    navigate("/environments", { replaceEntry: true });
    return;
  }
  if (!match.entry.public && !session.key) {
    const next = location.hash.startsWith("#/") ? location.hash.slice(1) : "/environments";
    navigate(`/signin?next=${encodeURIComponent(next)}`, { replaceEntry: true });
    return;
  }
  stopCurrent();
  replace(flashArea);
  if (pendingFlash) {
    flash(pendingFlash.message, pendingFlash.tone);
    pendingFlash = null;
  }
  const params = match.found.slice(1).map(decodeURIComponent);
  updateChrome(match.entry.section, Boolean(session.key));
  const context = makeContext(params, query, path);
  if (match.entry.view === signin) {
    context.message = signInMessage;
    signInMessage = null;
  }
  replace(main);
  const cleanup = match.entry.view.mount(main, context);
  if (typeof cleanup === "function") context.onCleanup(cleanup);
  // Move focus to the new view's heading so keyboard and screen-reader users land there
  // (not on the first load: the browser starts at the top anyway).
  // A view that focused something itself (a form's first field) keeps it.
  if (!firstRoute && !main.contains(document.activeElement)) (main.querySelector("h1") || main).focus();
  firstRoute = false;
}

function signOut(message) {
  session.signOut();
  signInMessage = message;
  stopCurrent();
  navigate("/signin", { replaceEntry: true });
}

window.addEventListener(UNAUTHORIZED_EVENT, (event) => {
  if (!session.key) return;
  signOut(`Signed out: the service rejected the API key (${event.detail}). Sign in again.`);
});
window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", () => signOut("You signed out."));
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  (main.querySelector("h1") || main).focus();
});

// Single-key shortcuts, never while typing or with a modifier held.
let pendingG = false;
document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target.closest?.("input, textarea, select, [contenteditable], dialog")) return;
  if (!session.key) return;
  if (pendingG) {
    pendingG = false;
    if (event.key === "e") navigate("/environments");
    else if (event.key === "a") navigate("/audit");
    else if (event.key === "f") navigate("/fleet");
    else if (event.key === "t") navigate("/templates");
    else if (event.key === "p") navigate("/approvals");
    else if (event.key === "o") navigate("/rollouts");
    return;
  }
  if (event.key === "g") {
    pendingG = true;
    setTimeout(() => (pendingG = false), 1500);
  } else if (event.key === "/") {
    const filter = main.querySelector("[data-shortcut='filter']");
    if (filter) {
      event.preventDefault();
      filter.focus();
    }
  } else if (event.key === "n") {
    navigate("/new");
  } else if (event.key === "r") {
    main.querySelector("[data-shortcut='refresh']")?.click();
  }
});

route();
