"""The dashboard in a real headless Chromium against a real ``auie serve``.

A small shop's events go through the real collector API; once the processor has landed
them in the lake, the browser logs in with the bootstrap admin client and every page must
show the numbers the API (and the generated data) give. Screenshots of every page go to
``test-artifacts/screenshots/``. Without a token, nothing but the login form is shown and
no data endpoint is called. Tokens live 30 s here, so the page's refresh runs too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import browser as chromium
import dashboard_data
from browser import Browser
from decide_sim import SHORT_WAIT, settle
from helpers import Server, basic, bearer, start_server

pytestmark = pytest.mark.slow
TOKEN_TTL = 30
SEGMENT = {
    "name": "buyers",
    "description": "Completed an order in the last 30 days",
    "definition": {"event": "Order Completed", "atLeast": 1, "inLastDays": 30},
}
DECISION_POINT = {
    "actions": [
        {"id": "spring-sale", "features": {"kind": "discount", "percent": 20}},
        {"id": "free-shipping", "features": {"kind": "shipping", "percent": 0}},
        {"id": "new-arrivals", "features": {"kind": "catalog", "percent": 0}},
    ],
    "baseline": "new-arrivals",
    "reward": SHORT_WAIT,  # rewards are final (and evaluated) a couple of seconds later
    "experiment": {
        "arms": [
            {"name": "ucb", "policy": {"type": "linucb"}, "share": 1},
            {"name": "greedy", "policy": {"type": "epsilon_greedy", "epsilon": 0.2}, "share": 1},
        ]
    },
}
#: The candidates the Decisions page compares with the current policy (name → type).
EVALUATED = {
    "linucb": "linucb",
    "thompson": "thompson",
    "squarecb": "squarecb",
    "epsilon-greedy": "epsilon_greedy",
    "baseline": "baseline",
}


class Api:
    """The API as the admin client, with a token renewed before it expires."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.token = ""
        self.until = 0.0

    def headers(self) -> dict[str, str]:
        if time.monotonic() > self.until:
            creds = self.server.credentials
            reply = self.http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                headers=basic(creds["clientId"], creds["clientSecret"]),
            )
            assert reply.status_code == 200, reply.text
            self.token = reply.json()["access_token"]
            self.until = time.monotonic() + TOKEN_TTL / 2
        return bearer(self.token)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.http.request(method, path, json=body, headers=self.headers())
        assert reply.status_code < 300, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json() if reply.content else None

    def sql(self, query: str) -> list[list[Any]]:
        rows: list[list[Any]] = self.call("POST", "/v1/sql", {"query": query})["rows"]
        return rows


@dataclass
class Site:
    server: Server
    api: Api
    shop: dashboard_data.Shop


def land(server: Server, api: Api, shop: dashboard_data.Shop, timeout: float = 120) -> None:
    """Wait until the processor has put every event and identifier into the lake."""
    # The first SQL query waits for the lake tables it reads: the query engine turns a
    # table that does not exist yet into an empty one it cannot replace later.
    warehouse = server.data_dir / "lake" / "warehouse" / server.credentials["workspace"]
    deadline = time.monotonic() + timeout
    while not all((warehouse / table / "metadata").is_dir() for table in ("events", "identities")):
        assert time.monotonic() < deadline, "the processor wrote no lake tables"
        time.sleep(0.2)
    identifiers = len(shop.users) * 2 + len(shop.visitors)  # user id + email, or visitor
    identifiers += sum(len(u["devices"]) for u in shop.users.values())
    while True:
        [[events]] = api.sql("SELECT count(*) FROM events")
        [[ids]] = api.sql("SELECT count(DISTINCT (id_type, id_value)) FROM identities")
        if events == len(shop.events) and ids >= identifiers:
            return
        assert time.monotonic() < deadline, f"lake has {events} events, {ids} identifiers"
        time.sleep(0.5)


