"""The decision API with every policy type, through the real in-process app: decisions and
rewards, registry snapshots, and a restart that resumes from the saved version — for the
native policies, for the Vowpal Wabbit backend (whose state is VW's model file inside the
same ``.npz``) and for the neural policy (torch state dicts inside it), with feature-less
actions and with action features."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import App
from helpers import bearer, get_token

POINT = "checkout-offer"
PLAIN = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
FEATURED = [
    {"id": "a", "features": {"kind": "banner"}},
    {"id": "b", "features": {"kind": "video", "price": 9}},
    {"id": "c", "features": {"kind": "discount", "percent": 0.2}},
]
POLICIES = [
    {"type": "linucb", "alpha": 0.3},
    {"type": "thompson"},
    {"type": "squarecb"},
    {"type": "epsilon_greedy"},
    {"type": "vw", "args": "--cb_explore_adf --squarecb -q sa"},
    {"type": "neural", "hidden": 16},
]


def _headers(app: App, scope: str) -> dict[str, str]:
    return bearer(get_token(app.client, app.boot.client_id, app.boot.client_secret, scope))


def _drive(app: App, decide: dict[str, str], actions: list[dict[str, Any]], n: int) -> list[str]:
    """``n`` decisions; action ``b`` pays on mobile, ``c`` on desktop."""
    rng = np.random.default_rng(1)
    versions = []
    for i in range(n):
        device = "mobile" if rng.random() < 0.5 else "desktop"
        reply = app.client.post(
            "/v1/decide",
            json={
                "decisionPoint": POINT,
                "userId": f"u-{i}",
                "context": {"device": device, "visits": float(i % 7)},
                "actions": actions,
                "excludedActions": ["a"] if i % 5 == 0 else [],
            },
            headers=decide,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert sum(r["probability"] for r in body["ranking"]) == pytest.approx(1.0)
        if i % 5 == 0:
            assert body["actionId"] != "a"
        versions.append(body["policyVersion"])
        good = {"mobile": "b", "desktop": "c"}[device]
        reward = 1.0 if body["actionId"] == good else 0.0
        rewarded = app.client.post(
            f"/v1/decisions/{body['eventId']}/reward", json={"value": reward}, headers=decide
        )
        assert rewarded.status_code == 200, rewarded.text
    return versions


@pytest.mark.parametrize("actions", [PLAIN, FEATURED], ids=["feature-less", "featured"])
@pytest.mark.parametrize("policy", POLICIES, ids=[str(p["type"]) for p in POLICIES])
def test_serve_learn_snapshot_and_resume(
    make_app: Callable[..., App], policy: dict[str, Any], actions: list[dict[str, Any]]
) -> None:
    if policy["type"] == "vw":
        pytest.importorskip("vowpalwabbit")
    if policy["type"] == "neural":
        pytest.importorskip("torch")
    app = make_app("server")
    admin, decide = _headers(app, "admin"), _headers(app, "decide")
    config = {"actions": actions, "policy": policy, "snapshotEvery": 25, "snapshotMinSeconds": 0}
    reply = app.client.put(f"/v1/decision-points/{POINT}", json=config, headers=admin)
    assert reply.status_code == 200, reply.text
    versions = _drive(app, decide, actions, 60)
    assert versions[-1].split(".")[0] == "2"  # snapshots after 25 and 50 updates
    listed = app.client.get(f"/v1/decision-points/{POINT}/versions", headers=decide).json()
    assert [v["kind"] for v in listed] == [policy["type"]] * 2
    assert listed[-1]["updates"] == 50

    again = make_app("server")  # a restart on the same data dir resumes from version 2
    decide = _headers(again, "decide")
    body = again.client.post(
        "/v1/decide",
        json={"decisionPoint": POINT, "userId": "u-x", "context": {}, "actions": actions},
        headers=decide,
    ).json()
    assert body["policyVersion"] == "2.0"


def test_vw_arguments_are_checked_when_configuring(make_app: Callable[..., App]) -> None:
    pytest.importorskip("vowpalwabbit")
    app = make_app()
    reply = app.client.put(
        f"/v1/decision-points/{POINT}",
        json={"actions": PLAIN, "policy": {"type": "vw", "args": "--cb_explore_adf -d x"}},
        headers=_headers(app, "admin"),
    )
    assert reply.status_code == 400
    assert reply.json()["code"] == "invalid_policy"


@pytest.mark.parametrize(
    ("config", "code", "message"),
    [
        (
            {"policy": {"type": "linucb", "alpha": "1"}},
            "invalid_policy",
            'policy linucb: alpha must be a number, not "1"',
        ),
        (
            {"policy": {"type": "epsilon_greedy", "epsilon": True}},
            "invalid_policy",
            "policy epsilon_greedy: epsilon must be a number, not true",
        ),
        (
            {"policy": {"type": "thompson", "samples": 64.5}},
            "invalid_policy",
            "policy thompson: samples must be an integer, not 64.5",
        ),
        pytest.param(
            {"policy": {"type": "vw", "args": 5}},  # crashed deep in VW's argument parser
            "invalid_policy",
            "policy vw: args must be a string, not 5",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("vowpalwabbit") is None, reason="the vw extra"
            ),
        ),
        (
            {"policy": {"type": "linucb", "gamma": 1}},
            "invalid_policy",
            "policy linucb: unknown parameter(s) gamma;"
            " linucb takes alpha, exploration_floor, l2, seed",
        ),
        (
            {
                "experiment": {
                    "arms": [
                        {"name": "control", "policy": {"type": "linucb"}, "share": 1},
                        {"name": "bold", "policy": {"type": "linucb", "alpha": [1]}, "share": 1},
                    ]
                }
            },
            "invalid_policy",
            "experiment.arms.1 (bold): policy linucb: alpha must be a number, not [1]",
        ),
        (
            {"reward": {"waitSeconds": -1, "default": "x"}, "mode": "fast", "colour": "red"},
            "invalid_config",
            "reward.waitSeconds: Input should be greater than or equal to 0;"
            " reward.default: Input should be a valid number, unable to parse string as a"
            " number; mode: Input should be 'online', 'apprentice' or 'frozen';"
            " colour: unknown field",
        ),
        (
            {"actions": [{"id": "a"}, {"id": "a"}]},
            "invalid_config",
            "config: action ids must be unique",
        ),
    ],
)
def test_a_configuration_error_names_the_field_in_plain_words(
    make_app: Callable[..., App], config: dict[str, Any], code: str, message: str
) -> None:
    app = make_app()
    admin = _headers(app, "admin decide")
    body = {"actions": PLAIN, **config}
    reply = app.client.put(f"/v1/decision-points/{POINT}", json=body, headers=admin)
    assert reply.status_code == 400, reply.text
    assert reply.json() == {"code": code, "message": message}
    assert app.client.get(f"/v1/decision-points/{POINT}", headers=admin).status_code == 404


def test_a_reward_is_a_json_number(make_app: Callable[..., App]) -> None:
    app = make_app()
    decide = _headers(app, "decide")
    body = {"decisionPoint": POINT, "userId": "u-1", "actions": PLAIN}
    event_id = app.client.post("/v1/decide", json=body, headers=decide).json()["eventId"]
    for value in ("1", True, None, [1]):
        reply = app.client.post(
            f"/v1/decisions/{event_id}/reward", json={"value": value}, headers=decide
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["code"] == "invalid_request"
        assert reply.json()["message"].startswith("value: "), reply.json()
    reply = app.client.post(f"/v1/decisions/{event_id}/reward", json={"value": 1}, headers=decide)
    assert reply.json()["status"] == "recorded"
