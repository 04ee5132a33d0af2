"""A simulated population for decision-service tests: people with a device and a plan,
three offers, and click probabilities that depend on both (offer ``b`` is best on mobile,
``c`` for pro users)."""

from __future__ import annotations

import time

import numpy as np

from auie.decide.evaluation import SETTLE_MARGIN_MS
from auie.runtime import Bootstrap
from helpers import bearer, get_token

ACTIONS = [
    {"id": "a", "features": {"kind": "banner"}},
    {"id": "b", "features": {"kind": "video"}},
    {"id": "c", "features": {"kind": "discount", "percent": 0.2}},
]
#: The reward configuration of points whose log a test evaluates or trains on: a short
#: reward wait, so that :func:`settle` can let every decision's reward become final
#: (decisions still in their wait are left out as pending).
SHORT_WAIT = {"waitSeconds": 1}
DEVICES = ("mobile", "desktop")
PLANS = ("free", "pro")


def click_probability(device: str, plan: str, action: str) -> float:
    base = {"a": 0.2, "b": 0.1, "c": 0.15}[action]
    if device == "mobile" and action == "b":
        base += 0.5
    if plan == "pro" and action == "c":
        base += 0.4
    return base


def drive(
    client: object, boot: Bootstrap, point: str, decisions: int, *, seed: int = 0
) -> dict[str, str]:
    """POST /v1/decide for ``decisions`` simulated people and /reward for every click;
    returns the decide token's headers."""
    headers = bearer(get_token(client, boot.client_id, boot.client_secret, scope="decide"))
    rng = np.random.default_rng(seed)
    for i in range(decisions):
        device = DEVICES[int(rng.integers(2))]
        plan = PLANS[int(rng.random() < 0.3)]
        reply = client.post(  # type: ignore[attr-defined]
            "/v1/decide",
            json={
                "decisionPoint": point,
                "userId": f"u-{seed}-{i}",
                "context": {"device": device, "plan": plan},
                "actions": ACTIONS,
            },
            headers=headers,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        if rng.random() < click_probability(device, plan, body["actionId"]):
            rewarded = client.post(  # type: ignore[attr-defined]
                f"/v1/decisions/{body['eventId']}/reward", json={"value": 1.0}, headers=headers
            )
            assert rewarded.status_code == 200, rewarded.text
    return headers


def settle() -> None:
    """Wait until the decisions made so far are past a :data:`SHORT_WAIT` reward wait."""
    time.sleep(SHORT_WAIT["waitSeconds"] + SETTLE_MARGIN_MS / 1000 + 0.1)