def decide_and_reward(api: Api) -> None:
    """A few rounds of decisions with rewards, so each arm has a mean and an interval."""
    api.call("PUT", "/v1/decision-points/home-banner", DECISION_POINT)
    worth = {"spring-sale": 0.6, "free-shipping": 0.3, "new-arrivals": 0.1}
    for round_ in range(3):
        for n in range(1, 25):
            chosen = api.call(
                "POST",
                "/v1/decide",
                {
                    "decisionPoint": "home-banner",
                    "userId": f"u-{n:03d}",
                    "context": {"page": "home", "round": round_},
                    "actions": DECISION_POINT["actions"],
                },
            )
            value = worth[chosen["actionId"]] + (n % 3) * 0.1
            api.call("POST", f"/v1/decisions/{chosen['eventId']}/reward", {"value": value})
    deadline = time.monotonic() + 30
    while True:
        report = api.call("GET", "/v1/decision-points/home-banner/report")
        arms = report["arms"].values()
        if arms and all(a["rewarded"] == a["decisions"] for a in arms):
            settle()
            return
        assert time.monotonic() < deadline, report
        time.sleep(0.2)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    assert chromium.available(), "no headless browser: run scripts/install-browser"
    data_dir = tmp_path_factory.mktemp("dashboard") / "data"
    server = start_server(
        data_dir,
        None,
        "--set",
        f"auth.token_ttl_seconds={TOKEN_TTL}",
        "--set",
        "lake.flush_max_seconds=0.2",
    )
    api = Api(server)
    try:
        paths = api.http.get("/openapi.json").json()["paths"]
        if "/v1/sql" not in paths:  # pragma: no cover (until the analytics API lands)
            pytest.skip("this build has no analytics API (POST /v1/sql) yet")
        shop = dashboard_data.generate()
        dashboard_data.send(server.url, server.credentials["writeKey"], shop)
        land(server, api, shop)
        api.call("POST", "/v1/analytics/segments", SEGMENT)
        decide_and_reward(api)
        yield Site(server, api, shop)
    finally:
        api.http.close()
        server.stop()


@pytest.fixture
def web(site: Site, tmp_path: Path) -> Iterator[Browser]:
    driver = Browser(tmp_path / "chromium", site.server.url)
    yield driver
    try:
        # Script errors and CSP violations; answers the tests asked for (401, 404) aside.
        errors = [
            e
            for e in driver.read_console()
            if e["level"] == "SEVERE" and e.get("source") != "network"
        ]
        assert not errors, f"browser console errors: {errors}"
    finally:
        driver.close()


def log_in(web: Browser, client_id: str, secret: str) -> None:
    web.wait_for("#client-id").send_keys(client_id)
    web.find("#client-secret").send_keys(secret)
    web.find("#login-submit").click()


def api_calls(web: Browser) -> list[str]:
    """Paths of the API requests the page made (not the shell or its static files)."""
    paths = [urlsplit(url).path for url in web.read_network() if url.startswith("http")]
    return [p for p in paths if p != "/" and not p.startswith("/static/")]


def number(text: str) -> float:
    return float(text.replace(",", "").replace("%", ""))


def stat(web: Browser, key: str) -> int:
    return int(web.find(f'[data-stat="{key}"]').get_attribute("data-value") or "-1")


def table_rows(web: Browser, css: str) -> list[list[str]]:
    """Cells of a table's body rows (header cells included), as text (hidden ones too)."""
    rows: list[list[str]] = web.js(
        "return [...document.querySelectorAll(arguments[0])].map((row) =>"
        " [...row.querySelectorAll('th, td')].map((cell) => cell.textContent.trim()))",
        f"{css} tbody tr",
    )
    return rows


# -- without a token ----------------------------------------------------------------------


def test_without_login_only_the_form_shows_and_no_data_is_requested(
    site: Site, web: Browser
) -> None:
    web.open("/")
    web.wait_for("#login-form")
    assert not web.visible("#app")
    assert not web.visible("#session")
    assert web.js("return document.getElementById('main').childElementCount") == 0
    assert web.js("return document.getElementById('nav').childElementCount") == 0
    web.screenshot("login")

    # A deep link to a page, and a stale session in storage, change nothing.
    web.js(
        "sessionStorage.setItem('auie.session', JSON.stringify({token: 'x', scopes: "
        "['analytics:read'], clientId: 'c', issuedAt: 0, expiresAt: Date.now() - 1000}))"
    )
    web.js("location.hash = '#/overview'")
    web.reload()
    web.wait_for("#login-form")
    assert not web.visible("#app")
    assert web.js("return sessionStorage.getItem('auie.session')") is None

    # Wrong credentials: only the token endpoint is called, and it says so.
    creds = site.server.credentials
    log_in(web, creds["clientId"], "wrong-secret")
    error = web.wait_for("#login-error")
    assert "wrong secret" in error.text
    assert not web.visible("#app")
    time.sleep(0.5)
    assert api_calls(web) == ["/oauth/token"], api_calls(web)
    body = web.text("body")
    shop = site.shop
    for leaked in ("u-001", str(len(shop.events)), "Product Viewed"):
        assert leaked not in body


