// Login with OAuth2 client credentials, the access token's life, and API calls.
//
// The token (with its scopes and expiry) lives in sessionStorage: it survives a reload of
// this tab, not the tab itself, and no cookie is ever sent (fetch uses credentials: omit).
// The client secret stays in this module's memory only, to get a fresh token before the
// current one expires; after a reload the session ends when its token does.

const STORE = "auie.session";
const MIN_MARGIN_MS = 5_000;

/** An error answered by the API: `{code, message}` with the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** Raised instead of calling the API when nobody is logged in. */
export class NotLoggedIn extends Error {}

let session = restore();
let credentials = null; // {clientId, clientSecret}: memory only
let timer = null;
let refreshing = null;
const listeners = new Set();

function restore() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
    if (saved && typeof saved.token === "string" && saved.expiresAt > Date.now()) return saved;
  } catch {
    // unreadable: start logged out
  }
  sessionStorage.removeItem(STORE);
  return null;
}

function save(next) {
  session = next;
  if (next) sessionStorage.setItem(STORE, JSON.stringify(next));
  else sessionStorage.removeItem(STORE);
  schedule();
  for (const listener of listeners) listener(session);
}

/** Call `listener(session)` whenever the session starts, is refreshed or ends. */
export function onSessionChange(listener) {
  listeners.add(listener);
}

export function currentSession() {
  return session;
}

export function hasScope(scope) {
  return Boolean(session && session.scopes.includes(scope));
}

async function requestToken(clientId, clientSecret) {
  const body = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: clientId,
    client_secret: clientSecret,
  });
  const reply = await fetch("/oauth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body,
    credentials: "omit",
    cache: "no-store",
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new ApiError(reply.status, data.code, data.message);
  const issuedAt = Date.now();
  return {
    token: data.access_token,
    scopes: String(data.scope || "").split(" ").filter(Boolean),
    clientId,
    issuedAt,
    expiresAt: issuedAt + data.expires_in * 1000,
  };
}

/** Log in; rejects with an ApiError (e.g. 401 invalid_client) on bad credentials. */
export async function login(clientId, clientSecret) {
  const next = await requestToken(clientId, clientSecret);
  credentials = { clientId, clientSecret };
  save(next);
  return next;
}

let lastLogoutReason = "";

/** Forget the token and the secret. `reason` is shown on the login form. */
export function logout(reason = "") {
  credentials = null;
  lastLogoutReason = reason;
  save(null);
}

/** Why the last session ended ("" when the person logged out), once. */
export function logoutReason() {
  const reason = lastLogoutReason;
  lastLogoutReason = "";
  return reason;
}

/** Get a fresh token with the secret in memory; false when there is none. */
export function refresh() {
  if (!credentials) return Promise.resolve(false);
  if (!refreshing) {
    const { clientId, clientSecret } = credentials;
    refreshing = requestToken(clientId, clientSecret)
      .then((next) => {
        if (credentials && credentials.clientId === clientId) save(next);
        return true;
      })
      .catch((error) => {
        if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
          logout("The client was refused a new token; log in again.");
          return false;
        }
        // Network trouble: try again shortly while the current token is still valid.
        schedule(5_000);
        return false;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

// Refresh at 80% of the token's life (at least 5 s before it expires); without the secret
// (after a reload) end the session when the token expires.
function schedule(retryInMs) {
  clearTimeout(timer);
  timer = null;
  if (!session) return;
  const now = Date.now();
  const life = session.expiresAt - session.issuedAt;
  const margin = Math.max(MIN_MARGIN_MS, life * 0.2);
  if (credentials) {
    const at = retryInMs ? now + retryInMs : session.expiresAt - margin;
    if (at < session.expiresAt) {
      timer = setTimeout(() => refresh(), Math.max(0, at - now));
      return;
    }
  }
  timer = setTimeout(
    () => logout("Your session expired; log in again."),
    Math.max(0, session.expiresAt - now),
  );
}
schedule();

/**
 * Call the API with the bearer token. `body` (an object) is sent as JSON. Resolves to the
 * parsed JSON (null for 204); rejects with ApiError, or NotLoggedIn without a session.
 */
export async function api(path, { method = "GET", body, retried = false } = {}) {
  if (!session) throw new NotLoggedIn("log in first");
  const headers = { Authorization: `Bearer ${session.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (reply.status === 401 && !retried) {
    if (await refresh()) return api(path, { method, body, retried: true });
    logout("Your session expired; log in again.");
  }
  if (reply.status === 204) return null;
  const data = await reply.json().catch(() => null);
  if (!reply.ok) {
    throw new ApiError(reply.status, data && data.code, data && data.message);
  }
  return data;
}

/** One read-only query through POST /v1/sql: rows as objects keyed by column. */
export async function sql(query) {
  const result = await api("/v1/sql", { method: "POST", body: { query } });
  return result.rows.map((row) =>
    Object.fromEntries(result.columns.map((column, i) => [column, row[i]])),
  );
}

/** A SQL string literal (DuckDB: quotes doubled, no escapes). */
export function literal(value) {
  const text = String(value);
  if (text.includes("\u0000")) throw new Error("text with a NUL character");
  return `'${text.replaceAll("'", "''")}'`;
}
