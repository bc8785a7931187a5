// The fleet page: counts by state, outdated, drifted and failing; by template version and by
// code version; a chart of environments per template version, and failing and drifted
// environments over time (the service samples them once a minute). Tenant keys see their own.

import { api } from "../api.js";
import { barChart, lineChart } from "../chart.js";
import { badge, errorBox, h, loading, pageHeading, replace, statusRegion, tableWrap, toMillis } from "../dom.js";

const WINDOWS = [
  [60, "Last hour"],
  [360, "Last 6 hours"],
  [1440, "Last 24 hours"],
  [10080, "Last 7 days"],
];

function countCard(label, value, { tone = "", href = null, id }) {
  const body = [h("span", { class: "count-label" }, label), h("span", { class: "count-value" }, String(value))];
  return href
    ? h("a", { class: `count card-link count-${tone}`, href, dataset: { count: id } }, body)
    : h("div", { class: `count count-${tone}`, dataset: { count: id } }, body);
}

export function mount(main, ctx) {
  ctx.title("Fleet");
  const state = { tenant: ctx.query.get("tenant") || "", minutes: Number(ctx.query.get("minutes")) || 360 };
  const tenantInput = h("input", { id: "fleet-tenant", type: "search", value: state.tenant, autocomplete: "off", spellcheck: "false", placeholder: "all tenants", dataset: { shortcut: "filter" } });
  const windowSelect = h("select", { id: "fleet-window" }, WINDOWS.map(([value, label]) => h("option", { value }, label)));
  windowSelect.value = String(state.minutes);
  const updated = statusRegion({ class: "muted small", "aria-live": "off" });
  const summary = h("div", {}, loading("Loading the fleet…"));
  const history = h("div", {}, loading("Loading the fleet's history…"));

  const apply = () => {
    state.tenant = tenantInput.value.trim();
    state.minutes = Number(windowSelect.value);
    ctx.setQuery({ tenant: state.tenant, minutes: state.minutes === 360 ? "" : state.minutes });
    load();
  };
  windowSelect.addEventListener("change", apply);

  main.append(
    pageHeading("Fleet"),
    h("p", { class: "muted" }, "Every environment you can see, counted by state, template, code version, drift and health."),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter the fleet", on: { submit: (event) => { event.preventDefault(); apply(); } } },
      h("div", { class: "field" }, h("label", { for: "fleet-tenant" }, "Tenant"), tenantInput),
      h("div", { class: "field" }, h("label", { for: "fleet-window" }, "History"), windowSelect),
      h("button", { type: "submit" }, "Apply"),
      h("button", { type: "button", dataset: { shortcut: "refresh" }, on: { click: () => load() } }, "Refresh"),
      updated,
    ),
    summary,
    h("section", { class: "card", "aria-labelledby": "fleet-history-heading" }, h("h2", { id: "fleet-history-heading" }, "Failing and drifted over time"), history),
  );

  async function load() {
    const query = { tenant: state.tenant };
    const [current, past] = await Promise.allSettled([
      api.get("/fleet", { query, signal: ctx.signal }),
      api.get("/fleet/history", { query: { ...query, minutes: state.minutes }, signal: ctx.signal }),
    ]);
    if (ctx.signal.aborted) return;
    if (current.status === "fulfilled") renderSummary(current.value);
    else replace(summary, errorBox(`Could not load the fleet. ${current.reason.message}`, load));
    if (past.status === "fulfilled") renderHistory(past.value);
    else replace(history, errorBox(`Could not load the fleet's history. ${past.reason.message}`, load));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  function environmentsLink(filters) {
    const params = new URLSearchParams({ ...(state.tenant ? { tenant: state.tenant } : {}), ...filters });
    return `#/environments?${params}`;
  }

  function renderSummary(fleet) {
    const states = Object.entries(fleet.byState).sort(([a], [b]) => a.localeCompare(b));
    replace(
      summary,
      h(
        "section",
        { class: "card", "aria-labelledby": "fleet-counts-heading" },
        h("h2", { id: "fleet-counts-heading" }, fleet.tenant ? `Tenant ${fleet.tenant}` : "Whole fleet"),
        h(
          "div",
          { class: "status-counts", role: "group", "aria-label": "Fleet counts" },
          countCard("ENVIRONMENTS", fleet.total, { id: "total", href: environmentsLink({}) }),
          countCard("OUTDATED", fleet.outdated, { id: "outdated", tone: fleet.outdated ? "warn" : "ok", href: environmentsLink({ fleet: "outdated" }) }),
          countCard("DRIFTED", fleet.drifted, { id: "drifted", tone: fleet.drifted ? "bad" : "ok", href: environmentsLink({ fleet: "drifted" }) }),
          countCard("FAILING", fleet.failing, { id: "failing", tone: fleet.failing ? "bad" : "ok" }),
        ),
        h("h3", {}, "By state"),
        h(
          "ul",
          { class: "inline-list", "aria-label": "Environments by state" },
          states.length
            ? states.map(([name, n]) => h("li", { dataset: { state: name } }, h("a", { href: environmentsLink({ state: name }) }, badge(name)), " ", String(n)))
            : h("li", { class: "muted" }, "No environments."),
        ),
        h("h3", {}, "Drift and health"),
        h(
          "p",
          { class: "small" },
          "Drift: ",
          describeCounts(fleet.drift),
          " · Health: ",
          describeCounts(fleet.health),
        ),
      ),
      h(
        "div",
        { class: "two-columns" },
        h(
          "section",
          { class: "card", "aria-labelledby": "fleet-templates-heading" },
          h("h2", { id: "fleet-templates-heading" }, "Environments per template version"),
          fleet.byTemplate.length
            ? barChart(
                "Environments per template version",
                fleet.byTemplate.map((row) => ({
                  label: `${row.template}@${row.version}`,
                  value: row.environments,
                  tone: row.version < row.latestVersion ? "warn" : "ok",
                })),
              )
            : h("p", { class: "muted" }, "No environments."),
          templateTable(fleet.byTemplate),
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "fleet-code-heading" },
          h("h2", { id: "fleet-code-heading" }, "By code version"),
          h("p", { class: "muted small" }, "The service runs code version ", h("code", {}, fleet.codeVersion), "."),
          codeTable(fleet.byCodeVersion),
        ),
      ),
    );
  }

  function renderHistory(past) {
    const points = (field) => past.samples.map((sample) => ({ at: toMillis(sample.at), value: sample[field] }));
    if (!past.samples.length) {
      replace(history, h("p", { class: "muted" }, "No samples yet: the service records one every ", String(past.intervalSeconds), " s."));
      return;
    }
    // The window, or from the first sample when sampling began inside it (a fresh service).
    const end = Date.now();
    const first = toMillis(past.samples[0].at) - past.intervalSeconds * 1000;
    const start = Math.max(end - past.minutes * 60_000, first);
    replace(
      history,
      lineChart(
        "Failing and drifted environments over time",
        [
          { name: "failing", tone: "bad", points: points("failing") },
          { name: "drifted", tone: "warn", points: points("drifted") },
          { name: "outdated", tone: "accent", points: points("outdated") },
        ],
        { start, end },
      ),
      h("p", { class: "muted small" }, `${past.samples.length} samples, one per ${past.intervalSeconds} s.`),
    );
  }

  load();
  ctx.every(load, 15_000);
}

