// The provisioner's HTTP API as the dashboard uses it: the signed-in key, JSON requests, and
// errors turned into one readable message. A 401 anywhere signs the user out.

const KEY_STORAGE = "provisioner.apiKey";
// The API shows this much of a key as its non-secret "prefix" (mdp_ + 6 characters).
const DISPLAY_PREFIX = 10;

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  },
  signIn(key) {
    sessionStorage.setItem(KEY_STORAGE, key);
  },
  signOut() {
    sessionStorage.removeItem(KEY_STORAGE);
  },
  /** What the header shows: never the key itself. */
  get displayPrefix() {
    const key = this.key;
    return key ? `${key.slice(0, DISPLAY_PREFIX)}…` : "";
  },
};

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the service could not be reached
   * @param {object|null} body the `{error, detail, errors?}` body, if the service sent one
   */
  constructor(status, body, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  get code() {
    return this.body?.error ?? null;
  }

  /** A 404 from a route the service does not have (yet), rather than a missing resource. */
  get isMissingRoute() {
    return this.status === 404 && (this.body?.detail === "Not Found" || !this.body);
  }
}

export const UNAUTHORIZED_EVENT = "provisioner:unauthorized";

/** An operation in one of these states has not ended yet. */
export const ACTIVE_STATES = new Set(["QUEUED", "RUNNING"]);

function describe(status, body, text) {
  if (body && typeof body.error === "string") {
    return body.detail ? `${body.error}: ${body.detail}` : body.error;
  }
  const snippet = (text || "").trim().split("\n")[0].slice(0, 200);
  return snippet ? `HTTP ${status}: ${snippet}` : `HTTP ${status}`;
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** Path segments from API data are always encoded. */
export function path(strings, ...values) {
  return strings.reduce(
    (result, part, index) => result + part + (index < values.length ? encodeURIComponent(values[index]) : ""),
    "",
  );
}

/**
 * One API call. Resolves to {status, body, headers}; rejects with ApiError.
 * `key` overrides the signed-in key (the sign-in form checks a key before keeping it) and
 * then a 401 is the caller's to handle.
 */
export async function request(method, target, { query, body, signal, key, headers = {}, raw = false } = {}) {
  const presented = key ?? session.key;
  const init = {
    method,
    signal,
    cache: "no-store",
    headers: { Accept: raw ? "text/event-stream" : "application/json", ...headers },
  };
  if (presented) init.headers.Authorization = `Bearer ${presented}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(target, query), init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, null, "Cannot reach the provisioner service (network error). Is it running?");
  }
  if (raw && response.ok) return response;
  const text = await response.text();
  let parsed = null;
  if ((response.headers.get("Content-Type") || "").includes("json") && text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed, describe(response.status, parsed, text));
    if (response.status === 401 && key === undefined) {
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED_EVENT, { detail: error.message }));
    }
    throw error;
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

export const api = {
  get: (target, options) => request("GET", target, options).then((r) => r.body),
  post: (target, body, options) => request("POST", target, { ...options, body }).then((r) => r.body),
  patch: (target, body, options) => request("PATCH", target, { ...options, body }).then((r) => r.body),
  delete: (target, options) => request("DELETE", target, options).then((r) => r.body),
};
