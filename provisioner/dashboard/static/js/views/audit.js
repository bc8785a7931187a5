// The audit log (admin keys only): who changed what, when, with which result.

import { api } from "../api.js";
import { errorBox, formatTime, h, loading, offsetFrom, pageHeading, pager, replace, tableWrap, timeAgo } from "../dom.js";

const PAGE_SIZE = 50;

export function mount(main, ctx) {
  ctx.title("Audit log");
  const state = {
    tenant: ctx.query.get("tenant") || "",
    actor: ctx.query.get("actor") || "",
    offset: offsetFrom(ctx.query),
  };
  const tenantInput = h("input", { id: "audit-tenant", type: "search", value: state.tenant, autocomplete: "off", spellcheck: "false", placeholder: "all tenants", dataset: { shortcut: "filter" } });
  const actorInput = h("input", { id: "audit-actor", type: "search", value: state.actor, autocomplete: "off", spellcheck: "false", placeholder: "API key id" });
  const results = h("div", {}, loading("Loading the audit log…"));
  const pages = h("div", {});
  const filters = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter the audit log",
      on: {
        submit: (event) => {
          event.preventDefault();
          state.tenant = tenantInput.value.trim();
          state.actor = actorInput.value.trim();
          state.offset = 0;
          ctx.setQuery(state);
          load();
        },
      },
    },
    h("div", { class: "field" }, h("label", { for: "audit-tenant" }, "Tenant"), tenantInput),
    h("div", { class: "field" }, h("label", { for: "audit-actor" }, "Actor (key id)"), actorInput),
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", dataset: { shortcut: "refresh" }, on: { click: () => load() } }, "Refresh"),
  );
  main.append(pageHeading("Audit log"), h("p", { class: "muted" }, "Every change and every refused request, newest first."), filters, results, pages);

  async function load() {
    let page;
    results.setAttribute("aria-busy", "true");
    try {
      page = await api.get("/admin/audit", { query: { tenant: state.tenant, actor: state.actor, limit: PAGE_SIZE, offset: state.offset }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(pages);
      if (error.status === 403) {
        filters.hidden = true;
        replace(
          results,
          h(
            "div",
            { class: "notice notice-warn admin-needed", role: "status" },
            h("h2", {}, "Admin key needed"),
            h("p", {}, "The audit log is only available to admin API keys; you are signed in with a tenant key. Sign out and sign in with an admin key to see it."),
          ),
        );
      } else {
        replace(results, errorBox(`Could not load the audit log. ${error.message}`, load));
      }
      return;
    } finally {
      results.removeAttribute("aria-busy");
    }
    if (!page.items.length) {
      replace(results, h("p", { class: "empty" }, state.tenant || state.actor ? "No entries match these filters." : "No entries yet."));
    } else {
      replace(
        results,
        tableWrap(
          h(
            "table",
            { class: "data" },
            h("caption", { class: "visually-hidden" }, "Audit log"),
            h("thead", {}, h("tr", {}, ["When", "Actor", "Scope", "Tenant", "Action", "Target", "Status", "Result"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              page.items.map((entry) =>
                h(
                  "tr",
                  { class: `audit-${entry.result}` },
                  h("td", { title: formatTime(entry.at) }, timeAgo(entry.at)),
                  h("td", {}, h("code", {}, entry.actor)),
                  h("td", {}, entry.scope ?? "—"),
                  h("td", {}, entry.tenant ?? "—"),
                  h("td", {}, h("code", {}, entry.action)),
                  h("td", { class: "key-cell" }, entry.target ?? "—"),
                  h("td", { class: "num" }, String(entry.statusCode)),
                  h("td", {}, h("span", { class: `result result-${entry.result}` }, entry.result)),
                ),
              ),
            ),
          ),
          "Audit log table",
        ),
      );
    }
    const move = (offset) => {
      state.offset = offset;
      ctx.setQuery(state);
      load();
    };
    replace(pages, pager(page, PAGE_SIZE, move, { label: "Pages of the audit log", previous: "Newer", next: "Older" }));
  }

  load();
}
