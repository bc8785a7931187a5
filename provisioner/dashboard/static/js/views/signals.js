// What an environment's page shows about how it is doing: its drift and health (from its JSON;
// a field the service does not send yet counts as UNKNOWN) and the charts of its files over
// the last hour (files per minute by final status, upload→COMPLETED latency percentiles).

import { api } from "../api.js";
import { lineChart, stackedColumns } from "../chart.js";
import { badge, errorBox, h, loading, replace, tableWrap, timeAgo, toMillis } from "../dom.js";

const STATS_MINUTES = 60;
const STATS_REFRESH_MS = 15_000;

function statusOf(value) {
  return (value && typeof value === "object" && value.status) || "UNKNOWN";
}

function checked(value) {
  return value?.checkedAt ? [" · checked ", timeAgo(value.checkedAt)] : [" · not checked yet"];
}

/** The drift and health card: {element, update(environment)}. */
export function signalsSection() {
  const drift = h("div", { class: "signal", id: "drift" });
  const health = h("div", { class: "signal", id: "health" });
  const element = h(
    "section",
    { class: "card", "aria-labelledby": "signals-heading" },
    h("h2", { id: "signals-heading" }, "Drift and health"),
    h("div", { class: "two-columns" }, drift, health),
  );
  let signature = null;
  function update(env) {
    const next = JSON.stringify([env.drift ?? null, env.health ?? null]);
    if (next === signature) return;
    signature = next;
    renderDrift(drift, env.drift);
    renderHealth(health, env.health);
  }
  return { element, update };
}

function renderDrift(slot, drift) {
  const changes = drift?.changes || [];
  replace(
    slot,
    h("h3", {}, "Drift ", badge(statusOf(drift))),
    h("p", { class: "muted small" }, "Compared with the emulator or the cloud by a drift check", ...checked(drift)),
    changes.length
      ? tableWrap(
          h(
            "table",
            { class: "data" },
            h("caption", { class: "visually-hidden" }, "Drifted resources"),
            h("thead", {}, h("tr", {}, ["Resource", "Restoring it will", "Attributes"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              changes.map((change) =>
                h("tr", {}, h("td", { class: "key-cell" }, change.resource), h("td", {}, change.kind), h("td", { class: "key-cell" }, (change.attributes || []).join(", ") || "—")),
              ),
            ),
          ),
          "Drifted resources table",
        )
      : null,
  );
}

function renderHealth(slot, health) {
  const alarms = health?.alarms || [];
  const depths = health?.dlqDepths;
  const facts = [];
  if (health?.completedLastHour !== undefined && health?.completedLastHour !== null) facts.push(`${health.completedLastHour} completed`);
  if (health?.failedLastHour !== undefined && health?.failedLastHour !== null) facts.push(`${health.failedLastHour} failed`);
  replace(
    slot,
    h("h3", {}, "Health ", badge(statusOf(health))),
    h("p", { class: "muted small" }, "Alarms, dead-letter queues and failures of the last hour", ...checked(health)),
    facts.length ? h("p", {}, `Last hour: ${facts.join(", ")}.`) : null,
    depths ? h("p", { class: "small" }, "DLQ depths: ", Object.entries(depths).map(([queue, n]) => `${queue} ${n}`).join(" · ")) : null,
    alarms.length
      ? h("ul", { class: "inline-list", "aria-label": "Alarms" }, alarms.map((alarm) => h("li", { dataset: { alarm: alarm.name } }, h("code", {}, alarm.name), " ", badge(alarm.state))))
      : null,
  );
}

/** The file charts of the last hour, refreshed while the page is open. */
export function fileCharts(ctx, envPath) {
  const content = h("div", {}, loading("Loading the file charts…"));
  const element = h(
    "section",
    { class: "card", "aria-labelledby": "file-charts-heading" },
    h("h2", { id: "file-charts-heading" }, "Files in the last hour"),
    content,
  );
  let started = false;
  async function load() {
    let stats;
    try {
      stats = await api.get(`${envPath}/files/stats`, { query: { minutes: STATS_MINUTES }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      // 409: not provisioned (yet, or any more): nothing to chart, not a failure.
      replace(content, error.status === 409 ? h("p", { class: "muted" }, "No data plane: the environment is not provisioned.") : errorBox(`Could not load the file charts. ${error.message}`, load));
      return;
    }
    render(stats);
  }
  function render(stats) {
    const slots = stats.buckets.map((bucket) => ({ at: toMillis(bucket.at), values: bucket.counts }));
    const measured = stats.buckets.filter((bucket) => bucket.latency.count > 0);
    const line = (field) => measured.map((bucket) => ({ at: toMillis(bucket.at), value: bucket.latency[field] }));
    const seconds = (value) => (value === null || value === undefined ? "—" : value < 10 ? `${Number(value.toFixed(2))} s` : `${Math.round(value)} s`);
    const completed = stats.totals.COMPLETED || 0;
    const failed = stats.totals.FAILED || 0;
    replace(
      content,
      h(
        "p",
        { class: "stats-summary" },
        `${completed} completed, ${failed} failed, ${stats.received} received. Upload→COMPLETED latency: `,
        `p50 ${seconds(stats.latency.p50)} · p90 ${seconds(stats.latency.p90)} · p99 ${seconds(stats.latency.p99)}`,
        stats.truncated ? " (the status table holds more files than one scan reads: partial)" : "",
      ),
      h(
        "div",
        { class: "two-columns" },
        h(
          "div",
          {},
          h("h3", {}, `Files per ${stats.bucketMinutes === 1 ? "minute" : `${stats.bucketMinutes} minutes`} by final status`),
          stackedColumns("Files per minute by final status", slots, [
            { name: "COMPLETED", tone: "ok" },
            { name: "FAILED", tone: "bad" },
          ]),
        ),
        h(
          "div",
          {},
          h("h3", {}, "Upload→COMPLETED latency"),
          measured.length
            ? lineChart(
                "Upload to COMPLETED latency percentiles",
                [
                  { name: "p50", tone: "ok", points: line("p50") },
                  { name: "p90", tone: "warn", points: line("p90") },
                  { name: "p99", tone: "bad", points: line("p99") },
                ],
                { start: toMillis(stats.start), end: toMillis(stats.end), format: seconds, floor: 0 },
              )
            : h("p", { class: "muted" }, "No file completed in the last hour."),
        ),
      ),
    );
  }
  return {
    element,
    /** Start loading once the environment is known to have a data plane. */
    start() {
      if (started) return;
      started = true;
      load();
      ctx.every(load, STATS_REFRESH_MS);
    },
  };
}
