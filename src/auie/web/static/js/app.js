// The dashboard: login, navigation between pages (#/page?params), scope checks.

import {
  ApiError,
  NotLoggedIn,
  currentSession,
  hasScope,
  login,
  logout,
  logoutReason,
  onSessionChange,
} from "./api.js";
import { destroyCharts } from "./charts.js";
import { h, notice } from "./ui.js";
import overview from "./pages/overview.js";
import events from "./pages/events.js";
import trends from "./pages/trends.js";
import funnels from "./pages/funnels.js";
import retention from "./pages/retention.js";
import profiles from "./pages/profiles.js";
import segments from "./pages/segments.js";
import decisions from "./pages/decisions.js";

const PAGES = [overview, events, trends, funnels, retention, profiles, segments, decisions];
const byId = new Map(PAGES.map((page) => [page.id, page]));

const $ = (id) => document.getElementById(id);
let rendering = 0;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { id: path, params: new URLSearchParams(query) };
}

/** Go to a page: navigate("profiles", {type: "user_id", value: "u1"}). */
export function navigate(id, params = {}) {
  const query = new URLSearchParams(params).toString();
  location.hash = `#/${id}${query ? `?${query}` : ""}`;
}

function defaultPage() {
  return PAGES.find((page) => hasScope(page.scope)) || PAGES[0];
}

function renderNav(activeId) {
  const items = PAGES.map((page) => {
    const allowed = hasScope(page.scope);
    return h(
      "li",
      {},
      h(
        "a",
        {
          href: `#/${page.id}`,
          "aria-current": page.id === activeId ? "page" : null,
          class: allowed ? null : "locked",
          title: allowed ? null : `Needs the ${page.scope} scope`,
          dataset: { page: page.id },
        },
        page.title,
        allowed ? null : h("span", { class: "visually-hidden" }, ` (needs ${page.scope})`),
      ),
    );
  });
  $("nav").replaceChildren(...items);
}

function scopeMessage(page) {
  const session = currentSession();
  const has = session && session.scopes.length ? session.scopes.join(", ") : "none";
  return h(
    "div",
    { class: "notice warning", role: "alert", dataset: { missingScope: page.scope } },
    h("strong", {}, `This page needs the ${page.scope} scope.`),
    ` Your token carries: ${has}. Log in with a client that has ${page.scope} ` +
      "(auie clients create --scopes ...) to see it.",
  );
}

async function renderRoute({ focus = true } = {}) {
  if (!currentSession()) return;
  destroyCharts();
  const { id, params } = parseHash();
  const page = byId.get(id) || defaultPage();
  const ticket = ++rendering;
  renderNav(page.id);
  const heading = h("h1", { tabindex: "-1" }, page.title);
  const body = h("div", { class: "page-body" });
  const main = $("main");
  main.dataset.page = page.id;
  main.dataset.route = location.hash;
  main.dataset.state = "loading";
  main.replaceChildren(heading, body);
  document.title = `${page.title} · AUIE`;
  if (focus) heading.focus();
  if (!hasScope(page.scope)) {
    body.append(scopeMessage(page));
    main.dataset.state = "forbidden";
    return;
  }
  try {
    await page.render(body, params, { navigate });
    if (ticket === rendering) {
      main.dataset.state = "ready";
      $("status").textContent = `${page.title} loaded`;
    }
  } catch (error) {
    if (ticket !== rendering) return;
    if (error instanceof NotLoggedIn) return;
    main.dataset.state = "error";
    if (error instanceof ApiError && error.status === 403) {
      body.replaceChildren(scopeMessage(page));
      main.dataset.state = "forbidden";
    } else {
      body.append(notice(`Could not load this page: ${error.message}`, "error"));
      console.error(error);
    }
  }
}

function showLogin(reason) {
  destroyCharts();
  $("main").replaceChildren();
  $("nav").replaceChildren();
  $("app").hidden = true;
  $("session").hidden = true;
  $("session-client").textContent = "";
  $("status").textContent = "";
  const dialog = $("json-dialog");
  if (dialog.open) dialog.close();
  $("json-dialog-body").textContent = "";
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !reason;
  error.textContent = reason || "";
  document.title = "Log in · AUIE";
  $("client-id").focus();
}

function showApp(session) {
  $("login").hidden = true;
  $("login-error").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  $("session-client").textContent = `Client ${session.clientId}`;
}

onSessionChange((session) => {
  if (!session) {
    showLogin(logoutReason());
    return;
  }
  const wasHidden = $("app").hidden;
  showApp(session);
  if (wasHidden) renderRoute();
  else renderNav(parseHash().id || defaultPage().id);
});

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const clientId = $("client-id").value.trim();
  const secret = $("client-secret").value;
  const error = $("login-error");
  if (!clientId || !secret) {
    error.textContent = "Enter the client id and secret.";
    error.hidden = false;
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  button.textContent = "Logging in…";
  try {
    await login(clientId, secret);
    $("client-secret").value = "";
  } catch (failure) {
    error.textContent =
      failure instanceof ApiError && failure.status === 401
        ? "Unknown client id or wrong secret."
        : `Could not log in: ${failure.message}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
    button.textContent = "Log in";
  }
});

$("logout").addEventListener("click", () => logout(""));
$("json-dialog-close").addEventListener("click", () => $("json-dialog").close());
window.addEventListener("hashchange", () => renderRoute());

const initial = currentSession();
if (initial) {
  showApp(initial);
  renderRoute({ focus: false });
} else {
  showLogin("");
}
document.body.dataset.booted = "true";
