// The approvals queue: updates and destroys of protected environments that wait for an admin
// other than their requester. Each shows its preview's changes; Approve queues it for real,
// Reject cancels it. The service's refusal (403 for the requester's own key, 409 for a stale
// preview) is shown on the operation it is about.

import { api, path } from "../api.js";
import { changeSummary, environmentHref, errorBox, h, loading, pageHeading, replace, statusRegion, tableWrap, timeAgo } from "../dom.js";

const PAGE_SIZE = 100;

export function mount(main, ctx) {
  ctx.title("Approvals");
  const results = h("div", { "aria-live": "off" }, loading("Loading operations awaiting approval…"));
  const updated = statusRegion({ class: "muted small", "aria-live": "off" });
  main.append(
    pageHeading("Approvals", h("button", { type: "button", dataset: { shortcut: "refresh" }, on: { click: () => load() } }, "Refresh")),
    h("p", { class: "muted" }, "Updates and destroys of protected environments wait here with their preview until an admin other than the requester approves or rejects them."),
    updated,
    results,
  );
  // An error shown on a card stays while the list refreshes underneath it.
  const errors = new Map();
  let signature = null;

  async function load() {
    let page;
    try {
      page = await api.get("/operations", { query: { state: "AWAITING_APPROVAL", limit: PAGE_SIZE }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      signature = null;
      replace(results, errorBox(`Could not load the approvals queue. ${error.message}`, load));
      return;
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    const next = JSON.stringify([page, [...errors]]);
    if (next === signature) return;
    signature = next;
    if (!page.items.length) {
      replace(results, h("p", { class: "empty" }, "Nothing is awaiting approval."));
      return;
    }
    replace(results, h("ul", { class: "approval-list" }, page.items.map(card)));
  }

  function card(operation) {
    const preview = operation.preview || { changes: {}, steps: [] };
    const message = h("div", { class: "approval-result", role: "alert" });
    const shown = errors.get(operation.id);
    if (shown) replace(message, h("p", { class: "notice notice-error" }, shown));
    const decide = async (verb, button) => {
      button.disabled = true;
      errors.delete(operation.id);
      replace(message);
      try {
        const result = await api.post(path`/operations/${operation.id}/${verb}`, undefined, { signal: ctx.signal });
        ctx.flash(`${verb === "approve" ? "Approved" : "Rejected"} the ${operation.kind} of ${operation.tenant}/${operation.name}: operation ${result.id} is ${result.state}.`, "ok");
        signature = null;
        await load();
      } catch (error) {
        if (error.name === "AbortError") return;
        const text = `Could not ${verb} operation ${operation.id}. ${error.message}`;
        errors.set(operation.id, text);
        replace(message, h("p", { class: "notice notice-error" }, text));
        button.disabled = false;
      }
    };
    const approve = h("button", { type: "button", class: "primary", "aria-label": `Approve ${operation.kind} of ${operation.tenant}/${operation.name}` }, "Approve");
    const reject = h("button", { type: "button", class: "danger-outline", "aria-label": `Reject ${operation.kind} of ${operation.tenant}/${operation.name}` }, "Reject");
    approve.addEventListener("click", () => decide("approve", approve));
    reject.addEventListener("click", () => decide("reject", reject));
    const steps = (preview.steps || []).filter((step) => step.step !== "same");
    return h(
      "li",
      { class: "card approval", dataset: { operation: operation.id } },
      h(
        "div",
        { class: "panel-heading" },
        h("h2", {}, h("span", { class: "op-kind" }, operation.kind), " of ", h("a", { href: environmentHref(operation.tenant, operation.name) }, `${operation.tenant}/${operation.name}`)),
        h("div", { class: "row-actions" }, approve, reject),
      ),
      h("p", { class: "muted small" }, "Requested by ", h("code", {}, operation.requestedBy), " ", timeAgo(operation.createdAt), " · operation ", h("code", {}, operation.id)),
      h("p", { class: "changes" }, "Changes: ", changeSummary(preview.changes) || "none"),
      steps.length
        ? tableWrap(
            h(
              "table",
              { class: "data" },
              h("caption", { class: "visually-hidden" }, `Planned changes of ${operation.id}`),
              h("thead", {}, h("tr", {}, ["Step", "Resource", "Type"].map((c) => h("th", { scope: "col" }, c)))),
              h(
                "tbody",
                {},
                steps.map((step) =>
                  h("tr", { class: `step-${step.step}` }, h("td", {}, h("span", { class: "op-kind" }, step.step)), h("td", { class: "key-cell" }, step.resource), h("td", { class: "key-cell" }, step.type ?? "—")),
                ),
              ),
            ),
            `Planned changes of ${operation.tenant}/${operation.name}`,
          )
        : h("p", { class: "muted small" }, `The preview plans no resource changes (${(preview.steps || []).length} unchanged).`),
      message,
    );
  }

  load();
  ctx.every(load, 5000);
}
