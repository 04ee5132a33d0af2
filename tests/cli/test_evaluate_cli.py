"""``auie decisions evaluate`` on the decision log of a real in-process app."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auie.cli.main import cli
from conftest import App
from decide_sim import ACTIONS, SHORT_WAIT, drive, settle
from helpers import bearer, get_token

#: No AUIE_* variable of the caller and no ./auie.toml reach the commands.
pytestmark = pytest.mark.usefixtures("clean_environment")

POINT = "checkout-offer"


def run(data_dir: Path, *args: str, status: int = 0) -> Result:
    result = CliRunner().invoke(
        cli, ["decisions", "evaluate", *args, "--data-dir", str(data_dir)], env={"COLUMNS": "160"}
    )
    assert result.exit_code == status, (result.output, result.exception)
    return result


def test_evaluate_prints_a_table_a_chart_and_json(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app("logged")
    admin = bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret, "admin"))
    reply = app.client.put(
        f"/v1/decision-points/{POINT}",
        json={
            "actions": ACTIONS,
            "policy": {"type": "epsilon_greedy", "epsilon": 0.5},
            "reward": SHORT_WAIT,
        },
        headers=admin,
    )
    assert reply.status_code == 200, reply.text
    drive(app.client, app.boot, POINT, 250, seed=11)
    settle()
    data_dir = tmp_path / "logged"
    candidate = '{"name": "always-b", "policy": {"type": "baseline", "action": "b"}}'

    text = run(data_dir, POINT, "-c", candidate, "-c", "current", "--bootstrap-rounds", "200")
    output = text.output
    summary = f"{POINT}: 250 logged decisions evaluated (0 skipped, 0 still in their reward wait)"
    assert summary in output
    for expected in ("IPS", "SNIPS", "DM", "DR", "ESS", "logging", "current", "always-b"):
        assert expected in output
    assert "DR with 95% interval" in output
    assert "├" in output
    assert "┤" in output
    assert "█" in output
    assert "Context features" in output
    assert "device" in output

    as_json = json.loads(run(data_dir, POINT, "-c", candidate, "--json", "--seed", "3").output)
    assert [p["name"] for p in as_json["policies"]] == ["logging", "current", "always-b"]
    assert as_json["rounds"] == 250
    assert {c["name"] for c in as_json["comparisons"]} == {"logging", "always-b"}
    assert as_json["comparisons"][0]["verdict"] in ("better", "worse", "inconclusive")
    # `auie evaluate` is the same command.
    short = CliRunner().invoke(
        cli,
        ["evaluate", POINT, "-c", candidate, "--json", "--seed", "3", "--data-dir", str(data_dir)],
    )
    assert short.exit_code == 0, short.output
    assert json.loads(short.output) == as_json

    frozen = json.loads(run(data_dir, POINT, "--frozen", "--top", "0", "--json").output)
    assert frozen["learn"] is False
    assert frozen["featureImportance"] == []

    missing = run(data_dir, "no-such-point", status=2)
    assert "not_found" in missing.output
    bad = run(data_dir, POINT, "-c", "{not json", status=2)
    assert "invalid_candidate" in bad.output
    unknown = run(data_dir, POINT, "-c", '{"type": "nope"}', status=2)
    assert "invalid_policy" in unknown.output


@pytest.mark.parametrize("command", [["decisions", "evaluate"], ["train"]])
def test_a_negative_seed_is_refused_naming_the_option(tmp_path: Path, command: list[str]) -> None:
    """It used to reach the policies' generator and come back as
    ``invalid_policy: expected non-negative integer``, naming no option."""
    result = CliRunner().invoke(
        cli, [*command, POINT, "--seed", "-1", "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--seed'" in result.stderr
    assert "Traceback" not in result.output