# -- every page, logged in ------------------------------------------------------------------


def test_every_page_shows_the_data(site: Site, web: Browser) -> None:
    api, shop = site.api, site.shop
    creds = site.server.credentials
    web.open("/")
    log_in(web, creds["clientId"], creds["clientSecret"])
    web.wait_page("overview")
    assert not web.visible("#login")
    first_token = web.js("return JSON.parse(sessionStorage.getItem('auie.session')).token")
    assert web.js("return document.cookie") == ""
    logged_in_at = time.monotonic()

    check_overview(web, api, shop)
    check_event_explorer(web, shop)
    check_trends(web, api)
    check_funnel(web, api)
    check_retention(web, api)
    check_profile(web, shop)
    check_segments(web, api, shop)
    check_decisions(web, api)

    # Every API call carried the bearer token; the token was renewed before it expired.
    remaining = TOKEN_TTL - (time.monotonic() - logged_in_at)
    web.wait(
        lambda: (
            web.js("return JSON.parse(sessionStorage.getItem('auie.session')).token") != first_token
        ),
        timeout=max(remaining, 5),
        what="the token refresh",
    )
    assert api_calls(web).count("/oauth/token") >= 2
    web.go("overview")
    assert stat(web, "events") == len(shop.events), "still works with the new token"

    # Logging out forgets the token and hides every number.
    web.find("#logout").click()
    web.wait_for("#login-form")
    assert not web.visible("#app")
    assert web.js("return sessionStorage.getItem('auie.session')") is None
    assert web.js("return document.getElementById('main').childElementCount") == 0
    assert str(len(shop.events)) not in web.text("body")


def check_overview(web: Browser, api: Api, shop: dashboard_data.Shop) -> None:
    web.wait(lambda: len(web.find_all(".chart canvas[data-ready]")) == 3, what="3 charts")
    note = web.find(".range-note")
    start, end = note.get_attribute("data-from"), note.get_attribute("data-to")
    [[in_range]] = api.sql(
        f"SELECT count(*) FROM events WHERE timestamp >= TIMESTAMPTZ '{start}' "
        f"AND timestamp < TIMESTAMPTZ '{end}'"
    )
    [[everything]] = api.sql("SELECT count(*) FROM events")
    assert stat(web, "events") == in_range == everything == len(shop.events)
    assert stat(web, "people") == shop.people  # anonymous browsing joined to the user
    assert stat(web, "names") == len(shop.names())
    top = table_rows(web, ".card table")
    expected = sorted(shop.names().items(), key=lambda item: (-item[1], item[0]))
    assert [(name, int(number(n))) for name, n, _ in top] == expected
    # Active people per day add up to at least the people in the range.
    days = table_rows(web, ".data-details table")
    assert sum(int(number(events)) for _, events, _ in days) == len(shop.events)
    web.screenshot("overview")


