// Form pieces shared by the create and edit forms: labelled fields with their own error slot,
// the environment's config fields, tags as key=value lines, and the mapping of a 422's
// `errors[].loc` (["body", "config", "memory_mb"]) to the field it is about.

import { h, replace } from "./dom.js";

let nextId = 0;
const uid = (base) => `${base}-${++nextId}`;

// The tunables of an environment (`config` in the API), in the order the forms show them.
// Defaults and limits are the service's; it validates them (the one validation point), the
// form only helps.
const RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
export const CONFIG_FIELDS = [
  { name: "team", label: "Team", type: "text", hint: "Team tag; defaults to the tenant" },
  { name: "memory_mb", label: "Memory (MB)", type: "number", min: 128, max: 10240, step: 1, placeholder: "512", hint: "Stage functions' memory, 128–10240" },
  { name: "stage_timeout_s", label: "Stage timeout (s)", type: "number", min: 1, max: 900, step: 1, placeholder: "300", hint: "Stage functions' timeout, 1–900" },
  { name: "log_retention_days", label: "Log retention (days)", type: "select", options: RETENTION_DAYS, placeholder: "7", hint: "CloudWatch Logs retention" },
  { name: "glacier_after_days", label: "Glacier after (days)", type: "number", min: 1, step: 1, placeholder: "90", hint: "Uploads move to GLACIER" },
  { name: "status_ttl_days", label: "Status TTL (days)", type: "number", min: 1, step: 1, placeholder: "30", hint: "File status items expire after" },
  { name: "api_rate_limit", label: "API rate limit (req/s)", type: "number", min: 1, max: 10000, step: "any", placeholder: "1000", hint: "Status API throttling" },
  { name: "api_burst_limit", label: "API burst limit", type: "number", min: 1, max: 5000, step: 1, placeholder: "2000", hint: "At least the rate limit" },
  { name: "max_bad_row_ratio", label: "Max bad-row ratio", type: "number", min: 0, max: 0.99, step: "any", placeholder: "0.01", hint: "Share of bad rows above which a file is rejected" },
  { name: "powertools_layer_arn", label: "Powertools layer ARN", type: "text", hint: "Override the AWS-published layer (optional)", wide: true },
];

/** Which form field a 422 entry is about: "tenant", "name", "region", "tags", "config.<x>". */
export function fieldKey(loc) {
  const parts = (loc || []).map(String);
  const rest = parts[0] === "body" ? parts.slice(1) : parts;
  if (rest[0] === "config" && rest.length > 1) return `config.${rest[1]}`;
  if (["tenant", "name", "region", "tags"].includes(rest[0])) return rest[0];
  return null;
}

/** A labelled control with a hint and an error slot, wired with aria-describedby. */
export function field({ key, label, control, hint, wide = false }) {
  const id = uid(`field-${key.replace(/\W/g, "-")}`);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  control.id = id;
  control.name = key;
  control.setAttribute("aria-describedby", [hint ? hintId : null, errorId].filter(Boolean).join(" "));
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  const wrapper = h(
    "div",
    { class: wide ? "field field-wide" : "field", dataset: { field: key } },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    error,
  );
  return { key, wrapper, control, error };
}

export function configField(definition, value) {
  let control;
  if (definition.type === "select") {
    control = h(
      "select",
      {},
      h("option", { value: "" }, `Default (${definition.placeholder})`),
      definition.options.map((option) => h("option", { value: String(option) }, String(option))),
    );
    control.value = value === undefined || value === null ? "" : String(value);
  } else {
    control = h("input", {
      type: definition.type,
      min: definition.min,
      max: definition.max,
      step: definition.step,
      placeholder: definition.placeholder ? `default ${definition.placeholder}` : null,
      inputmode: definition.type === "number" ? "decimal" : null,
      autocomplete: "off",
      value: value ?? "",
    });
  }
  return field({
    key: `config.${definition.name}`,
    label: definition.label,
    control,
    hint: definition.hint,
    wide: definition.wide,
  });
}

