"""POST /v1/decisions/evaluate on a decision log made by the real in-process app: a
simulated population served by an exploring policy, then evaluated offline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import App
from decide_sim import ACTIONS, SHORT_WAIT, click_probability, drive, settle
from helpers import bearer, get_token

POINT = "home-hero"
DECISIONS = 600


def _value(action: str) -> float:
    """The true click rate of always showing ``action`` (devices 50/50, 30% pro)."""
    return sum(
        pd * pp * click_probability(device, plan, action)
        for device, pd in (("mobile", 0.5), ("desktop", 0.5))
        for plan, pp in (("free", 0.7), ("pro", 0.3))
    )


def _admin(app: App) -> dict[str, str]:
    return bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret, "admin"))


def _configure(app: App, policy: dict[str, Any]) -> None:
    reply = app.client.put(
        f"/v1/decision-points/{POINT}",
        json={"actions": ACTIONS, "policy": policy, "baseline": "a", "reward": SHORT_WAIT},
        headers=_admin(app),
    )
    assert reply.status_code == 200, reply.text


@pytest.fixture
def logged(make_app: Callable[..., App]) -> tuple[App, dict[str, str]]:
    """An app whose decision log holds DECISIONS decisions served by epsilon-greedy
    (ε = 0.6) and whose decision point is then reconfigured to always show ``a``."""
    app = make_app()
    _configure(app, {"type": "epsilon_greedy", "epsilon": 0.6})
    headers = drive(app.client, app.boot, POINT, DECISIONS, seed=3)
    settle()
    _configure(app, {"type": "baseline", "action": "a"})
    return app, headers


def test_evaluates_candidates_against_the_current_policy(
    logged: tuple[App, dict[str, str]],
) -> None:
    """One log (the slow part: every decision is a durable append) serves every check."""
    app, headers = logged
    body = {
        "decisionPoint": POINT,
        "candidates": [
            {"name": "always-b", "policy": {"type": "baseline", "action": "b"}},
            {"name": "always-c", "policy": {"type": "baseline", "action": "c"}},
            {"type": "epsilon_greedy", "epsilon": 0.1},
            "current",
        ],
        "bootstrapRounds": 500,
        "seed": 7,
    }
    reply = app.client.post("/v1/decisions/evaluate", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["decisionPoint"] == POINT
    assert result["rounds"] == result["decisions"] == DECISIONS
    assert result["skipped"] == 0
    policies = {p["name"]: p for p in result["policies"]}
    assert list(policies) == ["logging", "current", "always-b", "always-c", "epsilon_greedy"]
    assert policies["current"]["policy"] == {"type": "baseline", "action": "a"}
    assert policies["epsilon_greedy"]["policy"] == {"type": "epsilon_greedy", "epsilon": 0.1}
    for policy in policies.values():
        for estimate in policy["estimates"].values():
            assert estimate["lower"] <= estimate["value"] <= estimate["upper"]

    # The logging policy evaluated on its own log: every weight is 1.
    logging = policies["logging"]
    assert logging["ess"] == pytest.approx(DECISIONS)
    for name in ("ips", "snips"):
        assert logging["estimates"][name]["value"] == pytest.approx(result["meanReward"])

    # Fixed policies have known values; the estimates find them.
    for name, action in (("current", "a"), ("always-b", "b"), ("always-c", "c")):
        for estimator in ("ips", "snips", "dr"):
            estimate = policies[name]["estimates"][estimator]["value"]
            assert estimate == pytest.approx(_value(action), abs=0.12), (name, estimator)
        assert 0 < policies[name]["ess"] < DECISIONS

    comparisons = {c["name"]: c for c in result["comparisons"]}
    assert set(comparisons) == {"logging", "always-b", "always-c", "epsilon_greedy"}
    better = comparisons["always-b"]
    assert better["baseline"] == "current"
    assert better["estimator"] == "dr"
    assert better["differences"]["dr"]["lower"] > 0
    assert better["verdict"] == "better"
    assert better["better"] is True

    features = [f["feature"] for f in result["featureImportance"]]
    assert set(features[:2]) == {"device", "plan"}

    again = app.client.post("/v1/decisions/evaluate", json=body, headers=headers)
    assert again.json() == result

    # Frozen policies, clipped weights, no bootstrap, no importance report.
    reply = app.client.post(
        "/v1/decisions/evaluate",
        json={
            "decisionPoint": POINT,
            "candidates": [{"type": "linucb", "alpha": 0.5}],
            "learn": False,
            "clip": 2.0,
            "bootstrapRounds": 0,
            "importanceTop": 0,
        },
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["learn"] is False
    assert result["featureImportance"] == []
    for policy in result["policies"]:
        assert policy["maxWeight"] <= 2.0
        assert policy["estimates"]["dr"]["lower"] is None


def test_evaluate_errors(make_app: Callable[..., App]) -> None:
    app = make_app()
    client = app.client
    decide = bearer(get_token(client, app.boot.client_id, app.boot.client_secret, "decide"))
    admin_only = _admin(app)
    url = "/v1/decisions/evaluate"
    body: dict[str, Any] = {"decisionPoint": POINT}

    assert client.post(url, json=body).status_code == 401
    reply = client.post(url, json=body, headers=admin_only)
    assert reply.status_code == 403
    assert reply.json()["code"] == "insufficient_scope"

    reply = client.post(url, json=body, headers=decide)
    assert reply.status_code == 404
    assert reply.json()["code"] == "not_found"

    _configure(app, {"type": "epsilon_greedy", "epsilon": 0.5})
    for candidate, code in [
        ({"type": "no-such-policy"}, "invalid_policy"),
        ({"type": "linucb", "alpha": -1}, "invalid_policy"),
        ({"type": "linucb", "gamma": 1}, "invalid_policy"),
        ({"name": "logging", "policy": {"type": "linucb"}}, "invalid_candidate"),
        ({"name": "x", "policy": {"type": "linucb"}, "extra": 1}, "invalid_candidate"),
        ("bogus", "invalid_candidate"),
    ]:
        reply = client.post(url, json={**body, "candidates": [candidate]}, headers=decide)
        assert reply.status_code == 400, (candidate, reply.text)
        assert reply.json()["code"] == code, candidate
    twins = [
        {"name": "a", "policy": {"type": "linucb"}},
        {"name": "a", "policy": {"type": "thompson"}},
    ]
    reply = client.post(url, json={**body, "candidates": twins}, headers=decide)
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"] == "two candidates are named 'a': each needs its own name"
    reserved = [{"name": "current", "policy": {"type": "linucb"}}]
    reply = client.post(url, json={**body, "candidates": reserved}, headers=decide)
    assert "'current' is reserved" in reply.json()["message"]
    for bad in ({"bootstrapRounds": -1}, {"confidence": 1.5}, {"folds": 0}, {"clip": 0}):
        reply = client.post(url, json={**body, **bad}, headers=decide)
        assert reply.status_code == 400, bad
    assert client.post(url, json={"decisionPoint": "bad name!"}, headers=decide).status_code == 400

    reply = client.post(url, json=body, headers=decide)
    assert reply.status_code == 400
    assert reply.json()["code"] == "no_logged_decisions"


def test_decisions_still_in_their_reward_wait_are_left_out(
    make_app: Callable[..., App],
) -> None:
    """Right after the traffic every decision could still be clicked within the point's
    10-minute wait: none is evaluated (counting the unclicked as misses, or only the
    clicked, would bias every estimate). Once the wait is over (here: shortened to 1 s),
    every decision counts."""
    app = make_app()
    reply = app.client.put(
        f"/v1/decision-points/{POINT}",
        json={"actions": ACTIONS, "policy": {"type": "epsilon_greedy", "epsilon": 0.6}},
        headers=_admin(app),
    )
    assert reply.status_code == 200, reply.text
    headers = drive(app.client, app.boot, POINT, 120, seed=5)
    body = {"decisionPoint": POINT, "bootstrapRounds": 50, "importanceTop": 0, "seed": 1}

    reply = app.client.post("/v1/decisions/evaluate", json=body, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == "no_logged_decisions"
    assert "(120 are still in their reward wait)" in reply.json()["message"]

    _configure(app, {"type": "epsilon_greedy", "epsilon": 0.6})  # with SHORT_WAIT
    settle()
    reply = app.client.post("/v1/decisions/evaluate", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    late = reply.json()
    assert late["pending"] == 0
    assert late["rounds"] == 120
    assert 0 < late["meanReward"] < 1  # clicks and misses


def test_evaluation_reports_its_steps_for_a_progress_bar(
    logged: tuple[App, dict[str, str]],
) -> None:
    """``auie decisions evaluate`` shows a bar over these steps (it showed nothing through
    a thousand bootstrap resamples)."""
    from auie.decide.evaluation import EvaluationOptions, evaluate_decision_point, parse_candidates

    app, _headers = logged
    heard: list[tuple[str, int, int]] = []
    runtime = app.runtime
    result = evaluate_decision_point(
        runtime.decision_store,
        runtime.eventlog,
        app.boot.workspace,
        POINT,
        parse_candidates([{"type": "linucb"}]),
        options=EvaluationOptions(bootstrap_rounds=50),
        lake=runtime.lake,
        progress=lambda step, done, total: heard.append((step, done, total)),
    )
    steps = [step for step, _, _ in heard]
    assert steps[0] == "reading the logged decisions"
    assert {"replaying current", "replaying linucb"} <= set(steps)
    assert "estimating (50 resamples)" in steps
    assert heard[-1] == ("done", heard[-1][2], heard[-1][2])
    dones = [done for _, done, _ in heard]
    assert dones == sorted(dones)  # it only moves forward
    assert len({total for _, _, total in heard}) == 1
    assert result["decisions"] >= DECISIONS
