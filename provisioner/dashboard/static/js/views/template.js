// One template: every version with its config (what changed from the version before), the
// environments on each version, and (admin keys) publishing the next version.

import { api, path } from "../api.js";
import { breadcrumbs, errorBox, h, loading, pageHeading, replace, tableWrap, timeAgo } from "../dom.js";
import { CONFIG_FIELDS } from "../forms.js";
import { publishForm } from "./templates.js";

export function mount(main, ctx) {
  const [name] = ctx.params;
  ctx.title(`Template ${name}`);
  const content = h("div", {}, loading(`Loading template ${name}…`));
  const publishButton = h("button", { type: "button", "aria-expanded": "false", disabled: true }, "Publish a new version…");
  const publishArea = h("div", { hidden: true });
  main.append(breadcrumbs([["Templates", "#/templates"], [name]]), pageHeading(`Template ${name}`, publishButton), publishArea, content);
  let latest = null;

  publishButton.addEventListener("click", () => {
    const opening = publishArea.hidden;
    publishArea.hidden = !opening;
    publishButton.setAttribute("aria-expanded", String(opening));
    if (opening) {
      replace(publishArea, publishForm(ctx, { name, base: latest?.config || {}, onPublished: () => ctx.navigate(`/templates/${encodeURIComponent(name)}`) }));
      publishArea.querySelector("input")?.focus();
    }
  });

  async function load() {
    let template;
    let environments = null;
    try {
      template = await api.get(path`/templates/${name}`, { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      const message = error.status === 404 ? `Template ${name} was not found.` : `Could not load template ${name}. ${error.message}`;
      replace(content, errorBox(message, error.status === 404 ? null : load));
      return;
    }
    try {
      environments = await api.get("/environments", { query: { template: name, limit: 500 }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      environments = { error };
    }
    latest = template.versions[template.versions.length - 1];
    publishButton.disabled = false;
    replace(
      content,
      h("p", { class: "muted" }, template.description ?? "", template.description ? " · " : "", `Latest version ${template.latestVersion}, published `, timeAgo(latest.createdAt), " by ", h("code", {}, latest.createdBy), "."),
      usage(template, environments),
      versionsTable(template),
    );
  }

  load();
}

function usage(template, environments) {
  if (environments?.error) return errorBox(`Could not load the environments on this template. ${environments.error.message}`);
  const counts = new Map();
  for (const env of environments.items) {
    if (env.state === "DESTROYED") continue;
    counts.set(env.template.version, (counts.get(env.template.version) || 0) + 1);
  }
  return h(
    "section",
    { class: "card", "aria-labelledby": "template-usage-heading" },
    h("h2", { id: "template-usage-heading" }, "Environments on this template"),
    counts.size
      ? h(
          "ul",
          { class: "inline-list" },
          [...counts.entries()].sort(([a], [b]) => a - b).map(([version, n]) =>
            h("li", { dataset: { version } }, `${template.name}@${version}: ${n}`, version < template.latestVersion ? h("span", { class: "badge badge-warn" }, "outdated") : null),
          ),
        )
      : h("p", { class: "muted" }, "No environments use it."),
  );
}

function versionsTable(template) {
  const rows = [];
  let previous = null;
  for (const version of template.versions) {
    const changed = previous ? CONFIG_FIELDS.filter((f) => JSON.stringify(version.config[f.name]) !== JSON.stringify(previous.config[f.name])).map((f) => f.name) : [];
    rows.push({ version, changed });
    previous = version;
  }
  const names = [...new Set(template.versions.flatMap((v) => Object.keys(v.config)))].sort();
  return h(
    "section",
    { class: "card", "aria-labelledby": "template-versions-heading" },
    h("h2", { id: "template-versions-heading" }, "Versions"),
    tableWrap(
      h(
        "table",
        { class: "data config-table" },
        h("caption", { class: "visually-hidden" }, `Versions of ${template.name}`),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, "Setting"), rows.map(({ version }) => h("th", { scope: "col", class: "num" }, `v${version.version}`))),
        ),
        h(
          "tbody",
          {},
          names.map((key) =>
            h(
              "tr",
              { dataset: { setting: key } },
              h("th", { scope: "row" }, h("code", {}, key)),
              rows.map(({ version, changed }) =>
                h("td", { class: changed.includes(key) ? "num changed" : "num", dataset: { version: version.version }, title: changed.includes(key) ? "changed in this version" : null }, formatValue(version.config[key])),
              ),
            ),
          ),
          h("tr", {}, h("th", { scope: "row" }, "Description"), rows.map(({ version }) => h("td", {}, version.description ?? "—"))),
          h("tr", {}, h("th", { scope: "row" }, "Published"), rows.map(({ version }) => h("td", {}, timeAgo(version.createdAt), " by ", h("code", {}, version.createdBy)))),
        ),
      ),
      `Versions of ${template.name} table`,
    ),
  );
}

function formatValue(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}
