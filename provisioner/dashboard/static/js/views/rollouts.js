// Rollouts: the list, newest first, with each one's progress by target state.

import { api } from "../api.js";
import { badge, errorBox, h, loading, offsetFrom, pageHeading, pager, replace, shortId, statusRegion, tableWrap, timeAgo } from "../dom.js";

export const ROLLOUT_STATES = ["RUNNING", "PAUSED", "HALTING", "CANCELLING", "SUCCEEDED", "HALTED", "CANCELLED"];
const PAGE_SIZE = 25;

export function rolloutHref(id) {
  return `#/rollouts/${encodeURIComponent(id)}`;
}

/** "gold@2 · tenants acme, globex · outdated" */
export function describeSelector(rollout) {
  const selector = rollout.selector || {};
  const parts = [];
  if (selector.template) parts.push(`template ${selector.template}`);
  if (selector.tenants?.length) parts.push(`tenants ${selector.tenants.join(", ")}`);
  if (selector.outdated === true) parts.push("outdated");
  if (selector.outdated === false) parts.push("current");
  if (selector.tags) parts.push(`tags ${Object.entries(selector.tags).map(([k, v]) => `${k}=${v}`).join(", ")}`);
  if (selector.environments?.length) parts.push(`${selector.environments.length} named environments`);
  return parts.join(" · ") || "—";
}

export function progressText(counts) {
  const total = Object.values(counts || {}).reduce((sum, n) => sum + n, 0);
  const done = (counts?.SUCCEEDED || 0) + (counts?.FAILED || 0) + (counts?.SKIPPED || 0);
  const details = ["SUCCEEDED", "FAILED", "SKIPPED", "RUNNING", "VERIFYING", "PENDING"]
    .filter((state) => counts?.[state])
    .map((state) => `${state.toLowerCase()} ${counts[state]}`);
  return `${done} of ${total} done${details.length ? ` (${details.join(", ")})` : ""}`;
}

export function mount(main, ctx) {
  ctx.title("Rollouts");
  const state = { state: ctx.query.get("state") || "", offset: offsetFrom(ctx.query) };
  const stateSelect = h("select", { id: "rollout-state" }, h("option", { value: "" }, "All states"), ROLLOUT_STATES.map((value) => h("option", { value }, value)));
  stateSelect.value = state.state;
  const results = h("div", { "aria-live": "off" }, loading("Loading rollouts…"));
  const pages = h("div", {});
  const updated = statusRegion({ class: "muted small", "aria-live": "off" });
  stateSelect.addEventListener("change", () => {
    state.state = stateSelect.value;
    state.offset = 0;
    ctx.setQuery(state);
    load();
  });
  main.append(
    pageHeading("Rollouts"),
    h("p", { class: "muted" }, "Updates of a fixed snapshot of environments in waves: canaries first, then at most maxConcurrent at a time; halted past maxFailures. Start one with ", h("code", {}, "provisioner rollout start"), " or POST /rollouts."),
    h(
      "div",
      { class: "filters" },
      h("div", { class: "field" }, h("label", { for: "rollout-state" }, "State"), stateSelect),
      h("button", { type: "button", dataset: { shortcut: "refresh" }, on: { click: () => load() } }, "Refresh"),
      updated,
    ),
    results,
    pages,
  );
  let signature = null;

  async function load() {
    let page;
    try {
      page = await api.get("/rollouts", { query: { state: state.state, limit: PAGE_SIZE, offset: state.offset }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      signature = null;
      replace(results, errorBox(`Could not load rollouts. ${error.message}`, load));
      return;
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    const next = JSON.stringify(page);
    if (next === signature) return;
    signature = next;
    if (!page.items.length) {
      replace(results, h("p", { class: "empty" }, state.state ? "No rollouts in this state." : "No rollouts yet."));
      replace(pages);
      return;
    }
    replace(
      results,
      tableWrap(
        h(
          "table",
          { class: "data" },
          h("caption", { class: "visually-hidden" }, "Rollouts"),
          h("thead", {}, h("tr", {}, ["Rollout", "State", "Action", "Selector", "Progress", "Reason", "Started"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            page.items.map((rollout) =>
              h(
                "tr",
                { dataset: { rollout: rollout.id } },
                h("th", { scope: "row" }, h("a", { href: rolloutHref(rollout.id), title: rollout.id }, shortId(rollout.id))),
                h("td", {}, badge(rollout.state)),
                h("td", {}, rollout.action, rollout.templateVersion ? ` to v${rollout.templateVersion}` : ""),
                h("td", {}, describeSelector(rollout)),
                h("td", {}, progressText(rollout.counts)),
                h("td", { class: "error-cell" }, rollout.reason ?? "—"),
                h("td", {}, timeAgo(rollout.createdAt), " by ", h("code", {}, rollout.createdBy)),
              ),
            ),
          ),
        ),
        "Rollouts table",
      ),
    );
    const move = (offset) => {
      state.offset = offset;
      ctx.setQuery(state);
      load();
    };
    replace(pages, pager(page, PAGE_SIZE, move, { label: "Pages of rollouts" }));
  }

  load();
  ctx.every(load, 5000);
}
