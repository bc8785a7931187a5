// The create form. The service is the one place names and tunables are validated, so the form
// sends what was typed and shows each 422 message next to its field.

import { request } from "../api.js";
import { breadcrumbs, environmentHref, h, pageHeading } from "../dom.js";
import { FormErrors, SettingsFields, field, formSummary } from "../forms.js";

export function mount(main, ctx) {
  ctx.title("New environment");
  const summary = formSummary();
  const settings = new SettingsFields(new FormErrors(summary), {
    tagsHint: "One key=value per line. Environment, Team, Tenant and ManagedBy are set by the provisioner.",
  });
  const text = (attributes = {}) => h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...attributes });
  const tenant = settings.add(
    field({ key: "tenant", label: "Tenant", control: text({ value: ctx.query.get("tenant") || "", required: true }), hint: "Lowercase letters and digits, starting with a letter (e.g. acme)" }),
  );
  const name = settings.add(
    field({ key: "name", label: "Name", control: text({ value: ctx.query.get("name") || "", required: true }), hint: "Up to 12 of a–z, 0–9 and '-', e.g. dev or prod-eu" }),
  );
  const region = settings.add(field({ key: "region", label: "Region", control: text({ value: "us-east-1" }), hint: "AWS region code" }));
  const submitButton = h("button", { type: "submit", class: "primary" }, "Create environment");

  async function submit(event) {
    event.preventDefault();
    const values = settings.read();
    if (!values) return;
    settings.errors.clear();
    const body = {
      tenant: settings.control("tenant").value.trim(),
      name: settings.control("name").value.trim(),
      region: settings.control("region").value.trim() || undefined,
      ...values,
    };
    submitButton.disabled = true;
    submitButton.textContent = "Creating…";
    try {
      const { body: operation } = await request("POST", "/environments", { body, signal: ctx.signal });
      ctx.flash(`Creating ${body.tenant}/${body.name}: operation ${operation.id} is ${operation.state}.`, "info", { afterNavigate: true });
      ctx.navigate(`${environmentHref(body.tenant, body.name).slice(1)}?op=${encodeURIComponent(operation.id)}`);
    } catch (error) {
      if (error.name === "AbortError") return;
      settings.errors.showApiError(error);
    } finally {
      submitButton.disabled = false;
      submitButton.textContent = "Create environment";
    }
  }

  main.append(
    breadcrumbs([["Environments", "#/environments"], ["New environment"]]),
    pageHeading("New environment"),
    h(
      "form",
      { class: "stacked-form", novalidate: true, on: { submit }, "aria-describedby": "create-intro" },
      h("p", { id: "create-intro", class: "muted" }, "Creates the pipeline's bucket, queues, functions, state machine, status table and API. Optional fields left empty take the service's defaults."),
      summary,
      h("fieldset", {}, h("legend", {}, "Environment"), h("div", { class: "grid" }, tenant, name, region)),
      h("fieldset", {}, h("legend", {}, "Configuration (optional)"), h("div", { class: "grid" }, settings.configWrappers)),
      h("fieldset", {}, h("legend", {}, "Tags (optional)"), settings.tagsWrapper),
      h("div", { class: "form-actions" }, submitButton, h("a", { href: "#/environments", class: "button" }, "Cancel")),
    ),
  );
  settings.control(ctx.query.get("tenant") ? "name" : "tenant").focus();
}