/** The config values the user filled in; empty fields are left to the service's defaults. */
export function readConfig(fields) {
  const config = {};
  const problems = [];
  for (const definition of CONFIG_FIELDS) {
    const entry = fields.get(`config.${definition.name}`);
    if (!entry) continue;
    const { control } = entry;
    if (control.validity?.badInput) {
      problems.push({ key: entry.key, msg: "Enter a number" });
      continue;
    }
    const raw = control.value.trim();
    if (raw === "") continue;
    config[definition.name] = definition.type === "text" ? raw : Number(raw);
  }
  return { config, problems };
}

export function formatTags(tags) {
  return Object.entries(tags || {})
    .map(([key, value]) => `${key}=${value}`)
    .join("\n");
}

/** "key=value" per line; blank lines are ignored. Returns {tags, problem}. */
export function parseTags(text) {
  const tags = {};
  const lines = text.split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (!line.trim()) continue;
    const equals = line.indexOf("=");
    if (equals <= 0) return { tags, problem: `Line ${index + 1}: write tags as key=value` };
    tags[line.slice(0, equals).trim()] = line.slice(equals + 1).trim();
  }
  return { tags, problem: null };
}

/** Shows errors next to their fields, the rest in the form's summary. */
export class FormErrors {
  constructor(summary) {
    this.summary = summary;
    this.fields = new Map();
  }

  add(entry) {
    this.fields.set(entry.key, entry);
    return entry;
  }

  clear() {
    for (const { control, error } of this.fields.values()) {
      control.removeAttribute("aria-invalid");
      error.hidden = true;
      error.textContent = "";
    }
    this.summary.hidden = true;
    replace(this.summary);
  }

  /** [{key, msg}] → messages by their fields; focus moves to the first invalid one. */
  show(problems, { heading = "Please correct the highlighted fields.", general = [] } = {}) {
    this.clear();
    const unplaced = [...general];
    let first = null;
    for (const { key, msg } of problems) {
      const entry = key ? this.fields.get(key) : null;
      if (!entry) {
        unplaced.push(key ? `${key}: ${msg}` : msg);
        continue;
      }
      entry.control.setAttribute("aria-invalid", "true");
      entry.error.textContent = entry.error.textContent ? `${entry.error.textContent} ${msg}` : msg;
      entry.error.hidden = false;
      first ??= entry.control;
    }
    const items = unplaced.map((text) => h("li", {}, text));
    replace(
      this.summary,
      h("p", { class: "summary-heading" }, first ? heading : unplaced.length ? "The service refused this request." : heading),
      items.length ? h("ul", {}, items) : null,
    );
    this.summary.hidden = false;
    (first || this.summary).focus();
  }

  /** An ApiError from a submit: 422 per field, anything else (409, 403…) in the summary. */
  showApiError(error) {
    if (error.status === 422 && Array.isArray(error.body?.errors) && error.body.errors.length) {
      const problems = error.body.errors.map((item) => ({ key: fieldKey(item.loc), msg: item.msg }));
      this.show(problems);
    } else {
      this.show([], { general: [error.message] });
    }
  }
}

export function formSummary() {
  return h("div", { class: "notice notice-error form-summary", role: "alert", tabindex: "-1", hidden: true });
}

/** The config fields and the tags field, as the create and edit forms both show them. */
export class SettingsFields {
  constructor(errors, { config = {}, tags = {}, tagsHint }) {
    this.errors = errors;
    this.fields = new Map();
    this.configWrappers = CONFIG_FIELDS.map((definition) => this.add(configField(definition, config?.[definition.name])));
    this.tagsControl = h("textarea", { rows: 4, spellcheck: "false", placeholder: "owner=data-platform\ncost-center=1234" });
    this.tagsControl.value = formatTags(tags);
    this.tagsWrapper = this.add(field({ key: "tags", label: "Tags", control: this.tagsControl, hint: tagsHint, wide: true }));
  }

  add(entry) {
    this.fields.set(entry.key, this.errors.add(entry));
    return entry.wrapper;
  }

  control(key) {
    return this.fields.get(key).control;
  }

  /** {config, tags}, or null once what is wrong is shown next to its field. */
  read() {
    const { config, problems } = readConfig(this.fields);
    const parsed = parseTags(this.tagsControl.value);
    if (parsed.problem) problems.push({ key: "tags", msg: parsed.problem });
    if (problems.length) {
      this.errors.show(problems);
      return null;
    }
    return { config, tags: parsed.tags };
  }
}
