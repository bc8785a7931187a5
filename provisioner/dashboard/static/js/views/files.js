// An environment's files: counts by status, the latest files, failures with a retry button,
// one file's details, and the dead-letter queues (peek, redrive the ingest DLQ).

import { api, path } from "../api.js";
import {
  badge,
  breadcrumbs,
  environmentHref,
  errorBox,
  formatTime,
  h,
  loading,
  pageHeading,
  replace,
  shortId,
  statusRegion,
  tableWrap,
  timeAgo,
} from "../dom.js";

// docs/architecture.md §3, in rank order; FAILED is terminal from any stage.
export const FILE_STATUSES = ["RECEIVED", "VALIDATING", "VALIDATED", "PROCESSING", "PROCESSED", "AGGREGATING", "COMPLETED", "FAILED"];
const PAGE_SIZE = 25;
const FIGURES = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
const figure = (value) => (typeof value === "number" ? FIGURES.format(value) : value ?? "—");
const REDRIVABLE = new Set(["ingest"]);

export function mount(main, ctx) {
  const [tenant, name] = ctx.params;
  const label = `${tenant}/${name}`;
  ctx.title(`Files · ${label}`);
  const base = path`/environments/${tenant}/${name}`;
  const filters = { status: ctx.query.get("status") || "", key: ctx.query.get("key") || "" };
  let nextCursor = null;
  let pagesLoaded = 1;
  let unavailable = false;
  const rendered = {};
  const openPeeks = new Set();

  const counts = h("div", { class: "status-counts", role: "group", "aria-label": "Files by status" });
  const statusSelect = h(
    "select",
    { id: "files-status" },
    h("option", { value: "" }, "Any status"),
    FILE_STATUSES.map((value) => h("option", { value }, value)),
  );
  statusSelect.value = filters.status;
  const keyInput = h("input", { id: "files-key", type: "search", value: filters.key, placeholder: "incoming/…", autocomplete: "off", spellcheck: "false", dataset: { shortcut: "filter" } });
  const autoRefresh = h("input", { id: "files-auto-refresh", type: "checkbox", checked: true });
  const updated = h("span", { class: "muted small" });
  const latest = h("div", {}, loading("Loading files…"));
  const more = h("div", { class: "pager" });
  const failures = h("div", {}, loading("Loading failures…"));
  const dlq = h("div", {}, loading("Loading dead-letter queues…"));
  const details = h("div", {});
  const liveStatus = statusRegion({ class: "visually-hidden" });
  const body = h(
    "div",
    {},
    h("div", { class: "toolbar" }, h("div", { class: "field field-inline" }, autoRefresh, h("label", { for: "files-auto-refresh" }, "Auto-refresh every 5 s")), h("button", { type: "button", dataset: { shortcut: "refresh" }, on: { click: () => refresh() } }, "Refresh"), updated),
    h("section", { class: "card", "aria-labelledby": "counts-heading" }, h("h2", { id: "counts-heading" }, "Files by status"), counts),
    details,
    h(
      "section",
      { class: "card", "aria-labelledby": "latest-heading" },
      h("h2", { id: "latest-heading" }, "Latest files"),
      h(
        "form",
        { class: "filters", role: "search", "aria-label": "Filter files", on: { submit: (event) => (event.preventDefault(), applyFilters()) } },
        h("div", { class: "field" }, h("label", { for: "files-status" }, "Status"), statusSelect),
        h("div", { class: "field field-grow" }, h("label", { for: "files-key" }, "Object key"), keyInput),
        h("button", { type: "submit" }, "Apply"),
      ),
      latest,
      more,
    ),
    h("section", { class: "card", "aria-labelledby": "failures-heading" }, h("h2", { id: "failures-heading" }, "Failures"), failures),
    h("section", { class: "card", "aria-labelledby": "dlq-heading" }, h("h2", { id: "dlq-heading" }, "Dead-letter queues"), dlq),
    liveStatus,
  );

  main.append(
    breadcrumbs([["Environments", "#/environments"], [label, environmentHref(tenant, name)], ["Files"]]),
    pageHeading(`Files · ${label}`),
    body,
  );
  statusSelect.addEventListener("change", applyFilters);

  function applyFilters() {
    filters.status = statusSelect.value;
    filters.key = keyInput.value.trim();
    ctx.setQuery(filters);
    pagesLoaded = 1;
    rendered.latest = null;
    loadLatest();
    renderCountButtons(rendered.countsData);
  }

  function showUnavailable(error) {
    unavailable = true;
    const text = error.isMissingRoute
      ? "File status is not available from this service yet: it answered 404 for the files endpoint. Try again after the service is upgraded."
      : error.status === 404
        ? `Environment ${label} was not found (or belongs to another tenant).`
        : error.status === 409
          ? `File status is not available for ${label} right now (${error.message}).`
          : `Could not load files. ${error.message}`;
    replace(body, h("div", { class: "empty" }, h("p", {}, text), h("a", { href: environmentHref(tenant, name) }, `Back to ${label}`), " ", h("button", { type: "button", on: { click: () => location.reload() } }, "Reload")));
  }

  // --- latest files and counts ---

  async function loadLatest({ append = false } = {}) {
    const query = { status: filters.status, key: filters.key, limit: PAGE_SIZE, cursor: append ? nextCursor : undefined };
    let page;
    try {
      page = await api.get(`${base}/files`, { query, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      if ([401, 404, 409].includes(error.status)) return showUnavailable(error);
      replace(latest, errorBox(`Could not load files. ${error.message}`, () => loadLatest()));
      return;
    }
    rendered.countsData = page.counts || {};
    renderCountButtons(rendered.countsData);
    nextCursor = page.nextCursor || null;
    if (append) {
      latest.querySelector("tbody")?.append(...page.items.map(fileRow));
    } else if (rendered.latest !== JSON.stringify(page.items)) {
      rendered.latest = JSON.stringify(page.items);
      replace(latest, page.items.length ? filesTable(page.items, "Latest files") : h("p", { class: "empty" }, filters.status || filters.key ? "No files match these filters." : "No files yet. Upload a CSV under incoming/ in the environment's bucket."));
    }
    replace(
      more,
      nextCursor
        ? h("button", { type: "button", on: { click: () => ((pagesLoaded += 1), loadLatest({ append: true })) } }, "Load more files")
        : null,
      page.truncated ? h("p", { class: "muted small" }, "The environment holds more files than one listing scans; filter by object key to find a file.") : null,
    );
  }

  function renderCountButtons(values) {
    if (!values) return;
    const entries = FILE_STATUSES.map((status) => [status, values[status] ?? 0]);
    const total = entries.reduce((sum, [, n]) => sum + n, 0);
    replace(
      counts,
      h("button", { type: "button", class: "count", "aria-pressed": String(!filters.status), on: { click: () => ((statusSelect.value = ""), applyFilters()) } }, h("span", { class: "count-label" }, "All"), h("span", { class: "count-value" }, String(total))),
      entries.map(([status, n]) =>
        h(
          "button",
          {
            type: "button",
            class: `count count-${status === "FAILED" ? "bad" : status === "COMPLETED" ? "ok" : "busy"}`,
            "aria-pressed": String(filters.status === status),
            dataset: { status },
            on: { click: () => ((statusSelect.value = status), applyFilters()) },
          },
          h("span", { class: "count-label" }, status),
          h("span", { class: "count-value" }, String(n)),
        ),
      ),
    );
  }

  function fileRow(file) {
    return h(
      "tr",
      { dataset: { fileId: file.fileId } },
      h("th", { scope: "row", class: "key-cell" }, file.objectKey),
      h("td", {}, badge(file.status)),
      h("td", {}, file.stage || "—"),
      h("td", { class: "num" }, String(file.attempt ?? 1)),
      h("td", { class: "num" }, file.rowCount ?? "—"),
      h("td", { class: "num" }, file.rejectedRows ?? "—"),
      h("td", {}, timeAgo(file.updatedAt)),
      h("td", {}, h("button", { type: "button", class: "small-button", "aria-label": `Details of ${file.objectKey}`, on: { click: () => showDetails(file.fileId) } }, "Details")),
    );
  }

  function filesTable(items, caption) {
    return tableWrap(
      h(
        "table",
        { class: "data" },
        h("caption", { class: "visually-hidden" }, caption),
        h("thead", {}, h("tr", {}, ["Object key", "Status", "Stage", "Attempt", "Rows", "Rejected", "Updated", h("span", { class: "visually-hidden" }, "Details")].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, items.map(fileRow)),
      ),
      caption,
    );
  }

  // --- failures ---

  async function loadFailures() {
    let page;
    try {
      page = await api.get(`${base}/files`, { query: { status: "FAILED", limit: PAGE_SIZE }, signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError" || [401, 404, 409].includes(error.status)) return;
      replace(failures, errorBox(`Could not load failures. ${error.message}`, loadFailures));
      return;
    }
    if (rendered.failures === JSON.stringify(page.items)) return;
    rendered.failures = JSON.stringify(page.items);
    if (!page.items.length) {
      replace(failures, h("p", { class: "muted" }, "No failed files."));
      return;
    }
    replace(
      failures,
      tableWrap(
        h(
          "table",
          { class: "data" },
          h("caption", { class: "visually-hidden" }, "Failed files"),
          h("thead", {}, h("tr", {}, ["Object key", "Stage", "Reason", "Attempt", "Failed", h("span", { class: "visually-hidden" }, "Actions")].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            page.items.map((file) =>
              h(
                "tr",
                { dataset: { fileId: file.fileId } },
                h("th", { scope: "row", class: "key-cell" }, file.objectKey),
                h("td", {}, file.error?.stage || file.stage || "—"),
                h("td", { class: "error-cell" }, file.error ? h("span", {}, h("strong", {}, file.error.type), `: ${file.error.message}`) : "—"),
                h("td", { class: "num" }, String(file.attempt ?? 1)),
                h("td", {}, timeAgo(file.updatedAt)),
                h(
                  "td",
                  { class: "row-actions" },
                  h("button", { type: "button", class: "small-button", "aria-label": `Retry ${file.objectKey}`, on: { click: (event) => retry(file, event.currentTarget) } }, "Retry"),
                  h("button", { type: "button", class: "small-button", "aria-label": `Details of ${file.objectKey}`, on: { click: () => showDetails(file.fileId) } }, "Details"),
                ),
              ),
            ),
          ),
        ),
        "Failed files",
      ),
    );
  }

  async function retry(file, button) {
    button.disabled = true;
    button.textContent = "Retrying…";
    try {
      const retried = await api.post(`${base}/files/${encodeURIComponent(file.fileId)}/retry`, undefined, { signal: ctx.signal });
      const text = `Retry of ${file.objectKey} queued: attempt ${retried.attempt ?? "?"}, status ${retried.status}.`;
      ctx.flash(text, "ok");
      liveStatus.textContent = text;
      rendered.failures = null;
      await refresh();
    } catch (error) {
      if (error.name === "AbortError") return;
      ctx.flash(`Retry of ${file.objectKey} refused: ${error.message}`, "error");
      button.disabled = false;
      button.textContent = "Retry";
    }
  }

  // --- one file ---

  async function showDetails(fileId) {
    replace(details, h("section", { class: "card" }, loading("Loading file…")));
    let file;
    try {
      file = await api.get(`${base}/files/${encodeURIComponent(fileId)}`, { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(details, h("section", { class: "card" }, errorBox(`Could not load file ${fileId}. ${error.message}`, () => showDetails(fileId))));
      return;
    }
    const pairs = [
      ["File id", h("code", {}, file.fileId)],
      ["Object key", file.objectKey],
      ["Bucket", file.bucket],
      ["Version", file.versionId ?? "—"],
      ["Status", badge(file.status)],
      ["Stage", file.stage ?? "—"],
      ["Attempt", String(file.attempt ?? 1)],
      ["Received", formatTime(file.receivedAt)],
      ["Updated", formatTime(file.updatedAt)],
      ["Expires", file.expirationTime ? formatTime(file.expirationTime * 1000) : "—"],
      ["Rows", file.rowCount ?? "—"],
      ["Rejected rows", file.rejectedRows ?? "—"],
      ["Symbols", file.symbolCount ?? (file.symbols ? Object.keys(file.symbols).length : "—")],
      ["Result", file.resultKey ? h("code", {}, file.resultKey) : "—"],
      ["Error", file.error ? `${file.error.stage} · ${file.error.type}: ${file.error.message}` : "—"],
    ];
    // Earlier attempts' errors: `previousErrors` (a list) or `lastError` (the one before a retry).
    const earlier = Array.isArray(file.previousErrors) ? file.previousErrors : file.lastError ? [file.lastError] : [];
    const previous = earlier.length
      ? h("div", {}, h("h3", {}, "Earlier attempts"), h("ul", {}, earlier.map((e) => h("li", {}, `${e.stage} · ${e.type}: ${e.message}`))))
      : null;
    const symbols = file.symbols && Object.keys(file.symbols).length
      ? tableWrap(
          h(
            "table",
            { class: "data" },
            h("caption", {}, "Per symbol"),
            h("thead", {}, h("tr", {}, ["Symbol", "Open", "High", "Low", "Close", "Volume", "VWAP", "Trades"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              Object.entries(file.symbols).map(([symbol, s]) =>
                h("tr", {}, h("th", { scope: "row" }, symbol), [s.open, s.high, s.low, s.close, s.volume, s.vwap, s.trades].map((v) => h("td", { class: "num" }, figure(v)))),
              ),
            ),
          ),
          "Per-symbol results",
        )
      : null;
    const heading = h("h2", { id: "file-heading", tabindex: "-1" }, `File ${file.objectKey}`);
    replace(
      details,
      h(
        "section",
        { class: "card", "aria-labelledby": "file-heading" },
        h("div", { class: "panel-heading" }, heading, h("button", { type: "button", on: { click: () => replace(details) } }, "Close details")),
        h("dl", { class: "pairs" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        previous,
        symbols,
      ),
    );
    heading.focus();
  }

  // --- dead-letter queues ---

  async function loadDlq() {
    let answer;
    try {
      answer = await api.get(`${base}/dlq`, { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError" || unavailable || error.status === 409) return;
      replace(dlq, error.status === 404 ? h("p", { class: "muted" }, "Dead-letter queues are not available from this service yet.") : errorBox(`Could not load dead-letter queues. ${error.message}`, loadDlq));
      rendered.dlq = null;
      return;
    }
    if (rendered.dlq === JSON.stringify(answer)) return;
    rendered.dlq = JSON.stringify(answer);
    const queues = answer.queues || [];
    replace(
      dlq,
      queues.length
        ? h("ul", { class: "queues" }, queues.map(queueItem))
        : h("p", { class: "muted" }, "No dead-letter queues reported."),
    );
  }

  function queueItem(queue) {
    const peekId = `dlq-${queue.name}-messages`;
    const peekOpen = openPeeks.has(queue.name);
    const messages = h("div", { id: peekId, hidden: !peekOpen }, messagesTable(queue));
    const peek = h(
      "button",
      {
        type: "button",
        class: "small-button",
        "aria-expanded": String(peekOpen),
        "aria-controls": peekId,
        disabled: !queue.depth,
        on: {
          click: () => {
            const open = messages.hidden;
            messages.hidden = !open;
            peek.setAttribute("aria-expanded", String(open));
            peek.textContent = open ? "Hide messages" : "Peek";
            if (open) openPeeks.add(queue.name);
            else openPeeks.delete(queue.name);
          },
        },
      },
      peekOpen ? "Hide messages" : "Peek",
    );
    const redrive = REDRIVABLE.has(queue.name)
      ? h(
          "button",
          {
            type: "button",
            class: "small-button",
            disabled: !queue.depth,
            "aria-label": `Redrive the ${queue.name} dead-letter queue`,
            on: { click: (event) => redriveQueue(queue, event.currentTarget) },
          },
          "Redrive",
        )
      : null;
    return h(
      "li",
      { class: "queue", dataset: { queue: queue.name } },
      h(
        "div",
        { class: "queue-line" },
        h("span", { class: "queue-name" }, `${queue.name} DLQ`),
        h("span", { class: queue.depth ? "depth depth-bad" : "depth" }, `${queue.depth} ${queue.depth === 1 ? "message" : "messages"}`),
        peek,
        redrive,
      ),
      messages,
    );
  }

  function messagesTable(queue) {
    const items = queue.messages || [];
    if (!items.length) return h("p", { class: "muted" }, "No messages to show.");
    return tableWrap(
      h(
        "table",
        { class: "data" },
        h("caption", { class: "visually-hidden" }, `Messages in the ${queue.name} dead-letter queue`),
        h("thead", {}, h("tr", {}, ["Object key", "Stage", "Reason", "Sent", "File", "Message"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          items.map((m) =>
            h(
              "tr",
              {},
              h("td", { class: "key-cell" }, m.objectKey ?? "—"),
              h("td", {}, m.stage ?? "—"),
              h("td", { class: "error-cell" }, m.reason ?? "—"),
              h("td", {}, timeAgo(m.sentAt)),
              h("td", { title: m.fileId ?? "" }, h("code", {}, shortId(m.fileId))),
              h("td", { title: m.messageId ?? "" }, h("code", {}, shortId(m.messageId))),
            ),
          ),
        ),
      ),
      `${queue.name} dead-letter messages`,
    );
  }

  async function redriveQueue(queue, button) {
    button.disabled = true;
    button.textContent = "Redriving…";
    try {
      const answer = await api.post(`${base}/dlq/${encodeURIComponent(queue.name)}/redrive`, undefined, { signal: ctx.signal });
      const text = `Moved ${answer.moved} ${answer.moved === 1 ? "message" : "messages"} from the ${queue.name} DLQ back to its queue.`;
      ctx.flash(text, "ok");
      liveStatus.textContent = text;
      rendered.dlq = null;
      await refresh();
    } catch (error) {
      if (error.name === "AbortError") return;
      ctx.flash(`Redrive refused: ${error.message}`, "error");
      button.disabled = false;
      button.textContent = "Redrive";
    }
  }

  async function refresh() {
    if (unavailable) return;
    // A user who paged further keeps the rows they loaded; the first page refreshes otherwise.
    await Promise.all([pagesLoaded === 1 ? loadLatest() : null, loadFailures(), loadDlq()]);
    if (!unavailable) updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  const poller = ctx.every(refresh);
  autoRefresh.addEventListener("change", () => poller.set(autoRefresh.checked));
  refresh();
}