def check_event_explorer(web: Browser, shop: dashboard_data.Shop) -> None:
    web.go("events")
    assert int(web.find("[data-matching]").get_attribute("data-matching") or "0") == len(
        shop.events
    )
    rows = web.find_all("tr[data-message-id]")
    newest = sorted(shop.events, key=lambda e: e["timestamp"], reverse=True)[: len(rows)]
    assert len(rows) == min(100, len(shop.events))
    assert rows[0].get_attribute("data-message-id") == newest[0]["messageId"]

    # Filter by person and type; click an event to read its JSON.
    who = "u-003"
    web.find("#main input[list='event-names']").send_keys("Product Viewed")
    field = web.find_all("#main .toolbar input")[1]
    field.send_keys(who)
    web.find("#main .toolbar button[type=submit]").click()
    web.wait(lambda: "user=u-003" in web.js("return location.hash"), what="the filter")
    web.wait_page("events")
    wanted = [e for e in shop.of(who) if e.get("event") == "Product Viewed"]
    assert int(web.find("[data-matching]").get_attribute("data-matching") or "0") == len(wanted)
    rows = web.find_all("tr[data-message-id]")
    assert {r.get_attribute("data-message-id") for r in rows} == {e["messageId"] for e in wanted}
    rows[0].find_element("css selector", "button").click()
    dialog = web.wait_for("#json-dialog[open]")
    shown = json.loads(web.text("#json-dialog-body"))
    sent = next(e for e in wanted if e["messageId"] == shown["message_id"])
    assert shown["user_id"] == who
    assert shown["event"] == "Product Viewed"
    assert shown["properties"] == sent["properties"]
    web.screenshot("event-json")
    web.find("#json-dialog-close").click()
    web.wait(lambda: not dialog.is_displayed(), what="dialog closed")
    web.screenshot("events")


def check_trends(web: Browser, api: Api) -> None:
    web.go("trends")
    web.wait_for("[data-chart=trend] canvas[data-ready]")
    dates = [e.get_attribute("value") for e in web.find_all("#main input[type=date]")]
    start = datetime.fromisoformat(f"{dates[0]}T00:00:00+00:00")
    end = datetime.fromisoformat(f"{dates[1]}T00:00:00+00:00") + timedelta(days=1)
    chosen = [
        e.get_attribute("value") for e in web.find_all("#main input[name=event]") if e.is_selected()
    ]
    assert len(chosen) == 2
    expected = api.call(
        "POST",
        "/v1/analytics/trends",
        {"events": chosen, "from": start.isoformat(), "to": end.isoformat()},
    )
    totals = {
        row[0]: int(number(row[1])) for row in table_rows(web, ".result .card > .table-wrap table")
    }
    assert totals == {s["event"]: s["total"] for s in expected["series"]}
    assert all(total > 0 for total in totals.values())

    # People per week, broken down by a trait.
    measure, interval, breakdown = web.find_all("#main .toolbar select")
    web.choose(measure, "people")
    web.choose(interval, "week")
    web.choose(breakdown, "trait")
    web.find("#main input[list=breakdown-fields]").send_keys("plan")
    web.find("#main .toolbar button[type=submit]").click()
    web.wait(
        lambda: len(table_rows(web, ".result .card > .table-wrap table")) > 2, what="breakdown"
    )
    web.wait_for("[data-chart=trend] canvas[data-ready]")
    expected = api.call(
        "POST",
        "/v1/analytics/trends",
        {
            "events": chosen,
            "measure": "people",
            "interval": "week",
            "breakdown": {"trait": "plan"},
            "from": start.isoformat(),
            "to": end.isoformat(),
        },
    )
    shown = {
        row[0]: int(number(row[1])) for row in table_rows(web, ".result .card > .table-wrap table")
    }
    assert shown == {
        f"{s['event']} · {s['breakdown']}" if s["breakdown"] else s["event"]: s["total"]
        for s in expected["series"]
    }
    assert {"pro", "free", "team"} & {s["breakdown"] for s in expected["series"]}
    web.screenshot("trends")


def check_funnel(web: Browser, api: Api) -> None:
    web.go("funnels")
    steps = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
    web.find("#add-step").click()
    web.find("#add-step").click()
    choices = web.find_all("#main select.step-event")
    assert len(choices) == 4
    for choice, step in zip(choices, steps, strict=True):
        web.choose(choice, step)
    web.find("#run-funnel").click()
    web.wait_for("[data-chart=funnel] canvas[data-ready]")
    dates = [e.get_attribute("value") for e in web.find_all("#main input[type=date]")]
    expected = api.call(
        "POST",
        "/v1/analytics/funnels",
        {
            "steps": [{"event": s} for s in steps],
            "conversionWindow": 86400,
            "from": f"{dates[0]}T00:00:00Z",
            "to": (datetime.fromisoformat(f"{dates[1]}T00:00:00+00:00") + timedelta(days=1))
            .astimezone(UTC)
            .isoformat(),
        },
    )
    rows = table_rows(web, ".result table")
    assert [int(number(r[1])) for r in rows] == [s["count"] for s in expected["steps"]]
    assert expected["steps"][0]["count"] > expected["steps"][-1]["count"] > 0
    for row, step in zip(rows, expected["steps"], strict=True):
        assert row[0] == f"{step['step']}. {step['event']}"
        assert number(row[2]) == pytest.approx(step["conversionRate"] * 100, abs=0.05)
    assert rows[1][4] != "—", "median time to convert"
    web.screenshot("funnels")


