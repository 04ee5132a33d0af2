"""``auie train`` on decision logs made by the real decision service (in-process app), with
the app still serving while the command trains, promotes and the app picks the promotion up.

Simulations (``decide_sim``: three offers whose click rates depend on device and plan; an
XOR world where only the combination of two context features pays) are logged by a
uniformly random policy (ε-greedy with ε = 1), so the best contextual policy is known to
beat it by a wide margin and off-policy estimates are well conditioned.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from auie.cli.main import cli
from auie.decide.context import PersonContext
from auie.decide.features import Featurizer
from auie.decide.policies import load_policy
from auie.decide.service import DecideRequest, DecisionService
from conftest import App
from decide_sim import ACTIONS, SHORT_WAIT, drive, settle
from helpers import bearer, get_token

#: No AUIE_* variable of the caller and no ./auie.toml reach the commands.
pytestmark = pytest.mark.usefixtures("clean_environment")

POINT = "checkout-offer"
RANDOM = {"type": "epsilon_greedy", "epsilon": 1.0}
XOR_ACTIONS = [{"id": "x"}, {"id": "y"}]


def run(data_dir: Path, *args: str, status: int = 0) -> Result:
    result = CliRunner().invoke(
        cli, ["train", *args, "--data-dir", str(data_dir)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == status, (result.output, result.exception)
    return result


def _headers(app: App, scope: str) -> dict[str, str]:
    return bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret, scope))


def _configure(app: App, actions: list[dict[str, Any]]) -> None:
    config = {
        "actions": actions,
        "policy": RANDOM,
        "snapshotEvery": 100,
        "snapshotMinSeconds": 0,
        "reward": SHORT_WAIT,
    }
    reply = app.client.put(
        f"/v1/decision-points/{POINT}", json=config, headers=_headers(app, "admin")
    )
    assert reply.status_code == 200, reply.text


def _decide(app: App, headers: dict[str, str], context: dict[str, Any], actions: Any) -> Any:
    reply = app.client.post(
        "/v1/decide",
        json={"decisionPoint": POINT, "userId": "u-probe", "context": context, "actions": actions},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _served_version(app: App, headers: dict[str, str], actions: Any, version: int) -> str:
    """The served policyVersion once it is ``version`` (the server reloads within ~1 s)."""
    deadline = time.monotonic() + 15
    while True:
        served = _decide(app, headers, {"device": "mobile", "plan": "free"}, actions)
        if served["policyVersion"].split(".")[0] == str(version) or time.monotonic() > deadline:
            return str(served["policyVersion"])
        time.sleep(0.1)


def _versions(app: App, headers: dict[str, str]) -> list[dict[str, Any]]:
    reply = app.client.get(f"/v1/decision-points/{POINT}/versions", headers=headers)
    assert reply.status_code == 200, reply.text
    return list(reply.json())


def test_a_contextual_policy_is_promoted_and_served(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app("logged")
    _configure(app, ACTIONS)
    decide = drive(app.client, app.boot, POINT, 1200, seed=5)
    settle()
    before = _decide(app, decide, {"device": "mobile", "plan": "free"}, ACTIONS)["policyVersion"]
    previous = int(before.split(".")[0])

    result = json.loads(
        run(
            tmp_path / "logged",
            POINT,
            "--policy",
            '{"type": "linucb", "alpha": 0.3}',
            "--holdout",
            "0.4",
            "--bootstrap-rounds",
            "300",
            "--json",
        ).output
    )
    assert result["decisions"] >= 1200
    assert result["holdoutDecisions"] == pytest.approx(0.4 * result["decisions"], abs=2)
    (linucb,) = result["candidates"]
    assert linucb["beatsCurrent"], linucb
    assert linucb["dr"]["lower"] > result["policies"][1]["estimates"]["dr"]["value"]
    assert result["winner"] == "linucb"
    assert result["promoted"]
    version = result["version"]
    assert version > previous
    assert result["previousVersion"] == previous
    (promoted,) = app.runtime.audit.entries(app.boot.workspace, action="decision_point.promoted")
    assert (promoted.target, promoted.actor) == (POINT, "cli")

    # The running app loads the promoted version and serves it (the part after the dot
    # counts what it learned since: on a loaded machine, rewards of the decisions above may
    # still be closing).
    assert _served_version(app, decide, ACTIONS, version).split(".")[0] == str(version)
    listed = _versions(app, decide)
    assert listed[-1]["version"] == version
    assert (listed[-1]["kind"], listed[-1]["source"]) == ("linucb", "offline")
    assert "auie train: linucb" in listed[-1]["note"]
    point = app.client.get(f"/v1/decision-points/{POINT}", headers=decide).json()
    assert point["activeVersion"] == version
    assert point["config"]["policy"] == {"type": "linucb", "alpha": 0.3}
    # It is the trained policy: it shows b to mobile users (b's click rate there is 0.6).
    mobile = _decide(app, decide, {"device": "mobile", "plan": "free"}, ACTIONS)
    assert mobile["ranking"][0]["id"] == "b"

    # The registry as the CLI shows it, and its rollback: the running app switches back.
    data_dir = str(tmp_path / "logged")
    shown = CliRunner().invoke(
        cli, ["decisions", "versions", POINT, "--json", "--data-dir", data_dir]
    )
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert [r["version"] for r in rows if r["active"]] == [version]
    assert {previous, version} <= {r["version"] for r in rows}
    back = CliRunner().invoke(
        cli, ["decisions", "rollback", POINT, str(previous), "--data-dir", data_dir]
    )
    assert back.exit_code == 0, back.output
    assert f"version {previous} is served (was {version})" in back.output
    assert _served_version(app, decide, ACTIONS, previous) == f"{previous}.0"
    (entry,) = app.runtime.audit.entries(app.boot.workspace, action="decision_point.rolled_back")
    assert entry.target == POINT
    # The configuration names the policy served again, not the promoted one.
    point = app.client.get(f"/v1/decision-points/{POINT}", headers=decide).json()
    assert point["config"]["policy"] == RANDOM
    # And the API's rollback brings the promotion back.
    admin = _headers(app, "admin")
    again = app.client.post(
        f"/v1/decision-points/{POINT}/rollback", json={"version": version}, headers=admin
    )
    assert again.status_code == 200, again.text
    assert _served_version(app, decide, ACTIONS, version).split(".")[0] == str(version)
    point = app.client.get(f"/v1/decision-points/{POINT}", headers=decide).json()
    assert point["config"]["policy"] == {"type": "linucb", "alpha": 0.3}
    missing = CliRunner().invoke(
        cli, ["decisions", "rollback", POINT, "999", "--data-dir", data_dir]
    )
    assert missing.exit_code != 0
    assert "no version 999" in missing.output


def test_a_candidate_that_is_not_better_is_not_promoted(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app("logged")
    _configure(app, ACTIONS)
    decide = drive(app.client, app.boot, POINT, 1000, seed=8)
    settle()
    versions = _versions(app, decide)
    output = run(
        tmp_path / "logged",
        POINT,
        "-c",
        '{"name": "always-a", "policy": {"type": "baseline", "action": "a"}}',
        "-c",
        '{"name": "random", "policy": {"type": "epsilon_greedy", "epsilon": 1.0, "seed": 9}}',
        "--bootstrap-rounds",
        "300",
    ).output
    assert "Not promoted: no candidate beats the current policy with confidence" in output
    for expected in ("DR", "SNIPS", "ESS", "DR − current", "always-a", "random", "logging"):
        assert expected in output
    # The comparison is drawn too: each policy's DR value as a bar with its interval.
    assert re.search(r"DR with \d+% interval", output), output
    bars = [line for line in output.splitlines() if "█" in line or "├" in line]
    assert {"always-a", "random", "current", "logging"} <= {line.split()[0] for line in bars}
    assert _versions(app, decide) == versions
    result = json.loads(
        run(
            tmp_path / "logged", POINT, "-c", '{"type": "baseline", "action": "a"}', "--json"
        ).output
    )
    (always_a,) = result["candidates"]
    # Always showing a (click rate 0.2) is worse than random (about 0.27): the true
    # difference is -0.07, estimated from 1,000 logged decisions with a standard error of
    # about 0.02. The logged sample can depend on timing (a click whose reward reaches the
    # server after the decision's 1-second reward wait, when the test stalls under load,
    # is not the decision's), so the test asks for the sign, 3.5 standard errors away, not
    # for a margin (-0.02 failed once under load, at -0.013).
    assert always_a["difference"]["value"] < 0, always_a
    assert always_a["dr"]["lower"] < result["policies"][1]["estimates"]["dr"]["value"]
    assert not always_a["beatsCurrent"]
    assert (result["winner"], result["promoted"], result["version"]) == (None, False, None)
    assert _versions(app, decide) == versions


def _xor_reward(rng: np.random.Generator, context: dict[str, bool], action: str) -> float:
    pays = (context["f1"] != context["f2"]) == (action == "x")
    return float(rng.random() < (0.85 if pays else 0.15))


def test_the_neural_policy_learns_an_xor_that_a_linear_model_cannot(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    """x pays when exactly one of f1, f2 is set, y otherwise: every single feature leaves
    both at 0.5, so a model additive in the features is no better than random."""
    pytest.importorskip("torch")
    app = make_app("logged")
    _configure(app, XOR_ACTIONS)
    decide = _headers(app, "decide")
    rng = np.random.default_rng(3)
    for i in range(900):
        context = {"f1": bool(rng.random() < 0.5), "f2": bool(rng.random() < 0.5)}
        body = _decide(app, decide, context, XOR_ACTIONS)
        reward = _xor_reward(rng, context, body["actionId"])
        reply = app.client.post(
            f"/v1/decisions/{body['eventId']}/reward", json={"value": reward}, headers=decide
        )
        assert reply.status_code == 200, (i, reply.text)

    text = run(
        tmp_path / "logged",
        POINT,
        "-c",
        '{"type": "linucb", "alpha": 0.3}',
        "--neural",
        "--bootstrap-rounds",
        "300",
        "--dry-run",
    ).output
    assert "Dry run: neural beats the current policy and would be promoted." in text
    result = json.loads(
        run(
            tmp_path / "logged",
            POINT,
            "-c",
            '{"type": "linucb", "alpha": 0.3}',
            "--neural",
            "--bootstrap-rounds",
            "300",
            "--json",
        ).output
    )
    judged = {c["name"]: c for c in result["candidates"]}
    neural, linear = judged["neural"], judged["linucb"]
    assert neural["beatsCurrent"]
    assert not linear["beatsCurrent"]
    assert neural["dr"]["lower"] > linear["dr"]["upper"], (neural["dr"], linear["dr"])
    assert neural["dr"]["value"] > 0.7
    assert result["promoted"]
    assert result["winner"] == "neural"

    # Served from the registry (saved, restored in the app): it picks x exactly for XOR.
    version = result["version"]
    assert _served_version(app, decide, XOR_ACTIONS, version) == f"{version}.0"
    for f1 in (False, True):
        for f2 in (False, True):
            body = _decide(app, decide, {"f1": f1, "f2": f2}, XOR_ACTIONS)
            assert body["ranking"][0]["id"] == ("x" if f1 != f2 else "y"), (f1, f2, body)


def test_the_promoted_state_round_trips_through_the_registry(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    app = make_app("logged")
    _configure(app, ACTIONS)
    drive(app.client, app.boot, POINT, 400, seed=2)
    settle()
    store = app.runtime.decision_store
    workspace = app.boot.workspace
    # Promotion needs a candidate that passes; judge a neural one (which beats random
    # here) and save what the trainer fitted, then restore it as the server would.
    result = json.loads(
        run(tmp_path / "logged", POINT, "--neural", "--bootstrap-rounds", "200", "--json").output
    )
    assert result["promoted"], result["candidates"]
    saved = store.load(workspace, POINT, arm="", version=result["version"])
    assert saved is not None
    _, blob, state = saved
    policy = load_policy(blob)
    assert policy.kind == "neural"
    assert load_policy(policy.save()).save() == policy.save()
    featurizer = Featurizer.from_state(state)
    decision = featurizer(
        {"device": "mobile", "plan": "pro"}, [(a["id"], a["features"]) for a in ACTIONS]
    )
    again = load_policy(blob)
    assert np.array_equal(policy.scores(decision), again.scores(decision))
    assert policy.choose(decision).index == again.choose(decision).index


def test_a_snapshot_never_undoes_a_promotion(make_app: Callable[..., App]) -> None:
    """A server whose state predates a promotion does not overwrite it when it snapshots:
    its save is refused and the point reloads from the promoted version (``refresh``
    notices it too)."""
    app = make_app("logged")
    _configure(app, [{"id": "a"}, {"id": "b"}])
    store, workspace = app.runtime.decision_store, app.boot.workspace

    async def append(_records: Any) -> None:
        return None

    service = DecisionService(store, PersonContext(app.runtime.profiles), append)
    request = DecideRequest(POINT, [{"id": "a"}, {"id": "b"}], user_id="u-1")
    asyncio.run(service.decide(workspace, request))
    first = service.snapshot(workspace, POINT)
    assert first is not None
    point = service.point(workspace, POINT)
    promoted = store.save(  # what auie train does in its own process
        workspace,
        POINT,
        arm="",
        blob=point.policies[""].save(),
        featurizer=point.featurizer.state(),
        kind="epsilon_greedy",
        updates=0,
        source="offline",
    )
    assert service.snapshot(workspace, POINT) is None  # refused: reloads instead
    assert store.get(workspace, POINT).active_version == promoted  # type: ignore[union-attr]
    assert service.point(workspace, POINT).active == promoted
    store.activate(workspace, POINT, first)  # a rollback elsewhere
    assert service.refresh() == 1
    assert service.point(workspace, POINT).version == first
    assert service.refresh() == 0


def test_neural_without_torch_names_the_extra(
    make_app: Callable[..., App], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app("logged")
    _configure(app, ACTIONS)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "auie.decide.policies.neural", raising=False)
    output = run(tmp_path / "logged", POINT, "--neural", status=2).output
    assert "pip install 'auie[train]'" in output
    few = run(tmp_path / "logged", POINT, status=2).output
    assert "not_enough_decisions" in few


def test_decisions_still_in_their_reward_wait_are_not_trained_on(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    """With the default 10-minute wait, no decision has a final reward right after the
    traffic: training refuses and says why, instead of learning clicks still to come as
    misses."""
    app = make_app("logged")
    reply = app.client.put(
        f"/v1/decision-points/{POINT}",
        json={"actions": ACTIONS, "policy": RANDOM},
        headers=_headers(app, "admin"),
    )
    assert reply.status_code == 200, reply.text
    drive(app.client, app.boot, POINT, 150, seed=4)
    output = run(tmp_path / "logged", POINT, "--dry-run", status=2).output
    assert "not_enough_decisions" in output
    assert "still in their reward wait" in output


def test_serving_never_imports_torch() -> None:
    code = (
        "import sys, auie.cli.main, auie.api.app, auie.decide.training\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
