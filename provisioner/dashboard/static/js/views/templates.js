// Templates: the list, and (admin keys) publishing a new template as its version 1.

import { api, request } from "../api.js";
import { errorBox, h, loading, offsetFrom, pageHeading, pager, replace, tableWrap, timeAgo } from "../dom.js";
import { CONFIG_FIELDS, FormErrors, configField, field, formSummary, readConfig } from "../forms.js";

const PAGE_SIZE = 50;

export function mount(main, ctx) {
  ctx.title("Templates");
  const state = { offset: offsetFrom(ctx.query) };
  const results = h("div", {}, loading("Loading templates…"));
  const pages = h("div", {});
  const publishButton = h("button", { type: "button", "aria-expanded": "false", on: { click: () => togglePublish() } }, "Publish a template…");
  const publishArea = h("div", { hidden: true });
  main.append(
    pageHeading("Templates", publishButton),
    h("p", { class: "muted" }, "Named, immutable, numbered versions of pipeline configuration. Environments reference one (gold, or pinned gold@2) and add their own overrides."),
    publishArea,
    results,
    pages,
  );

  function togglePublish() {
    const opening = publishArea.hidden;
    publishArea.hidden = !opening;
    publishButton.setAttribute("aria-expanded", String(opening));
    if (opening) {
      replace(publishArea, publishForm(ctx, { onPublished: (version) => ctx.navigate(`/templates/${encodeURIComponent(version.name)}`) }));
      publishArea.querySelector("input")?.focus();
    }
  }

  async function load() {
    let page;
    try {
      page = await api.get("/templates", { query: { limit: PAGE_SIZE, offset: state.offset }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(results, errorBox(`Could not load templates. ${error.message}`, load));
      return;
    }
    replace(
      results,
      tableWrap(
        h(
          "table",
          { class: "data" },
          h("caption", { class: "visually-hidden" }, "Templates"),
          h("thead", {}, h("tr", {}, ["Name", "Latest version", "Description", "Published by", "Created"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            page.items.map((template) =>
              h(
                "tr",
                { dataset: { template: template.name } },
                h("th", { scope: "row" }, h("a", { href: `#/templates/${encodeURIComponent(template.name)}` }, template.name)),
                h("td", { class: "num" }, String(template.latestVersion)),
                h("td", {}, template.description ?? h("span", { class: "muted" }, "—")),
                h("td", {}, h("code", {}, template.createdBy)),
                h("td", {}, timeAgo(template.createdAt)),
              ),
            ),
          ),
        ),
        "Templates table",
      ),
    );
    const move = (offset) => {
      state.offset = offset;
      ctx.setQuery(state);
      load();
    };
    replace(pages, pager(page, PAGE_SIZE, move, { label: "Pages of templates" }));
  }

  load();
}

/**
 * The publish form: a new template (`name` given by the user) or the next version of `name`.
 * `base` pre-fills the config (the latest version's, so that a new version changes only what
 * the user edits). The service validates; a 422 shows next to its field, a 403 (tenant key)
 * or 409 in the summary.
 */
export function publishForm(ctx, { name = null, base = {}, onPublished }) {
  const summary = formSummary();
  const errors = new FormErrors(summary);
  const fields = new Map();
  const add = (entry) => {
    fields.set(entry.key, errors.add(entry));
    return entry.wrapper;
  };
  const nameField = name
    ? null
    : add(field({ key: "name", label: "Template name", control: h("input", { type: "text", autocomplete: "off", spellcheck: "false", required: true }), hint: "Up to 12 of a–z, 0–9 and '-', e.g. gold" }));
  const description = add(field({ key: "description", label: "Description", control: h("input", { type: "text", autocomplete: "off" }), hint: "What this version is for (optional)", wide: true }));
  const configWrappers = CONFIG_FIELDS.map((definition) => add(configField(definition, base[definition.name])));
  const submitButton = h("button", { type: "submit", class: "primary" }, name ? `Publish ${name}@next` : "Publish template");

  async function submit(event) {
    event.preventDefault();
    const { config, problems } = readConfig(fields);
    if (problems.length) {
      errors.show(problems);
      return;
    }
    errors.clear();
    const body = { config, description: fields.get("description").control.value.trim() || undefined };
    if (!name) body.name = fields.get("name").control.value.trim();
    const target = name ? `/admin/templates/${encodeURIComponent(name)}/versions` : "/admin/templates";
    submitButton.disabled = true;
    try {
      const { body: version } = await request("POST", target, { body, signal: ctx.signal });
      ctx.flash(`Published ${version.name}@${version.version}.`, "ok", { afterNavigate: true });
      onPublished(version);
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status === 422 && Array.isArray(error.body?.errors)) {
        errors.show(error.body.errors.map((item) => ({ key: templateFieldKey(item.loc), msg: item.msg })));
      } else {
        errors.show([], { general: [error.message] });
      }
    } finally {
      submitButton.disabled = false;
    }
  }

  return h(
    "form",
    { class: "card stacked-form publish-form", novalidate: true, on: { submit }, "aria-label": name ? `Publish a new version of ${name}` : "Publish a template" },
    h("h2", {}, name ? `Publish a new version of ${name}` : "Publish a template"),
    h("p", { class: "muted small" }, "Admin keys only. Fields left empty take the service's defaults; versions never change once published."),
    summary,
    h("div", { class: "grid" }, nameField, description, configWrappers),
    h("div", { class: "form-actions" }, submitButton),
  );
}

function templateFieldKey(loc) {
  const parts = (loc || []).map(String);
  const rest = parts[0] === "body" ? parts.slice(1) : parts;
  if (rest[0] === "config" && rest.length > 1) return `config.${rest[1]}`;
  return ["name", "description"].includes(rest[0]) ? rest[0] : null;
}