def check_retention(web: Browser, api: Api) -> None:
    web.go("retention")
    web.wait_for("table[data-chart=retention]")
    start, back, period = web.find_all("#main select")
    web.choose(start, "identify")
    web.choose(back, "page")
    web.choose(period, "day")
    periods = web.find("#main input[type=number]")
    periods.clear()
    periods.send_keys("7")
    web.find("#main .toolbar button[type=submit]").click()
    web.wait(lambda: "day 6" in web.text("table[data-chart=retention] thead"), what="7 days")
    dates = [e.get_attribute("value") for e in web.find_all("#main input[type=date]")]
    expected = api.call(
        "POST",
        "/v1/analytics/retention",
        {
            "startEvent": "identify",
            "returnEvent": "page",
            "period": "day",
            "periods": 7,
            "from": f"{dates[0]}T00:00:00Z",
            "to": (datetime.fromisoformat(f"{dates[1]}T00:00:00+00:00") + timedelta(days=1))
            .astimezone(UTC)
            .isoformat(),
        },
    )
    cohorts = [c for c in expected["cohorts"] if c["size"]]
    cells = web.find_all("table[data-chart=retention] td.heat")
    shown = [float(c.get_attribute("data-rate") or "-1") for c in cells]
    rates = [r for c in cohorts for r in c["rates"] if r is not None]
    assert shown == pytest.approx(rates)
    assert len(table_rows(web, "table[data-chart=retention]")) == len(cohorts)
    assert (
        cells[0].value_of_css_property("background-color")
        != cells[-1].value_of_css_property("background-color")
        or len({*rates}) == 1
    )
    web.screenshot("retention")


def check_profile(web: Browser, shop: dashboard_data.Shop) -> None:
    web.go("profiles")
    user_id, user = next((u, d) for u, d in shop.users.items() if len(d["devices"]) == 2)
    web.choose(web.find("#main select"), "email")
    web.find("#main input").send_keys(user["email"])
    web.find("#main .toolbar button[type=submit]").click()
    web.wait_for("[data-profile-id]")
    web.wait_page("profiles")
    identities = {(r[0], r[1]) for r in table_rows(web, "[data-card=identities]")}
    assert identities == {
        ("user_id", user_id),
        ("email", user["email"]),
        *(("anonymous_id", d) for d in user["devices"]),
    }
    traits = dict(table_rows(web, "[data-card=traits]"))
    assert traits["plan"] == user["plan"]
    assert traits["email"] == user["email"]
    counts = {r[0]: int(r[1]) for r in table_rows(web, "[data-card=counts]")}
    mine = [
        e
        for e in shop.events
        if user_id == e.get("userId") or e.get("anonymousId") in user["devices"]
    ]
    expected: dict[str, int] = {}
    for e in mine:
        name = e["event"] if e["type"] == "track" else e["type"]
        expected[name] = expected.get(name, 0) + 1
    assert counts == expected
    merges = table_rows(web, "[data-card=merges]")
    assert len(merges) >= 1, "two devices joined to the user"
    events = web.find_all("[data-card=events] tr[data-message-id]")
    assert len(events) == min(50, len(mine))
    newest = max(mine, key=lambda e: e["timestamp"])
    assert events[0].get_attribute("data-message-id") == newest["messageId"]
    web.screenshot("profiles")

    # Unknown identifiers say so.
    web.js("location.hash = '#/profiles?type=user_id&value=nobody'")
    web.wait(lambda: "No profile has" in web.text("main"), what="not found")


