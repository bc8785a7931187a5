// Building DOM without innerHTML: every string from the API becomes a text node, so nothing
// it contains can turn into markup or script.

/**
 * h("a", {href: "#/x", class: "link", on: {click: fn}}, "text", child, [more, children])
 * Attributes with null/undefined/false values are left out; `true` sets an empty attribute.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "value" && "value" in element) {
      element.value = String(value);
    } else if (name === "checked" || name === "disabled" || name === "selected") {
      element[name] = Boolean(value);
      if (value) element.setAttribute(name, "");
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.append(child);
    else element.append(document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const STATE_TONES = {
  READY: "ok",
  SUCCEEDED: "ok",
  COMPLETED: "ok",
  FAILED: "bad",
  INTERRUPTED: "warn",
  CANCELLED: "muted",
  DESTROYED: "muted",
  // Drift and health (docs/architecture.md §8).
  IN_SYNC: "ok",
  DRIFTED: "bad",
  OK: "ok",
  ALARM: "bad",
  UNKNOWN: "muted",
  INSUFFICIENT_DATA: "muted",
  // Rollouts and their targets (docs/architecture.md §7).
  PENDING: "muted",
  SKIPPED: "muted",
  PAUSED: "warn",
  HALTING: "warn",
  HALTED: "bad",
};

/** A state as a badge: the word is always shown, the colour only adds to it. */
export function badge(state, { prefix = "" } = {}) {
  const tone = STATE_TONES[state] || "busy";
  return h("span", { class: `badge badge-${tone}`, dataset: { state } }, prefix, state);
}

const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/**
 * A time from the API as milliseconds: ISO 8601 text, or epoch milliseconds (SQS reports
 * SentTimestamp that way), as a number or digits.
 */
export function toMillis(value) {
  if (value === null || value === undefined || value === "") return NaN;
  if (typeof value === "number") return value;
  return /^\d+$/.test(value) ? Number(value) : Date.parse(value);
}

export function ago(value, now = Date.now()) {
  const millis = toMillis(value);
  if (Number.isNaN(millis)) return "—";
  const seconds = Math.round((millis - now) / 1000);
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

/** A <time> showing "3 min ago", the exact time in its tooltip. */
export function timeAgo(value) {
  const millis = toMillis(value);
  if (Number.isNaN(millis)) return h("span", { class: "muted" }, "—");
  const date = new Date(millis);
  return h("time", { datetime: date.toISOString(), title: absolute.format(date) }, ago(millis));
}

export function formatTime(value) {
  const millis = toMillis(value);
  return Number.isNaN(millis) ? "—" : absolute.format(new Date(millis));
}

export function clockTime(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

export function duration(startIso, endIso) {
  if (!startIso) return "—";
  const seconds = Math.max(0, ((endIso ? Date.parse(endIso) : Date.now()) - Date.parse(startIso)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

/** "create 3 · same 12", or "" when there is nothing to count. */
export function changeSummary(changes) {
  const entries = Object.entries(changes || {}).filter(([, count]) => Number.isFinite(count));
  return entries.map(([step, count]) => `${step} ${count}`).join(" · ");
}

/** A scrollable wrapper for a wide table, reachable by keyboard. */
export function tableWrap(table, label) {
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label }, table);
}

/** A status line whose changes screen readers announce. */
export function statusRegion(attributes = {}) {
  return h("div", { role: "status", "aria-live": "polite", ...attributes });
}

export function errorBox(message, retry) {
  return h(
    "div",
    { class: "notice notice-error", role: "alert" },
    h("p", {}, message),
    retry ? h("button", { type: "button", on: { click: retry } }, "Try again") : null,
  );
}

export function loading(text = "Loading…") {
  return h("p", { class: "loading", role: "status", "aria-busy": "true" }, text);
}

let copyFallbackArea = null;

/** Copy text; the Clipboard API needs a secure context, so plain-http hosts fall back. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  copyFallbackArea ??= h("textarea", { class: "visually-hidden", "aria-hidden": "true", tabindex: "-1" });
  document.body.append(copyFallbackArea);
  copyFallbackArea.value = text;
  copyFallbackArea.select();
  const copied = document.execCommand("copy");
  copyFallbackArea.remove();
  if (!copied) throw new Error("copy failed");
}

/** Shortened ids for tables; the full id stays in the title and in copy buttons. */
export function shortId(id, length = 8) {
  return id && id.length > length + 1 ? `${id.slice(0, length)}…` : id || "";
}

/** The view's main heading; focusable so route changes can move focus to it. */
export function pageHeading(text, ...extras) {
  return h("div", { class: "page-heading" }, h("h1", { tabindex: "-1" }, text), ...extras);
}

/** Breadcrumbs: [[label, href], …, [label]] (the last is the current page). */
export function breadcrumbs(items) {
  return h(
    "nav",
    { class: "breadcrumbs", "aria-label": "Breadcrumb" },
    h(
      "ol",
      {},
      items.map(([label, href], index) =>
        h(
          "li",
          {},
          href && index < items.length - 1 ? h("a", { href }, label) : h("span", { "aria-current": "page" }, label),
        ),
      ),
    ),
  );
}

/** "#/environments/acme/dev" with each segment encoded. */
export function environmentHref(tenant, name, suffix = "") {
  return `#/environments/${encodeURIComponent(tenant)}/${encodeURIComponent(name)}${suffix}`;
}

/** Newer/older buttons around "first–last of total" for an API page ({items, total, offset}). */
export function pager(page, size, move, { label, previous = "Previous page", next = "Next page" }) {
  if (!page.total) return null;
  const last = page.offset + page.items.length;
  return h(
    "nav",
    { class: "pager", "aria-label": label },
    h("button", { type: "button", disabled: page.offset === 0, on: { click: () => move(Math.max(0, page.offset - size)) } }, previous),
    h("span", { class: "pager-text" }, `${page.offset + 1}–${last} of ${page.total}`),
    h("button", { type: "button", disabled: last >= page.total, on: { click: () => move(page.offset + size) } }, next),
  );
}

/** The page offset a view's address asks for. */
export function offsetFrom(query) {
  return Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
}
