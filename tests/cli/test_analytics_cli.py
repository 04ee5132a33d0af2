"""``auie analytics``: the same answers as the analyses (``--json``), charts otherwise,
segments from the command line, errors as one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import analytics_data as ad
from auie.analytics.funnels import funnels
from auie.analytics.models import FunnelsIn, RetentionIn, TrendsIn
from auie.analytics.persons import Scope
from auie.analytics.retention import retention
from auie.analytics.trends import trends
from auie.cli.analytics import heat, parse_filter
from auie.cli.main import cli
from auie.runtime import Runtime
from helpers import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_environment")]
RANGE = ["--from", ad.START.isoformat(), "--to", ad.END.isoformat()]
BODY_RANGE = {"from": ad.START.isoformat(), "to": ad.END.isoformat()}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "data"
    runtime = Runtime(make_settings(path))
    boot = runtime.bootstrap()
    assert boot is not None
    data, _ = ad.generate(seed=5, users=30, visitors=5)
    ad.load(runtime, boot.workspace, data.events)
    runtime.close()
    return path


Run = Callable[..., Result]


@pytest.fixture
def auie(data_dir: Path) -> Run:
    def run(*args: str, status: int = 0, stdin: str | None = None) -> Result:
        result = CliRunner().invoke(
            cli, [*args, "--data-dir", str(data_dir)], env={"COLUMNS": "100"}, input=stdin
        )
        assert result.exit_code == status, (result.output, result.exception)
        return result

    return run


def direct(data_dir: Path, run: Callable[..., Any], model: Any, body: dict[str, Any]) -> Any:
    runtime = Runtime(make_settings(data_dir))
    try:
        ws = runtime.tenancy.list_workspaces()[0].id
        return run(Scope.of(runtime, ws), model.model_validate(body)).model_dump(
            mode="json", by_alias=True
        )
    finally:
        runtime.close()


def test_trends_json_and_chart(auie: Run, data_dir: Path) -> None:
    args = ["-e", "Product Viewed", "-e", "Product Added", "--measure", "people"]
    args += ["--interval", "week"]
    args += ["-b", "trait:plan", "--breakdown-limit", "2", "-f", "property:price:gte:19"]
    out = json.loads(auie("analytics", "trends", *args, *RANGE, "--json").output)
    body = {
        "events": ["Product Viewed", "Product Added"],
        "measure": "people",
        "interval": "week",
        "breakdown": {"trait": "plan"},
        "breakdownLimit": 2,
        "filters": [{"property": "price", "op": "gte", "value": 19}],
        **BODY_RANGE,
    }
    assert out == direct(data_dir, trends, TrendsIn, body)
    assert out["series"]
    chart = auie("analytics", "trends", *args, *RANGE).output
    assert "people per week, 2026-09-07 to 2026-10-19 (UTC)" in chart
    assert "Product Added · (other)" in chart
    assert "█" in chart
    assert "2026-10-12" in chart


def test_trends_from_a_request_file(auie: Run, tmp_path: Path) -> None:
    body = {"events": ["Signed Up"], "interval": "day", **BODY_RANGE}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    by_file = json.loads(auie("analytics", "trends", "--request", str(path), "--json").output)
    by_stdin = auie("analytics", "trends", "--request", "-", "--json", stdin=json.dumps(body))
    by_flags = auie("analytics", "trends", "-e", "Signed Up", *RANGE, "--json")
    assert by_file == json.loads(by_stdin.output) == json.loads(by_flags.output)
    assert by_file["series"][0]["total"] == 30


def test_funnel_json_and_bars(auie: Run, data_dir: Path) -> None:
    args = [arg for event in ad.FUNNEL for arg in ("-s", event)]
    args += ["--window", "7200", "--step-filter", '1:property:category:in:["shoes","bags"]']
    args += ["-b", "property:category"]
    out = json.loads(auie("analytics", "funnel", *args, *RANGE, "--json").output)
    steps: list[dict[str, Any]] = [{"event": e} for e in ad.FUNNEL]
    steps[0]["filters"] = [{"property": "category", "op": "in", "value": ["shoes", "bags"]}]
    body = {
        "steps": steps,
        "conversionWindow": 7200,
        "breakdown": {"property": "category"},
        **BODY_RANGE,
    }
    assert out == direct(data_dir, funnels, FunnelsIn, body)
    assert [b["breakdown"] for b in out["breakdowns"]] == ["bags", "shoes"] or [
        b["breakdown"] for b in out["breakdowns"]
    ] == ["shoes", "bags"]
    chart = auie("analytics", "funnel", *args, *RANGE).output
    assert "window 2h 0m" in chart
    assert "1. Product Viewed" in chart
    assert "█" in chart
    assert "of the previous step, median" in chart
    assert "by breakdown" in chart


def test_retention_json_and_heat_map(auie: Run, data_dir: Path) -> None:
    args = ["--start-event", "Signed Up", "--return-event", "Order Completed"]
    args += ["--period", "week", "--periods", "5"]
    out = json.loads(auie("analytics", "retention", *args, *RANGE, "--json").output)
    body = {
        "startEvent": "Signed Up",
        "returnEvent": "Order Completed",
        "period": "week",
        "periods": 5,
        **BODY_RANGE,
    }
    assert out == direct(data_dir, retention, RetentionIn, body)
    table = auie("analytics", "retention", *args, *RANGE).output
    assert "retention by week" in table
    assert "100%" in table
    for column in ("w0", "w4"):
        assert column in table
    assert heat(0.0).bgcolor != heat(1.0).bgcolor
    assert heat(0.5).bgcolor not in {heat(0.0).bgcolor, heat(1.0).bgcolor}


def test_segments_from_the_command_line(auie: Run, tmp_path: Path) -> None:
    definition = {"event": "Order Completed", "inLastDays": 3650}
    created = json.loads(
        auie(
            "analytics", "segments", "create", "buyers", "-d", json.dumps(definition), "--json"
        ).output
    )
    sid = created["id"]
    assert created["definition"] == {**definition, "atLeast": 1, "filters": []}
    listed = json.loads(auie("analytics", "segments", "list", "--json").output)
    assert [s["id"] for s in listed] == [sid]
    assert "buyers" in auie("analytics", "segments", "list").output
    page = json.loads(
        auie("analytics", "segments", "members", sid, "--limit", "2", "--json").output
    )
    assert len(page["members"]) == 2
    assert page["count"] > 2
    following = auie("analytics", "segments", "members", sid, "--cursor", page["nextCursor"])
    assert f"{page['count']} members" in following.output
    path = tmp_path / "definition.json"
    path.write_text(json.dumps({"trait": "plan", "op": "eq", "value": "pro"}))
    updated = auie("analytics", "segments", "update", sid, "--name", "pros", "-d", f"@{path}")
    assert "pros" in updated.output
    shown = json.loads(auie("analytics", "segments", "show", sid, "--json").output)
    assert isinstance(shown, dict)  # one segment: its object, as the API answers
    assert shown["name"] == "pros"
    assert shown["definition"] == {"trait": "plan", "op": "eq", "value": "pro"}
    assert "deleted" in auie("analytics", "segments", "delete", sid).output
    missing = auie("analytics", "segments", "show", sid, status=2)
    assert "unknown_segment" in missing.output


def test_sql(auie: Run) -> None:
    out = json.loads(auie("analytics", "sql", "SELECT count(*) AS n FROM events", "--json").output)
    assert out["columns"] == ["n"]
    assert out["rows"][0][0] > 100
    table = auie("analytics", "sql", "SELECT 'x' AS a, [1, 2] AS b").output
    assert "[1, 2]" in table
    refused = auie("analytics", "sql", "COPY events TO '/tmp/x.csv'", status=2)
    assert "read_only" in refused.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trends", "-e", "page", "--interval", "month"], "month"),
        (["trends", "-e", "page", "-f", "price>3"], "KIND:NAME:OP"),
        (["trends", "-e", "page", "-b", "plan"], "KIND:NAME"),
        (["trends", "--from", "2026-02-01", "--to", "2026-01-01", "-e", "x"], "invalid_request"),
        (["trends", "--from", "yesterday", "-e", "x"], "ISO-8601"),
        (["trends"], "events"),
        (["funnel", "-s", "a"], "steps"),
        (["funnel", "-s", "a", "-s", "b", "--step-filter", "3:property:x:eq:1"], "no step 3"),
        (["retention"], "startEvent"),
        (["segments", "create", "x", "-d", "{"], "not JSON"),
        (["segments", "create", "x", "-d", '{"nor": 1}'], "invalid_request"),
    ],
)
def test_errors_are_one_line(auie: Run, args: list[str], message: str) -> None:
    result = auie("analytics", *args, status=2)
    assert message in result.output


def test_filter_syntax() -> None:
    assert parse_filter("property:price:gte:19") == {"property": "price", "op": "gte", "value": 19}
    assert parse_filter('trait:plan:eq:"19"') == {"trait": "plan", "op": "eq", "value": "19"}
    assert parse_filter("trait:plan:eq:pro") == {"trait": "plan", "op": "eq", "value": "pro"}
    assert parse_filter("field:utm_source:is_set") == {"field": "utm_source", "op": "is_set"}
    assert parse_filter("computedTrait:eventCounts.page:gt:3") == {
        "computedTrait": "eventCounts.page",
        "op": "gt",
        "value": 3,
    }
    assert parse_filter("property:url:eq:https://x.example/a:b") == {
        "property": "url",
        "op": "eq",
        "value": "https://x.example/a:b",
    }
    assert parse_filter('{"property": "a", "op": "is_set"}') == {"property": "a", "op": "is_set"}