def check_segments(web: Browser, api: Api, shop: dashboard_data.Shop) -> None:
    web.go("segments")
    [segment] = api.call("GET", "/v1/analytics/segments")
    members = api.call("GET", f"/v1/analytics/segments/{segment['id']}/members?limit=1000")
    assert members["count"] == len(shop.buyers())
    count = web.find('[data-segment-count="buyers"]')
    assert int(number(count.text)) == members["count"]
    web.find(f'a[href="#/segments?id={segment["id"]}"]').click()
    web.wait_for("[data-members]")
    web.wait_page("segments")
    assert web.find("[data-members]").get_attribute("data-members") == str(members["count"])
    rows = table_rows(web, "[data-card=members]")
    assert [r[0] for r in rows] == [m["profileId"] for m in members["members"]]
    assert {r[1] for r in rows} == {f"user_id: {u}" for u in shop.buyers()}
    web.screenshot("segments")


def check_decisions(web: Browser, api: Api) -> None:
    web.go("decisions")
    web.wait_for("[data-chart=decision] canvas[data-ready]")
    report = api.call("GET", "/v1/decision-points/home-banner/report")
    shown = {
        e.get_attribute("data-arm"): json.loads(e.get_attribute("data-mean") or "")
        for e in web.find_all("[data-arm]")
    }
    assert shown == pytest.approx({arm: s["meanReward"] for arm, s in report["arms"].items()})
    assert {"ucb", "greedy"} <= set(shown)
    rows = {r[0]: r for r in table_rows(web, "section.card table")}
    for arm, stats in report["arms"].items():
        assert int(rows[arm][1]) == stats["decisions"]
        if stats["ci95"] is None:
            assert rows[arm][4] == "—"
        else:
            low, high = stats["ci95"]
            assert rows[arm][4] == f"{low:.3f} to {high:.3f}"
    assert report["arms"]["ucb"]["ci95"] is not None
    web.screenshot("decisions")
    # The off-policy comparison, on request: the values the API gives for the same request.
    web.find("[data-evaluate=home-banner]").click()
    web.wait_for("[data-chart=evaluation] canvas[data-ready]", timeout=120)
    expected = api.call(
        "POST",
        "/v1/decisions/evaluate",
        {
            "decisionPoint": "home-banner",
            "candidates": [
                "current",
                *({"name": n, "policy": {"type": t}} for n, t in EVALUATED.items()),
            ],
            "bootstrapRounds": 200,
            "importanceTop": 0,
        },
    )
    shown = {
        (e.get_attribute("data-policy"), e.get_attribute("data-estimator")): json.loads(
            e.get_attribute("data-value") or ""
        )
        for e in web.find_all(".evaluation [data-estimator]")
    }
    assert shown == pytest.approx(
        {
            (p["name"], estimator): value["value"]
            for p in expected["policies"]
            for estimator, value in p["estimates"].items()
        }
    )
    verdicts = {
        e.get_attribute("data-policy"): e.get_attribute("data-verdict")
        for e in web.find_all(".evaluation [data-verdict]")
    }
    assert verdicts == {c["name"]: c["verdict"] for c in expected["comparisons"]}
    assert set(EVALUATED) <= set(verdicts)
    web.screenshot("decisions-evaluation")


# -- a token without the scope ---------------------------------------------------------------


def test_pages_say_which_scope_is_missing(site: Site, web: Browser) -> None:
    made = site.api.call(
        "POST", "/v1/admin/clients", {"name": "support", "scopes": ["profiles:read"]}
    )
    web.open("/")
    log_in(web, made["id"], made["secret"])
    web.wait_for("#app")
    # The default page is the first one the token may see.
    assert web.wait_page("profiles") == "ready"
    web.go("overview")
    message = web.wait_for("[data-missing-scope]")
    assert message.get_attribute("data-missing-scope") == "analytics:read"
    assert "needs the analytics:read scope" in message.text
    assert "profiles:read" in message.text
    assert "locked" in (web.find('nav a[data-page="overview"]').get_attribute("class") or "")
    web.screenshot("missing-scope")
    web.go("decisions")
    assert web.find("[data-missing-scope]").get_attribute("data-missing-scope") == "decide"
    # Pages the token may not see never call their endpoints.
    calls = api_calls(web)
    assert not [c for c in calls if c.startswith(("/v1/sql", "/v1/analytics", "/v1/decision"))]
    # The page it may see works.
    web.js("location.hash = '#/profiles?type=user_id&value=u-002'")
    web.wait_for("[data-profile-id]")
