"""``auie demo``: a simulated population with hidden preferences, against a running server.

Every simulated person has a tier (a trait sent with ``identify``) and uses a device (the
request context). Which offer they click depends on both, with probabilities the service
never sees. The demo configures the decision point ``demo-offer`` as an experiment: 70% of
people get the adaptive policy (LinUCB), 30% are a holdout served the static baseline
offer. It sends their events and rewards through the real HTTP API, so the dashboard's
Decisions page shows the adaptive arm's reward climbing above the baseline's.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

POINT = "demo-offer"
OFFERS = {
    "free-shipping": {"kind": "shipping", "discount": 0, "premium": False},
    "ten-percent": {"kind": "discount", "discount": 10, "premium": False},
    "bundle": {"kind": "bundle", "discount": 15, "premium": False},
    "premium-trial": {"kind": "trial", "discount": 0, "premium": True},
    "newsletter": {"kind": "content", "discount": 0, "premium": False},
}
BASELINE = "newsletter"
TIERS = ("free", "plus", "gold")
DEVICES = ("mobile", "desktop")
#: Hidden click-through logits by (tier, device) and offer; the service never sees them.
_TASTE = {
    ("free", "mobile"): {"free-shipping": 0.9, "ten-percent": 0.2, "bundle": -0.8},
    ("free", "desktop"): {"ten-percent": 0.9, "bundle": 0.3},
    ("plus", "mobile"): {"bundle": 1.0, "free-shipping": 0.2},
    ("plus", "desktop"): {"bundle": 0.6, "premium-trial": 0.4},
    ("gold", "mobile"): {"premium-trial": 1.1, "ten-percent": -0.6},
    ("gold", "desktop"): {"premium-trial": 1.3, "free-shipping": -0.5},
}
_BASE_LOGIT = -1.6


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    anonymous_id: str
    tier: str
    device: str

    def click_probability(self, offer: str) -> float:
        logit = _BASE_LOGIT + _TASTE[(self.tier, self.device)].get(offer, 0.0)
        return 1 / (1 + math.exp(-logit))


def population(size: int, rng: random.Random) -> list[Person]:
    return [
        Person(
            f"demo-{i:05d}",
            uuid.UUID(int=rng.getrandbits(128)).hex,
            rng.choice(TIERS),
            rng.choice(DEVICES),
        )
        for i in range(size)
    ]


def configuration() -> dict[str, Any]:
    return {
        "actions": [{"id": name, "features": features} for name, features in OFFERS.items()],
        "baseline": BASELINE,
        "policy": {"type": "linucb", "alpha": 0.3},
        # Every simulated visitor's reward follows at once: a short wait lets the off-policy
        # comparison use the decisions seconds later (pending ones are left out).
        "reward": {"waitSeconds": 5, "aggregation": "earliest", "default": 0.0},
        "join": {
            "traits": ["tier"],
            "computedTraits": False,
            "segments": False,
            "userFeatures": False,
        },
        "experiment": {
            "arms": [{"name": "adaptive", "policy": {"type": "linucb", "alpha": 0.3}, "share": 1}],
            "holdout": 0.3,
        },
    }


class DemoClient:
    """The demo's HTTP side: token, events, decisions, rewards."""

    def __init__(self, url: str, client_id: str, secret: str, write_key: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.write_key = write_key
        token = self.http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def configure(self) -> None:
        self.http.put(f"/v1/decision-points/{POINT}", json=configuration()).raise_for_status()

    def send(self, batch: list[dict[str, Any]]) -> None:
        # The collector takes the write key (Basic), not the bearer token.
        reply = self.http.post("/v1/batch", json={"batch": batch}, auth=(self.write_key, ""))
        reply.raise_for_status()

    def identify(self, people: list[Person]) -> None:
        for start in range(0, len(people), 500):
            self.send(
                [
                    {
                        "type": "identify",
                        "userId": p.user_id,
                        "anonymousId": p.anonymous_id,
                        "traits": {"tier": p.tier},
                    }
                    for p in people[start : start + 500]
                ]
            )

    def profile_ready(self, person: Person) -> bool:
        reply = self.http.get(f"/v1/profiles/user_id/{person.user_id}")
        return reply.status_code == 200

    def decide(self, person: Person) -> dict[str, Any]:
        body = {
            "decisionPoint": POINT,
            "userId": person.user_id,
            "context": {"device": person.device},
            "actions": [{"id": name, "features": f} for name, f in OFFERS.items()],
        }
        reply = self.http.post("/v1/decide", json=body)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def reward(self, event_id: str, value: float) -> None:
        self.http.post(f"/v1/decisions/{event_id}/reward", json={"value": value}).raise_for_status()

    def report(self) -> dict[str, Any]:
        reply = self.http.get(f"/v1/decision-points/{POINT}/report")
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data


def run(
    client: DemoClient,
    *,
    people: int,
    rounds: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    wait_for_profiles: float = 60.0,
) -> dict[str, Any]:
    """Drive the population through the API; returns the decision point's final report."""
    rng = random.Random(seed)
    crowd = population(people, rng)
    client.configure()
    client.identify(crowd)
    deadline = time.monotonic() + wait_for_profiles
    while not client.profile_ready(crowd[-1]) and time.monotonic() < deadline:
        time.sleep(0.5)
    events: list[dict[str, Any]] = []
    for round_ in range(rounds):
        person = rng.choice(crowd)
        events.append(
            {
                "type": "page",
                "userId": person.user_id,
                "name": "Home",
                "context": {"device": {"type": person.device}},
            }
        )
        decision = client.decide(person)
        offer = decision["actionId"]
        clicked = rng.random() < person.click_probability(offer)
        client.reward(decision["eventId"], 1.0 if clicked else 0.0)
        if clicked:
            events.append(
                {
                    "type": "track",
                    "userId": person.user_id,
                    "event": "Offer Clicked",
                    "properties": {"offer": offer},
                }
            )
        if len(events) >= 200:
            client.send(events)
            events = []
        if progress is not None:
            progress(round_ + 1)
    if events:
        client.send(events)
    return client.report()


def best_possible(people: int, seed: int) -> float:
    """Mean click probability of always showing each person their best offer."""
    crowd = population(people, random.Random(seed))
    return sum(max(p.click_probability(o) for o in OFFERS) for p in crowd) / len(crowd)


def baseline_value(people: int, seed: int) -> float:
    """Mean click probability of always showing the baseline offer."""
    crowd = population(people, random.Random(seed))
    return sum(p.click_probability(BASELINE) for p in crowd) / len(crowd)
