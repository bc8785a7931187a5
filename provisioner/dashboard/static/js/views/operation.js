// One operation followed live: state, a progress bar, an event log fed by the SSE stream, the
// result (change counts or the error) and a cancel button while it runs.

import { ACTIVE_STATES, api, path } from "../api.js";
import { badge, changeSummary, clockTime, h, replace, statusRegion } from "../dom.js";
import { followOperation } from "../sse.js";

const KIND_TITLES = {
  create: "Create",
  update: "Update",
  destroy: "Destroy",
  refresh: "Drift check",
  "drift-check": "Scheduled drift check",
  preview: "Preview",
};
const RESULT_TITLES = { preview: "Plan", refresh: "Drift", "drift-check": "Drift" };
const MAX_LOG_ENTRIES = 2000;

export function kindTitle(kind) {
  return KIND_TITLES[kind] || kind;
}

/**
 * Returns {element, stop(), operationId}. onFinished(operation) runs once when it has ended
 * (with the operation as the service reports it afterwards).
 */
export function operationPanel(initial, { onFinished = () => {}, flash = () => {} } = {}) {
  let operation = initial;
  let ended = !ACTIVE_STATES.has(initial.state);
  const headingId = `op-${initial.id}-heading`;
  const progressId = `op-${initial.id}-progress`;

  const stateSlot = h("span", {}, badge(operation.state));
  const progress = h("progress", { id: progressId, max: 1, class: "progress" });
  const progressText = statusRegion({ class: "progress-text", "aria-atomic": "true" });
  const connection = h("p", { class: "connection muted small" });
  const result = h("div", { class: "op-result" });
  const log = h("ol", { class: "event-log", tabindex: "0", "aria-label": "Event log", role: "log", "aria-live": "off" });
  const cancelButton = h("button", { type: "button", class: "danger-outline", on: { click: cancel } }, "Cancel operation");
  cancelButton.hidden = ended;
  let done = initial.progress?.done ?? 0;
  let total = initial.progress?.total ?? 0;
  let lastMessage = "";

  const element = h(
    "section",
    { class: "card operation-panel", "aria-labelledby": headingId, dataset: { operationId: initial.id } },
    h(
      "div",
      { class: "panel-heading" },
      h("h2", { id: headingId, tabindex: "-1" }, `${kindTitle(initial.kind)} operation `, stateSlot),
      cancelButton,
    ),
    h("p", { class: "muted small" }, "Operation ", h("code", {}, initial.id), ` · requested by ${initial.requestedBy}`),
    h("label", { for: progressId, class: "visually-hidden" }, "Progress"),
    progress,
    progressText,
    connection,
    result,
    h("h3", {}, "Event log"),
    log,
  );

  function renderProgress() {
    if (total > 0) {
      progress.max = total;
      progress.value = Math.min(done, total);
    } else if (ended) {
      progress.max = 1;
      progress.value = 1;
    } else {
      progress.removeAttribute("value"); // indeterminate until the engine knows the count
    }
    const counts = total > 0 ? `${done} of ${total} resources` : ended ? "" : "Waiting for the engine…";
    progressText.textContent = [counts, lastMessage].filter(Boolean).join(" — ");
  }

  function setState(state) {
    operation = { ...operation, state };
    replace(stateSlot, badge(state));
    cancelButton.hidden = !ACTIVE_STATES.has(state);
  }

  function appendLog(event) {
    const data = event.data || {};
    const tone = event.type === "resource.failed" || data.severity === "error" ? "bad" : data.severity === "warning" ? "warn" : "";
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(
      h(
        "li",
        { class: tone ? `event event-${tone}` : "event", dataset: { type: event.type, id: event.id } },
        h("time", { datetime: data.createdAt || "" }, clockTime(data.createdAt)),
        h("span", { class: "event-type" }, event.type),
        h("span", { class: "event-message" }, data.message ?? ""),
      ),
    );
    while (log.childElementCount > MAX_LOG_ENTRIES) log.firstElementChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function renderResult() {
    const title = RESULT_TITLES[operation.kind] || "Changes";
    const changes = changeSummary(operation.changes);
    const parts = [];
    if (operation.state === "SUCCEEDED") {
      parts.push(h("p", { class: "notice notice-ok" }, `${title}: ${changes || "no changes"}`));
    } else if (!ACTIVE_STATES.has(operation.state)) {
      const reason = operation.error ? `${operation.error.code}: ${operation.error.message}` : "no reason given";
      parts.push(h("p", { class: "notice notice-error" }, `${kindTitle(operation.kind)} ${operation.state.toLowerCase()}: ${reason}`));
      if (changes) parts.push(h("p", {}, `${title}: ${changes}`));
    }
    replace(result, parts);
  }

  async function finish() {
    ended = true;
    try {
      operation = await api.get(path`/operations/${initial.id}`);
    } catch (error) {
      if (error.name === "AbortError") return;
    }
    setState(operation.state);
    done = operation.progress?.done ?? done;
    total = operation.progress?.total ?? total;
    lastMessage = `${kindTitle(operation.kind)} ${operation.state.toLowerCase()}`;
    renderProgress();
    renderResult();
    onFinished(operation);
  }

  async function cancel() {
    cancelButton.disabled = true;
    try {
      operation = await api.post(path`/operations/${initial.id}/cancel`);
      flash(`Cancel requested for operation ${initial.id}.`, "info");
      setState(operation.state);
    } catch (error) {
      if (error.name !== "AbortError") flash(`Could not cancel: ${error.message}`, "error");
    } finally {
      cancelButton.disabled = false;
    }
  }

  renderProgress();
  const stream = followOperation(initial.id, {
    onEvent(event) {
      const data = event.data || {};
      if (data.progress) {
        done = data.progress.done;
        total = data.progress.total || total;
      }
      if (event.type === "operation.started" && operation.state === "QUEUED") setState("RUNNING");
      if (data.message && event.type !== "diagnostic") lastMessage = data.message;
      appendLog(event);
      if (event.type === "operation.finished" && data.data?.state) setState(data.data.state);
      renderProgress();
    },
    onStatus(status) {
      const texts = {
        connecting: "Connecting to the event stream…",
        live: ended ? "Replaying the event log…" : "Live",
        reconnecting: status.delayMs ? `Connection lost; reconnecting in ${Math.round(status.delayMs / 1000)} s…` : "Reconnecting…",
        ended: "",
        error: `Event stream unavailable: ${status.message}`,
      };
      connection.textContent = texts[status.state] ?? "";
      connection.dataset.state = status.state;
      if (status.state === "ended") finish();
    },
  });
  if (ended) renderResult();

  return {
    element,
    operationId: initial.id,
    get ended() {
      return ended;
    },
    stop: () => stream.stop(),
  };
}
