// Following Server-Sent Events (an operation's, a rollout's). EventSource cannot send an Authorization
// header, so the stream is read with fetch() and parsed here (the WHATWG text/event-stream
// rules); after a drop it reconnects with Last-Event-ID and the service replays what was missed.

import { ACTIVE_STATES, api, ApiError, path, request } from "./api.js";

/** Incremental text/event-stream parser: feed it text, it calls onEvent per complete event. */
export class EventStreamParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.data = [];
    this.type = "";
    this.lastEventId = "";
    this.retry = null;
  }

  feed(text) {
    this.buffer += text;
    // A "\r" at the very end may be the first half of "\r\n": keep it for the next chunk.
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, found.index));
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // comment (the service's keep-alive pings)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    const type = this.type || "message";
    this.type = "";
    if (this.data.length === 0) return;
    const data = this.data.join("\n");
    this.data = [];
    this.onEvent({ id: this.lastEventId, type, data });
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      },
      { once: true },
    );
  });

const MAX_BACKOFF_MS = 10_000;

/**
 * Follows one event stream (`streamPath`) until it is over, reconnecting after drops with
 * Last-Event-ID. It is over at an event of type `finalType`, or when a stream ends and
 * `isActive(signal)` says the thing it follows has ended.
 * handlers: onEvent({id, type, data}) with data parsed from JSON,
 *           onStatus({state: "connecting"|"live"|"reconnecting"|"ended"|"error", delayMs?, message?}).
 * Returns {stop(), done: Promise}.
 */
export function followEvents(streamPath, { finalType = null, isActive, onEvent, onStatus = () => {} }) {
  const controller = new AbortController();
  let lastEventId = "";
  let finished = false;
  let failures = 0;

  const deliver = (event) => {
    // A replay after a reconnect never repeats an event: ids only grow.
    if (event.id && lastEventId && Number(event.id) <= Number(lastEventId)) return;
    if (event.id) lastEventId = event.id;
    let data = null;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = { message: event.data };
    }
    if (finalType && event.type === finalType) finished = true;
    failures = 0;
    onEvent({ id: event.id, type: event.type, data });
  };

  async function readOnce() {
    const headers = lastEventId ? { "Last-Event-ID": lastEventId } : {};
    const response = await request("GET", streamPath, {
      raw: true,
      headers,
      signal: controller.signal,
    });
    onStatus({ state: "live" });
    const parser = new EventStreamParser(deliver);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } finally {
      reader.releaseLock();
    }
    return parser.retry;
  }

  const done = (async () => {
    let retryMs = null;
    while (!finished) {
      onStatus({ state: failures ? "reconnecting" : "connecting" });
      try {
        retryMs = (await readOnce()) ?? retryMs;
        // A stream can end without a final event (the connection dropped, the service shut
        // down): the followed thing's state tells whether to resume or stop.
        if (!finished && !(await isActive(controller.signal))) finished = true;
      } catch (error) {
        if (error.name === "AbortError") return;
        // 4xx (gone, not allowed, signed out) will not get better by retrying.
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          onStatus({ state: "error", message: error.message });
          return;
        }
      }
      if (finished) break;
      failures += 1;
      const delayMs = Math.min(retryMs ?? 1000 * 2 ** (failures - 1), MAX_BACKOFF_MS);
      onStatus({ state: "reconnecting", delayMs });
      try {
        await sleep(delayMs, controller.signal);
      } catch {
        return;
      }
    }
    onStatus({ state: "ended" });
  })();

  return {
    stop: () => controller.abort(),
    done,
    get lastEventId() {
      return lastEventId;
    },
  };
}

/** Follows one operation until its `operation.finished` event (see followEvents). */
export function followOperation(operationId, { onEvent, onStatus = () => {} }) {
  return followEvents(path`/operations/${operationId}/events`, {
    finalType: "operation.finished",
    isActive: async (signal) => ACTIVE_STATES.has((await api.get(path`/operations/${operationId}`, { signal })).state),
    onEvent,
    onStatus,
  });
}
