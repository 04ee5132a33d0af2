"""``auie analytics``: bad command-line input (request and definition files, --last,
--limit, missing or malformed flags) is one line naming the option, exit status 2, never
a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auie.cli.main import cli
from auie.runtime import Runtime
from helpers import assert_usage_error, make_settings

pytestmark = pytest.mark.usefixtures("clean_environment")

Run = Callable[..., Result]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bootstrapped data directory: one workspace, an empty lake."""
    path = tmp_path_factory.mktemp("cli-input") / "data"
    runtime = Runtime(make_settings(path))
    assert runtime.bootstrap() is not None
    runtime.close()
    return path


@pytest.fixture
def auie(data_dir: Path) -> Run:
    def run(*args: str, stdin: bytes | None = None) -> Result:
        return CliRunner().invoke(
            cli, ["analytics", *args, "--data-dir", str(data_dir)], input=stdin
        )

    return run


def assert_invalid_request(result: Result, *mentions: str) -> str:
    """Exit 2 through the CLI's error helper: ``error (invalid_request): ...``, one line."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error (invalid_request): "), lines[0]
    for text in mentions:
        assert text in lines[0], lines[0]
    return lines[0]


FLAGS = {
    "trends": ["-e", "Signed Up"],
    "funnel": ["-s", "Signed Up", "-s", "Order Completed"],
    "retention": ["--start-event", "Signed Up"],
}


# -- request and definition files ----------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    found = {
        "missing": tmp_path / "f" / "nope.json",
        "not-utf8": tmp_path / "latin1.json",
        "malformed": tmp_path / "brace.json",
        "nan": tmp_path / "nan.json",
        "directory": tmp_path / "folder",
    }
    found["not-utf8"].write_bytes('{"events": ["caf\xe9"]}'.encode("latin-1"))
    found["malformed"].write_text("{", encoding="utf-8")
    found["nan"].write_text('{"trait": "x", "op": "gt", "value": NaN}', encoding="utf-8")
    found["directory"].mkdir()
    return found


PROBLEMS = {
    "missing": "nope.json: no such file",
    "not-utf8": "latin1.json: the file is not UTF-8 text: byte 0xe9 at offset 16",
    "malformed": "brace.json is not JSON: Expecting property name",
    "nan": "nan.json is not standard JSON: NaN is not a JSON number",
    "directory": "folder is a directory, not a file",
}


@pytest.mark.parametrize("command", ["trends", "funnel", "retention"])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_request_file_problems_name_the_file(
    auie: Run, files: dict[str, Path], command: str, problem: str
) -> None:
    result = auie(command, "--request", str(files[problem]))
    line = assert_usage_error(result, "Invalid value for --request", PROBLEMS[problem])
    assert str(files[problem]) in line


def test_request_from_stdin_that_is_not_utf8(auie: Run) -> None:
    result = auie("trends", "--request", "-", stdin=b'{"events": ["\xff"]}')
    assert_usage_error(result, "--request", "stdin: the file is not UTF-8 text: byte 0xff")


def test_an_empty_request_object_is_the_request_not_a_fallback_to_flags(
    auie: Run, tmp_path: Path
) -> None:
    path = tmp_path / "empty.json"
    path.write_text("{}", encoding="utf-8")
    # Flags are ignored with --request, even when the file's object is empty.
    result = auie("trends", "--request", str(path), "-e", "Signed Up")
    assert_invalid_request(result, "events: Field required")


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_definition_file_problems_name_the_file(
    auie: Run, files: dict[str, Path], problem: str
) -> None:
    result = auie("segments", "create", "buyers", "-d", f"@{files[problem]}")
    line = assert_usage_error(result, "Invalid value for --definition", PROBLEMS[problem])
    assert str(files[problem]) in line


def test_definition_file_that_is_good_is_read(auie: Run, tmp_path: Path) -> None:
    path = tmp_path / "definition.json"
    definition = {"trait": "plan", "op": "eq", "value": "pro"}
    path.write_text(json.dumps(definition), encoding="utf-8")
    created = auie("segments", "create", "pros", "-d", f"@{path}", "--json")
    assert created.exit_code == 0, (created.output, created.exception)
    assert json.loads(created.stdout)["definition"] == definition  # the object, not a list
    segment = json.loads(created.stdout)["id"]
    assert auie("segments", "delete", segment).exit_code == 0


# -- --last ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["trends", "funnel", "retention"])
@pytest.mark.parametrize(
    ("last", "problem"),
    [
        ("nan", "'nan' is not a number of days"),
        ("inf", "is not in the range 0<x<=3660"),
        ("1e12", "is not in the range 0<x<=3660"),
        ("0", "is not in the range 0<x<=3660"),
        ("-3", "is not in the range 0<x<=3660"),
        ("3661", "is not in the range 0<x<=3660"),
    ],
)
def test_last_is_a_bounded_number_of_days(auie: Run, command: str, last: str, problem: str) -> None:
    result = auie(command, *FLAGS[command], "--last", last)
    assert_usage_error(result, "Invalid value for '--last'", problem)


def test_last_up_to_the_longest_range_is_taken(auie: Run) -> None:
    result = auie("trends", "-e", "Signed Up", "--last", "3660", "--interval", "week", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    assert out["series"][0]["total"] == 0
    assert len(out["buckets"]) >= 522


# -- sql --limit ----------------------------------------------------------------------------------

THREE_ROWS = "SELECT x FROM (VALUES (1), (2), (3)) t(x)"


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_sql_limit_below_one_is_refused(auie: Run, limit: str) -> None:
    result = auie("sql", THREE_ROWS, "--limit", limit, "--json")
    assert_usage_error(result, "Invalid value for '--limit'", f"{limit} is not in the range x>=1")
    assert result.stdout == ""


def test_sql_limit_above_the_row_limit_is_refused(auie: Run) -> None:
    result = auie("sql", THREE_ROWS, "--limit", "10001")
    assert_usage_error(
        result, "Invalid value for --limit", "10001 is more than analytics.sql_row_limit (10000)"
    )
    raised = auie("sql", THREE_ROWS, "--limit", "10001", "--set", "analytics.sql_row_limit=10001")
    assert raised.exit_code == 0, (raised.output, raised.exception)


def test_sql_limit_is_the_row_limit(auie: Run) -> None:
    two = json.loads(auie("sql", THREE_ROWS, "--limit", "2", "--json").stdout)
    assert two == {"columns": ["x"], "rows": [[1], [2]], "truncated": True}
    every = json.loads(auie("sql", THREE_ROWS, "--limit", "3", "--json").stdout)
    assert every["rows"] == [[1], [2], [3]]
    assert every["truncated"] is False


# -- flags, not JSON fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trends"], "Missing option '--event' / '-e'."),
        (["trends", "-f", "property:price:gte:19"], "Missing option '--event' / '-e'."),
        (["funnel"], "Missing option '--step' / '-s'."),
        (["retention"], "Missing option '--start-event'."),
        (["retention", "--return-event", "Order Completed"], "Missing option '--start-event'."),
    ],
)
def test_missing_required_flag_is_named(auie: Run, args: list[str], message: str) -> None:
    line = assert_usage_error(auie(*args), message)
    assert "Input should be" not in line


def test_a_request_file_still_names_the_json_field(auie: Run, tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"from": "2026-01-01", "to": "2026-02-01"}), encoding="utf-8")
    assert_invalid_request(auie("retention", "--request", str(path)), "startEvent: Field required")


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["funnel", "-s", "Signed Up"], "--step (steps): List should have at least 2 items"),
        (["trends", "-e", "a", "-e", "a"], "--event (events): event names must be unique"),
        (["trends", "-e", "a", "-f", "property:x:near:1"], "--filter (filters.0.op): Input"),
        (
            ["funnel", "-s", "a", "-s", "b", "--step-filter", "2:property:x:near:1"],
            "--step-filter (steps.1.filters.0.op): Input",
        ),
        (["retention", "--start-event", ""], "--start-event (startEvent): String should"),
        (
            ["trends", "-e", "a", "--from", "2026-02-01", "--to", "2026-01-01"],
            "the range (--from, --to, --last): 'to' must be after 'from'",
        ),
    ],
)
def test_invalid_flags_are_named_with_their_field(auie: Run, args: list[str], where: str) -> None:
    assert_invalid_request(auie(*args), where)


@pytest.mark.parametrize("spec", ["1:price>3", '1:["not", "an", "object"]', "1:{not json", "1:{}x"])
def test_bad_step_filter_is_reported_under_step_filter(auie: Run, spec: str) -> None:
    result = auie("funnel", "-s", "a", "-s", "b", "--step-filter", spec)
    line = assert_usage_error(result, "Invalid value for --step-filter")
    assert "--filter:" not in line


def test_step_filter_on_no_step_says_which_steps_exist(auie: Run) -> None:
    result = auie("funnel", "-s", "a", "-s", "b", "--step-filter", "3:property:x:eq:1")
    assert_usage_error(result, "--step-filter", "no step 3 (STEP is 1 to 2)")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["trends", "-e", "a", "--breakdown-limit", "0"], "--breakdown-limit"),
        (["funnel", "-s", "a", "-s", "b", "--breakdown-limit", "101"], "--breakdown-limit"),
        (["funnel", "-s", "a", "-s", "b", "--window", "0"], "--window"),
        (["retention", "--start-event", "a", "--periods", "0"], "--periods"),
        (["retention", "--start-event", "a", "--periods", "101"], "--periods"),
        (["segments", "members", "seg_x", "--limit", "0"], "--limit"),
    ],
)
def test_numbers_are_bounded_as_the_api_bounds_them(
    auie: Run, args: list[str], option: str
) -> None:
    assert_usage_error(auie(*args), f"Invalid value for '{option}'", "is not in the range")