function describeCounts(counts) {
  const entries = Object.entries(counts || {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([name, n]) => `${name} ${n}`).join(", ") : "—";
}

function templateTable(rows) {
  if (!rows.length) return null;
  return tableWrap(
    h(
      "table",
      { class: "data" },
      h("caption", { class: "visually-hidden" }, "By template version"),
      h("thead", {}, h("tr", {}, ["Template", "Version", "Latest", "Environments", "Outdated"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { dataset: { template: `${row.template}@${row.version}` } },
            h("th", { scope: "row" }, h("a", { href: `#/templates/${encodeURIComponent(row.template)}` }, row.template)),
            h("td", { class: "num" }, String(row.version)),
            h("td", { class: "num" }, String(row.latestVersion)),
            h("td", { class: "num" }, String(row.environments)),
            h("td", { class: "num" }, String(row.outdated)),
          ),
        ),
      ),
    ),
    "By template version table",
  );
}

function codeTable(rows) {
  if (!rows.length) return h("p", { class: "muted" }, "No environments.");
  return tableWrap(
    h(
      "table",
      { class: "data" },
      h("caption", { class: "visually-hidden" }, "By code version"),
      h("thead", {}, h("tr", {}, ["Code version", "Environments", ""].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { dataset: { code: row.codeVersion ?? "none" } },
            h("th", { scope: "row" }, row.codeVersion ? h("code", {}, row.codeVersion) : h("span", { class: "muted" }, "never applied")),
            h("td", { class: "num" }, String(row.environments)),
            h("td", {}, row.current ? h("span", { class: "badge badge-ok" }, "current") : h("span", { class: "badge badge-warn" }, "behind")),
          ),
        ),
      ),
    ),
    "By code version table",
  );
}
