// The environments table: filters (tenant, state, outdated or drifted), pages, auto-refresh.

import { api } from "../api.js";
import { ago, badge, environmentHref, errorBox, h, loading, offsetFrom, pageHeading, pager, replace, statusRegion, tableWrap, timeAgo } from "../dom.js";

export const ENVIRONMENT_STATES = ["PROVISIONING", "READY", "UPDATING", "DESTROYING", "DESTROYED", "FAILED"];
const PAGE_SIZE = 25;

export function mount(main, ctx) {
  ctx.title("Environments");
  const state = {
    tenant: ctx.query.get("tenant") || "",
    state: ctx.query.get("state") || "",
    // "outdated", "current" or "drifted" (the API's ?outdated= and ?drifted=).
    fleet: ctx.query.get("fleet") || "",
    offset: offsetFrom(ctx.query),
  };
  let lastRendered = null;

  const tenantInput = h("input", {
    id: "filter-tenant",
    type: "search",
    value: state.tenant,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "all tenants",
    dataset: { shortcut: "filter" },
  });
  const stateSelect = h(
    "select",
    { id: "filter-state" },
    h("option", { value: "" }, "All states"),
    ENVIRONMENT_STATES.map((value) => h("option", { value }, value)),
  );
  stateSelect.value = state.state;
  const fleetSelect = h(
    "select",
    { id: "filter-fleet" },
    h("option", { value: "" }, "Any"),
    h("option", { value: "outdated" }, "Outdated"),
    h("option", { value: "current" }, "Current"),
    h("option", { value: "drifted" }, "Drifted"),
  );
  fleetSelect.value = state.fleet;
  const autoRefresh = h("input", { id: "auto-refresh", type: "checkbox", checked: true });
  const updated = statusRegion({ class: "muted small", "aria-live": "off" });
  const results = h("div", { class: "results", "aria-live": "off" }, loading("Loading environments…"));
  const pages = h("div", {});
  const refreshButton = h("button", { type: "button", dataset: { shortcut: "refresh" }, on: { click: () => load() } }, "Refresh");

  let debounce = null;
  function applyFilters() {
    state.tenant = tenantInput.value.trim();
    state.state = stateSelect.value;
    state.fleet = fleetSelect.value;
    state.offset = 0;
    ctx.setQuery({ tenant: state.tenant, state: state.state, fleet: state.fleet });
    load();
  }
  tenantInput.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(applyFilters, 300);
  });
  stateSelect.addEventListener("change", applyFilters);
  fleetSelect.addEventListener("change", applyFilters);
  ctx.onCleanup(() => clearTimeout(debounce));

  main.append(
    pageHeading("Environments", h("a", { class: "button primary", href: "#/new" }, "New environment")),
    h(
      "form",
      {
        class: "filters",
        role: "search",
        "aria-label": "Filter environments",
        on: {
          submit: (event) => {
            event.preventDefault();
            clearTimeout(debounce);
            applyFilters();
          },
        },
      },
      h("div", { class: "field" }, h("label", { for: "filter-tenant" }, "Tenant"), tenantInput),
      h("div", { class: "field" }, h("label", { for: "filter-state" }, "State"), stateSelect),
      h("div", { class: "field" }, h("label", { for: "filter-fleet" }, "Template and drift"), fleetSelect),
      h("div", { class: "field field-inline" }, autoRefresh, h("label", { for: "auto-refresh" }, "Auto-refresh every 5 s")),
      refreshButton,
      updated,
    ),
    results,
    pages,
  );

  async function load() {
    const query = {
      tenant: state.tenant,
      state: state.state,
      outdated: { outdated: "true", current: "false" }[state.fleet],
      drifted: state.fleet === "drifted" ? "true" : undefined,
      limit: PAGE_SIZE,
      offset: state.offset,
    };
    results.setAttribute("aria-busy", "true");
    try {
      const page = await api.get("/environments", { query, signal: ctx.signal });
      render(page);
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (error.name === "AbortError") return;
      lastRendered = null;
      replace(results, errorBox(`Could not load environments. ${error.message}`, () => load()));
      replace(pages);
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  function render(page) {
    if (page.items.length === 0 && page.total > 0 && state.offset > 0) {
      // The page emptied (environments went away): go back to the last page that has any.
      state.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      ctx.setQuery({ tenant: state.tenant, state: state.state, fleet: state.fleet, offset: state.offset });
      load();
      return;
    }
    const signature = JSON.stringify(page);
    if (signature === lastRendered) {
      // Same data: only the ages move on, and focus stays where it is.
      for (const time of results.querySelectorAll("time[data-refresh]")) time.textContent = ago(time.dateTime);
      return;
    }
    lastRendered = signature;
    renderPager(page);
    if (page.items.length === 0) {
      const filtered = state.tenant || state.state || state.fleet;
      replace(
        results,
        h(
          "div",
          { class: "empty" },
          h("p", {}, filtered ? "No environments match these filters." : "No environments yet."),
          filtered
            ? h("button", { type: "button", on: { click: clearFilters } }, "Clear filters")
            : h("a", { class: "button primary", href: "#/new" }, "Create the first environment"),
        ),
      );
      return;
    }
    const rows = page.items.map((env) => {
      const last = env.lastOperation;
      const age = timeAgo(env.createdAt);
      age.dataset.refresh = "";
      return h(
        "tr",
        { dataset: { environment: `${env.tenant}/${env.name}` } },
        h("td", {}, env.tenant),
        h("th", { scope: "row" }, h("a", { href: environmentHref(env.tenant, env.name) }, env.name)),
        h("td", {}, env.engine),
        h("td", {}, badge(env.state)),
        h("td", {}, last ? [h("span", { class: "op-kind" }, last.kind), " ", badge(last.state)] : h("span", { class: "muted" }, "—")),
        h("td", {}, age),
      );
    });
    replace(
      results,
      tableWrap(
        h(
          "table",
          { class: "data" },
          h("caption", { class: "visually-hidden" }, "Environments"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Tenant", "Name", "Engine", "State", "Last operation", "Age"].map((label) => h("th", { scope: "col" }, label)),
            ),
          ),
          h("tbody", {}, rows),
        ),
        "Environments table",
      ),
    );
  }

  function renderPager(page) {
    const move = (offset) => {
      state.offset = offset;
      ctx.setQuery({ tenant: state.tenant, state: state.state, fleet: state.fleet, offset });
      load();
    };
    replace(pages, pager(page, PAGE_SIZE, move, { label: "Pages of environments" }));
  }

  function clearFilters() {
    tenantInput.value = "";
    stateSelect.value = "";
    fleetSelect.value = "";
    applyFilters();
    tenantInput.focus();
  }

  const poller = ctx.every(load);
  autoRefresh.addEventListener("change", () => poller.set(autoRefresh.checked));
  load();
}
