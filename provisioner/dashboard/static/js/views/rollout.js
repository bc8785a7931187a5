// One rollout: its state and halt reason, pause/resume/cancel, and its waves of targets
// filling in live from the rollout's event stream (each event reloads the rollout; the event
// log shows what happened).

import { api, path } from "../api.js";
import { badge, breadcrumbs, clockTime, environmentHref, errorBox, h, loading, pageHeading, replace, statusRegion, tableWrap, timeAgo } from "../dom.js";
import { followEvents } from "../sse.js";
import { describeSelector, progressText } from "./rollouts.js";

const FINAL = new Set(["SUCCEEDED", "HALTED", "CANCELLED"]);
// A burst of events (a wave starting) makes one reload.
const RELOAD_DEBOUNCE_MS = 150;

export function mount(main, ctx) {
  const [id] = ctx.params;
  ctx.title(`Rollout ${id}`);
  const rolloutPath = path`/rollouts/${id}`;
  const stateSlot = h("span", { class: "heading-badge" });
  const summary = h("div", {}, loading(`Loading rollout ${id}…`));
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Rollout actions" });
  const waves = h("div", {});
  const connection = h("p", { class: "connection muted small" });
  const log = h("ol", { class: "event-log", role: "log", "aria-label": "Rollout events" });
  const announce = statusRegion({ class: "visually-hidden" });
  main.append(
    breadcrumbs([["Rollouts", "#/rollouts"], [id]]),
    pageHeading(`Rollout ${id}`, stateSlot),
    summary,
    actions,
    waves,
    h("section", { class: "card", "aria-labelledby": "rollout-events-heading" }, h("h2", { id: "rollout-events-heading" }, "Events"), connection, log),
    announce,
  );

  let rollout = null;
  let stream = null;
  let reloadTimer = null;
  ctx.onCleanup(() => {
    clearTimeout(reloadTimer);
    stream?.stop();
  });

  async function load() {
    try {
      rollout = await api.get(rolloutPath, { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      const message = error.status === 404 ? `Rollout ${id} was not found.` : `Could not load rollout ${id}. ${error.message}`;
      replace(summary, errorBox(message, error.status === 404 ? null : load));
      return;
    }
    render();
    if (!stream) follow();
  }

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, RELOAD_DEBOUNCE_MS);
  }

  function follow() {
    stream = followEvents(path`/rollouts/${id}/events`, {
      isActive: async (signal) => !FINAL.has((await api.get(rolloutPath, { signal })).state),
      onEvent(event) {
        log.append(
          h(
            "li",
            { class: `event${/failed|halt/.test(event.type) ? " event-bad" : ""}`, dataset: { id: event.id, type: event.type } },
            h("time", {}, clockTime(event.data.createdAt)),
            h("span", { class: "event-type" }, event.type),
            h("span", { class: "event-message" }, event.data.message ?? ""),
          ),
        );
        scheduleReload();
      },
      onStatus(status) {
        const texts = {
          connecting: "Connecting to the event stream…",
          live: "Live",
          reconnecting: status.delayMs ? `Connection lost; reconnecting in ${Math.round(status.delayMs / 1000)} s…` : "Reconnecting…",
          ended: "The rollout has ended.",
          error: `Event stream unavailable: ${status.message}`,
        };
        connection.textContent = texts[status.state] ?? "";
        connection.dataset.state = status.state;
        if (status.state === "ended") scheduleReload();
      },
    });
  }

  async function act(verb, button) {
    button.disabled = true;
    try {
      rollout = await api.post(path`/rollouts/${id}/${verb}`, undefined, { signal: ctx.signal });
      ctx.flash(`Rollout ${verb} requested: it is ${rollout.state}.`, "ok");
      render();
    } catch (error) {
      if (error.name === "AbortError") return;
      ctx.flash(`Could not ${verb} rollout ${id}. ${error.message}`, "error");
      render();
    }
  }

  function render() {
    replace(stateSlot, badge(rollout.state));
    const strategy = rollout.strategy || {};
    replace(
      summary,
      h(
        "p",
        { class: "meta muted" },
        `${rollout.action}${rollout.templateVersion ? ` to template version ${rollout.templateVersion}` : ""} · ${describeSelector(rollout)} · started `,
        timeAgo(rollout.createdAt),
        " by ",
        h("code", {}, rollout.createdBy),
        rollout.tenant ? ` · tenant ${rollout.tenant}` : "",
      ),
      h(
        "p",
        { class: "small" },
        `Strategy: canary ${strategy.canary ?? 1}, maxConcurrent ${strategy.maxConcurrent ?? 1}, maxFailures ${strategy.maxFailures ?? 0}`,
        strategy.verify ? `, verified (timeout ${strategy.verifyTimeoutSeconds ?? 120} s)` : "",
        ` · code version `,
        h("code", {}, rollout.codeVersion),
      ),
      h("p", { class: "progress-text", id: "rollout-progress" }, progressText(rollout.counts)),
      rollout.reason
        ? h("p", { class: `notice ${rollout.state === "HALTED" || rollout.state === "HALTING" ? "notice-error" : "notice-warn"}`, role: "alert", id: "rollout-reason" }, `${rollout.state === "HALTED" || rollout.state === "HALTING" ? "Halted" : "Reason"}: ${rollout.reason}`)
        : null,
    );
    const active = !FINAL.has(rollout.state);
    const button = (verb, label, enabled, tone = "") => {
      const element = h("button", { type: "button", class: tone, disabled: !enabled }, label);
      element.addEventListener("click", () => act(verb, element));
      return element;
    };
    replace(
      actions,
      button("pause", "Pause", rollout.state === "RUNNING"),
      button("resume", "Resume", rollout.state === "PAUSED"),
      button("cancel", "Cancel rollout", active && rollout.state !== "CANCELLING", "danger-outline"),
    );
    renderWaves();
    announce.textContent = `Rollout ${rollout.state}: ${progressText(rollout.counts)}`;
  }

  function renderWaves() {
    const byWave = new Map();
    for (const target of rollout.targets) {
      if (!byWave.has(target.wave)) byWave.set(target.wave, []);
      byWave.get(target.wave).push(target);
    }
    const sections = [...byWave.entries()]
      .sort(([a], [b]) => a - b)
      .map(([wave, targets]) => {
        const canary = targets.every((t) => t.canary);
        const title = canary ? `Wave ${wave}: canary` : `Wave ${wave}`;
        return h(
          "section",
          { class: "card wave", dataset: { wave }, "aria-label": title },
          h("h2", {}, title, " ", h("span", { class: "muted small" }, progressText(countStates(targets)))),
          tableWrap(
            h(
              "table",
              { class: "data" },
              h("caption", { class: "visually-hidden" }, title),
              h("thead", {}, h("tr", {}, ["Environment", "State", "Template", "Operation", "Attempts", "Reason", "Verification", "Finished"].map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, targets.sort((a, b) => a.position - b.position).map(targetRow)),
            ),
            `${title} targets`,
          ),
        );
      });
    replace(waves, sections.length ? sections : h("p", { class: "empty" }, "The rollout selected no environments."));
  }

  load();
}

function countStates(targets) {
  const counts = {};
  for (const target of targets) counts[target.state] = (counts[target.state] || 0) + 1;
  return counts;
}

function templateText(template) {
  return template?.version ? `${template.name}@${template.version}` : template?.name ?? "—";
}

function targetRow(target) {
  const verification = target.verification;
  return h(
    "tr",
    { dataset: { target: `${target.tenant}/${target.name}`, state: target.state } },
    h("th", { scope: "row" }, h("a", { href: environmentHref(target.tenant, target.name) }, `${target.tenant}/${target.name}`)),
    h("td", {}, badge(target.state)),
    h("td", {}, `${templateText(target.fromTemplate)} → ${templateText(target.template)}`),
    h(
      "td",
      {},
      target.operationId
        ? h("a", { href: `${environmentHref(target.tenant, target.name)}?op=${encodeURIComponent(target.operationId)}`, title: target.operationId }, target.operationId.slice(0, 8))
        : h("span", { class: "muted" }, "—"),
    ),
    h("td", { class: "num" }, String(target.attempts)),
    h("td", { class: "error-cell" }, target.reason ?? "—"),
    h("td", {}, verification ? verificationText(verification) : h("span", { class: "muted" }, "—")),
    h("td", {}, target.finishedAt ? timeAgo(target.finishedAt) : h("span", { class: "muted" }, "—")),
  );
}

function verificationText(verification) {
  // The canary file's status item (docs/architecture.md §3): its status and how long it took.
  const took = Date.parse(verification.updatedAt) - Date.parse(verification.receivedAt);
  const parts = [verification.status, Number.isFinite(took) ? `${(took / 1000).toFixed(1)} s` : null].filter(Boolean);
  return h("span", { title: verification.objectKey ?? "" }, parts.length ? parts.join(" · ") : "done");
}
