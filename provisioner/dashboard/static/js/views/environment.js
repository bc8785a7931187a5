// One environment: state, outputs, config, tags, actions (drift check, preview, edit, cancel,
// destroy behind a typed confirmation), the live operation and the operations history.

import { ACTIVE_STATES, api, path, request } from "../api.js";
import {
  ago,
  badge,
  breadcrumbs,
  changeSummary,
  copyText,
  duration,
  environmentHref,
  errorBox,
  formatTime,
  h,
  loading,
  pageHeading,
  pager,
  replace,
  shortId,
  tableWrap,
  timeAgo,
} from "../dom.js";
import { CONFIG_FIELDS, FormErrors, SettingsFields, formSummary } from "../forms.js";
import { kindTitle, operationPanel } from "./operation.js";
import { fileCharts, signalsSection } from "./signals.js";

const CHANGEABLE_STATES = new Set(["READY", "FAILED"]);
const HISTORY_PAGE = 10;

export function mount(main, ctx) {
  const [tenant, name] = ctx.params;
  const label = `${tenant}/${name}`;
  ctx.title(label);
  const envPath = path`/environments/${tenant}/${name}`;

  let environment = null;
  let panel = null;
  let historyOffset = 0;
  const rendered = {};

  const stateSlot = h("span", { class: "heading-badge" });
  const meta = h("p", { class: "meta muted" });
  const failure = h("div", {});
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Environment actions" });
  const actionNote = h("p", { class: "muted small", id: "action-note" });
  const panelSlot = h("div", { class: "panel-slot" });
  const editSlot = h("div", {});
  const extendSlot = h("div", {});
  const outputs = h("section", { class: "card", "aria-labelledby": "outputs-heading" });
  const configSection = h("section", { class: "card", "aria-labelledby": "config-heading" });
  const tagsSection = h("section", { class: "card", "aria-labelledby": "tags-heading" });
  const history = h("section", { class: "card", "aria-labelledby": "history-heading" });
  const body = h("div", { class: "environment-body" }, loading(`Loading ${label}…`));
  const signals = signalsSection();
  const charts = fileCharts(ctx, envPath);

  main.append(
    breadcrumbs([["Environments", "#/environments"], [label]]),
    pageHeading(label, stateSlot),
    body,
  );

  // --- rendering ---

  function changed(key, value) {
    const signature = JSON.stringify(value);
    if (rendered[key] === signature) return false;
    rendered[key] = signature;
    return true;
  }

  function firstRender() {
    replace(
      body,
      meta,
      failure,
      actions,
      actionNote,
      extendSlot,
      editSlot,
      panelSlot,
      signals.element,
      charts.element,
      h("div", { class: "two-columns" }, outputs, h("div", { class: "stack" }, configSection, tagsSection)),
      history,
    );
  }

  function render() {
    const env = environment;
    if (changed("state", env.state)) replace(stateSlot, badge(env.state));
    replace(
      meta,
      `${env.engine} engine · ${env.region} · created `,
      timeAgo(env.createdAt),
      " · updated ",
      timeAgo(env.updatedAt),
      ...(env.expiresAt && env.state !== "DESTROYED"
        ? [" · ", h("span", { id: "expiry" }, `expires ${ago(env.expiresAt)}`)]
        : []),
      ...(env.protected ? [" · protected: changes wait for an approval"] : []),
    );
    if (changed("failure", env.failureReason)) {
      replace(failure, env.failureReason ? h("p", { class: "notice notice-error", role: "alert" }, `Last change failed: ${env.failureReason}`) : null);
    }
    renderActions();
    signals.update(env);
    // Charts need the data plane: from the first time the environment has a status table.
    if (env.outputs?.statusTableName) charts.start();
    if (changed("outputs", [env.outputs, env.awsEndpointUrl])) renderOutputs();
    if (changed("config", env.config)) renderConfig();
    if (changed("tags", env.tags)) renderTags();
  }

  function activeOperation() {
    const last = environment?.lastOperation;
    return last && ACTIVE_STATES.has(last.state) ? last : null;
  }

  function renderActions() {
    const active = activeOperation() || (panel && !panel.ended ? { id: panel.operationId } : null);
    const changeable = CHANGEABLE_STATES.has(environment.state) && !active;
    const signature = JSON.stringify([changeable, environment.state, active?.id]);
    if (!changed("actions", signature)) return;
    const disabled = !changeable;
    // The buttons are rebuilt: keep keyboard focus on the one that had it, or, when it just
    // became disabled because its operation started, move it to that operation's panel.
    const focused = actions.contains(document.activeElement) ? document.activeElement.textContent : null;
    replace(
      actions,
      h("button", { type: "button", disabled, on: { click: () => run("refresh") }, "aria-describedby": "action-note" }, "Drift check"),
      h("button", { type: "button", disabled, on: { click: () => run("preview") }, "aria-describedby": "action-note" }, "Preview"),
      h("button", { type: "button", disabled, on: { click: toggleEdit }, "aria-expanded": String(Boolean(editSlot.firstChild)), "aria-describedby": "action-note", id: "edit-toggle" }, "Edit configuration"),
      h("button", { type: "button", disabled: environment.state === "DESTROYED", on: { click: toggleExtend }, id: "extend-toggle" }, "Extend…"),
      h("a", { class: "button", href: environmentHref(tenant, name, "/files") }, "Files"),
      h("button", { type: "button", class: "danger", disabled, on: { click: openDestroy }, "aria-describedby": "action-note", id: "destroy-button" }, "Destroy…"),
    );
    if (active) actionNote.textContent = `An operation (${active.id}) is in progress: other actions wait until it ends.`;
    else if (environment.state === "DESTROYED") {
      replace(actionNote, "This environment is destroyed. ", h("a", { href: `#/new?tenant=${encodeURIComponent(tenant)}&name=${encodeURIComponent(name)}` }, "Create it again"));
    } else if (!changeable) actionNote.textContent = `Actions are available when the environment is READY or FAILED (it is ${environment.state}).`;
    else actionNote.textContent = "";
    if (disabled && editSlot.firstChild) closeEdit();
    if (focused !== null) {
      const again = [...actions.children].find((element) => element.textContent === focused);
      if (again && !again.disabled) again.focus();
      else panelSlot.querySelector("h2")?.focus();
    }
  }

  function renderOutputs() {
    const env = environment;
    const entries = Object.entries(env.outputs || {}).sort(([a], [b]) => a.localeCompare(b));
    if (env.awsEndpointUrl) entries.unshift(["awsEndpointUrl (local emulator)", env.awsEndpointUrl]);
    replace(
      outputs,
      h("h2", { id: "outputs-heading" }, "Outputs"),
      entries.length
        ? h(
            "dl",
            { class: "outputs" },
            entries.map(([key, value]) => [
              h("dt", {}, key),
              h(
                "dd",
                {},
                h("code", { class: "output-value" }, value),
                h(
                  "button",
                  {
                    type: "button",
                    class: "small-button",
                    "aria-label": `Copy ${key}`,
                    on: {
                      click: async (event) => {
                        const button = event.currentTarget;
                        try {
                          await copyText(value);
                          button.textContent = "Copied";
                          ctx.flash(`Copied ${key} to the clipboard.`, "ok");
                        } catch {
                          ctx.flash(`Could not copy ${key}; select the text instead.`, "error");
                        }
                        setTimeout(() => (button.textContent = "Copy"), 1500);
                      },
                    },
                  },
                  "Copy",
                ),
              ),
            ]),
          )
        : h("p", { class: "muted" }, env.state === "PROVISIONING" ? "Outputs appear when the environment is ready." : "No outputs."),
    );
  }

  function renderConfig() {
    const config = environment.config || {};
    const labels = new Map(CONFIG_FIELDS.map((f) => [f.name, f.label]));
    replace(
      configSection,
      h("h2", { id: "config-heading" }, "Configuration"),
      h(
        "dl",
        { class: "pairs" },
        Object.entries(config).map(([key, value]) => [
          h("dt", { title: key }, labels.get(key) || key),
          h("dd", {}, value === null || value === undefined ? h("span", { class: "muted" }, "default") : String(value)),
        ]),
      ),
    );
  }

  function renderTags() {
    const entries = Object.entries(environment.tags || {});
    replace(
      tagsSection,
      h("h2", { id: "tags-heading" }, "Tags"),
      entries.length
        ? h("ul", { class: "tags" }, entries.map(([key, value]) => h("li", {}, h("span", { class: "tag-key" }, key), "=", h("span", {}, value))))
        : h("p", { class: "muted" }, "No caller tags."),
    );
  }

  // --- operations ---

  function follow(operation) {
    if (panel?.operationId === operation.id) return;
    panel?.stop();
    // Only an operation watched while it ran gets an announcement when it ends; a replayed
    // log of an old one does not.
    const live = ACTIVE_STATES.has(operation.state);
    panel = operationPanel(operation, {
      flash: (message, tone) => ctx.flash(message, tone),
      onFinished: (finished) => {
        if (live) announceEnd(finished);
        load();
      },
    });
    replace(panelSlot, panel.element);
    if (environment) renderActions();
  }
  ctx.onCleanup(() => panel?.stop());

  function announceEnd(operation) {
    if (!ACTIVE_STATES.has(operation.state)) {
      const changes = changeSummary(operation.changes);
      const tone = operation.state === "SUCCEEDED" ? "ok" : "error";
      ctx.flash(`${kindTitle(operation.kind)} of ${label} ${operation.state.toLowerCase()}${changes ? ` (${changes})` : ""}.`, tone);
    }
  }

  async function run(kind) {
    const verbs = { refresh: "Drift check", preview: "Preview" };
    try {
      const operation = await api.post(`${envPath}/${kind}`, undefined, { signal: ctx.signal });
      ctx.flash(`${verbs[kind]} of ${label} started (operation ${operation.id}).`, "info");
      follow(operation);
      load();
    } catch (error) {
      if (error.name !== "AbortError") ctx.flash(`${verbs[kind]} refused: ${error.message}`, "error");
    }
  }

  // --- extend: a new expiry, counted from now (a metadata PATCH: no operation) ---

  function toggleExtend() {
    if (extendSlot.firstChild) {
      replace(extendSlot);
      return;
    }
    const minutes = h("input", { id: "extend-minutes", type: "number", min: "1", max: "525600", value: "60", required: true });
    const error = h("p", { class: "notice notice-error", role: "alert", hidden: true });
    async function submit(event) {
      event.preventDefault();
      try {
        environment = await api.patch(envPath, { ttlMinutes: Number(minutes.value) }, { signal: ctx.signal });
        replace(extendSlot);
        ctx.flash(`${label} now expires ${ago(environment.expiresAt)}.`, "info");
        render();
      } catch (failure) {
        if (failure.name === "AbortError") return;
        error.hidden = false;
        error.textContent = `Extend refused: ${failure.message}`;
      }
    }
    replace(
      extendSlot,
      h(
        "form",
        { class: "card", on: { submit }, "aria-label": "Extend the expiry" },
        h("label", { for: "extend-minutes" }, "Expire in (minutes from now)"),
        minutes,
        h("button", { type: "submit" }, "Set expiry"),
        error,
      ),
    );
    minutes.focus();
  }

  // --- edit ---

  function closeEdit() {
    replace(editSlot);
    document.getElementById("edit-toggle")?.setAttribute("aria-expanded", "false");
  }

  function toggleEdit() {
    if (editSlot.firstChild) {
      closeEdit();
      return;
    }
    const summary = formSummary();
    const settings = new SettingsFields(new FormErrors(summary), {
      config: environment.config,
      tags: environment.tags,
      tagsHint: "One key=value per line; replaces the caller tags.",
    });
    const save = h("button", { type: "submit", class: "primary" }, "Save changes");

    async function submit(event) {
      event.preventDefault();
      const values = settings.read();
      if (!values) return;
      const { config, tags } = values;
      const current = environment.config || {};
      const patch = {};
      for (const definition of CONFIG_FIELDS) {
        const key = definition.name;
        const control = settings.control(`config.${key}`);
        if (key in config && config[key] !== current[key]) patch[key] = config[key];
        // Emptying an optional text field (team, layer ARN) unsets it.
        else if (!(key in config) && control.value.trim() === "" && current[key] !== null && current[key] !== undefined && definition.type === "text") patch[key] = null;
      }
      const body = {};
      if (Object.keys(patch).length) body.config = patch;
      if (JSON.stringify(tags) !== JSON.stringify(environment.tags || {})) body.tags = tags;
      if (!Object.keys(body).length) {
        settings.errors.show([], { general: ["Nothing changed."] });
        return;
      }
      settings.errors.clear();
      save.disabled = true;
      try {
        const { body: operation } = await request("PATCH", envPath, { body, signal: ctx.signal });
        closeEdit();
        ctx.flash(`Update of ${label} started (operation ${operation.id}).`, "info");
        follow(operation);
        load();
      } catch (error) {
        if (error.name !== "AbortError") settings.errors.showApiError(error);
      } finally {
        save.disabled = false;
      }
    }

    replace(
      editSlot,
      h(
        "form",
        { class: "card stacked-form", novalidate: true, "aria-labelledby": "edit-heading", on: { submit } },
        h("h2", { id: "edit-heading" }, "Edit configuration"),
        summary,
        h("div", { class: "grid" }, settings.configWrappers),
        settings.tagsWrapper,
        h("div", { class: "form-actions" }, save, h("button", { type: "button", on: { click: closeEdit } }, "Cancel")),
      ),
    );
    document.getElementById("edit-toggle")?.setAttribute("aria-expanded", "true");
    settings.control("config.memory_mb").focus();
  }

  // --- destroy ---

  function openDestroy() {
    const opener = document.getElementById("destroy-button");
    const input = h("input", { id: "destroy-confirm", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": "destroy-warning" });
    const confirm = h("button", { type: "submit", class: "danger", disabled: true }, "Destroy environment");
    const problem = h("div", { role: "alert" });
    input.addEventListener("input", () => (confirm.disabled = input.value.trim() !== label));
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "destroy-heading" },
      h(
        "form",
        {
          novalidate: true,
          on: {
            submit: async (event) => {
              event.preventDefault();
              if (input.value.trim() !== label) return;
              confirm.disabled = true;
              confirm.textContent = "Destroying…";
              try {
                const operation = await api.delete(envPath, { signal: ctx.signal });
                dialog.close();
                ctx.flash(`Destroy of ${label} started (operation ${operation.id}).`, "info");
                follow(operation);
                load();
              } catch (error) {
                if (error.name === "AbortError") return;
                replace(problem, h("p", { class: "notice notice-error" }, error.message));
                confirm.disabled = false;
                confirm.textContent = "Destroy environment";
              }
            },
          },
        },
        h("h2", { id: "destroy-heading" }, `Destroy ${label}?`),
        h(
          "p",
          { id: "destroy-warning" },
          "This deletes every resource of the environment, including every object version in its bucket and every file status. It cannot be undone.",
        ),
        h("label", { for: "destroy-confirm" }, "Type ", h("code", {}, label), " to confirm"),
        input,
        problem,
        h("div", { class: "form-actions" }, confirm, h("button", { type: "button", on: { click: () => dialog.close() } }, "Keep it")),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      (document.getElementById("destroy-button") || opener)?.focus();
    });
    ctx.onCleanup(() => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  }

  // --- history ---

  async function loadHistory() {
    let page;
    try {
      page = await api.get(`${envPath}/operations`, { query: { limit: HISTORY_PAGE, offset: historyOffset }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(history, h("h2", { id: "history-heading" }, "Operations"), errorBox(`Could not load operations. ${error.message}`, loadHistory));
      rendered.history = null;
      return;
    }
    if (!changed("history", page)) return;
    const rows = page.items.map((op) =>
      h(
        "tr",
        { dataset: { operationId: op.id } },
        h("td", {}, kindTitle(op.kind)),
        h("td", {}, badge(op.state)),
        h("td", { title: formatTime(op.createdAt) }, timeAgo(op.createdAt)),
        h("td", {}, duration(op.startedAt, op.finishedAt)),
        h("td", {}, changeSummary(op.changes) || h("span", { class: "muted" }, "—")),
        h("td", { class: "error-cell" }, op.error ? `${op.error.code}: ${op.error.message}` : ""),
        h("td", { title: op.id }, h("code", {}, shortId(op.id))),
        h(
          "td",
          {},
          h(
            "button",
            { type: "button", class: "small-button", "aria-label": `Show the event log of the ${kindTitle(op.kind)} operation ${op.id}`, on: { click: () => follow(op) } },
            "Show log",
          ),
        ),
      ),
    );
    replace(
      history,
      h("h2", { id: "history-heading" }, "Operations"),
      page.items.length
        ? tableWrap(
            h(
              "table",
              { class: "data" },
              h("thead", {}, h("tr", {}, ["Kind", "State", "Requested", "Duration", "Changes", "Error", "Id", h("span", { class: "visually-hidden" }, "Log")].map((c) => h("th", { scope: "col" }, c)))),
              h("tbody", {}, rows),
            ),
            "Operations history",
          )
        : h("p", { class: "muted" }, "No operations yet."),
      page.total > HISTORY_PAGE
        ? pager(page, HISTORY_PAGE, (offset) => ((historyOffset = offset), loadHistory()), { label: "Pages of operations", previous: "Newer", next: "Older" })
        : null,
    );
  }

  // --- loading ---

  let loadedOnce = false;
  async function load() {
    try {
      environment = await api.get(envPath, { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status === 404) {
        replace(body, h("div", { class: "empty" }, h("p", {}, `Environment ${label} was not found (or belongs to another tenant).`), h("a", { href: "#/environments" }, "Back to environments")));
      } else if (!loadedOnce) {
        replace(body, errorBox(`Could not load ${label}. ${error.message}`, load));
      } else {
        ctx.flash(`Refresh failed: ${error.message}`, "error");
      }
      return;
    }
    if (!loadedOnce) {
      loadedOnce = true;
      firstRender();
    }
    render();
    const active = activeOperation();
    // Someone (here or elsewhere) started an operation: follow it, unless the user is reading
    // another operation's log that is still running.
    if (active && (!panel || (panel.ended && panel.operationId !== active.id))) follow(active);
    loadHistory();
  }

  async function start() {
    const wanted = ctx.query.get("op");
    if (wanted) {
      try {
        follow(await api.get(path`/operations/${wanted}`, { signal: ctx.signal }));
      } catch (error) {
        if (error.name === "AbortError") return;
        ctx.flash(`Operation ${wanted}: ${error.message}`, "error");
      }
    }
    await load();
  }

  main.append(h("button", { type: "button", hidden: true, dataset: { shortcut: "refresh" }, on: { click: load } }, "Refresh"));
  ctx.every(load);
  start();
}
