"""A realistic small shop, sent through the real collector API, and what it must show.

Over the last two weeks, customers browse anonymously on one or two devices, sign up
(identify with email and plan, which links the device to their user id), view, add and buy
products and come back on later days; some visitors never sign up. Every timestamp is in
the past, so the whole set is inside the dashboard's default 30-day range.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from helpers import basic

PAGES = [("Home", "/"), ("Pricing", "/pricing"), ("Catalog", "/catalog"), ("Help", "/help")]
PRODUCTS = ["sneakers", "parka", "scarf", "beanie", "backpack"]
PLANS = ["free", "pro", "team"]
AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Shop:
    """The events as sent, and the facts the dashboard must show."""

    events: list[dict[str, Any]] = field(default_factory=list)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    visitors: list[str] = field(default_factory=list)

    @property
    def people(self) -> int:
        return len(self.users) + len(self.visitors)

    def names(self) -> Counter[str]:
        """Events by name: ``event`` for track, the type for the others."""
        return Counter(e["event"] if e["type"] == "track" else e["type"] for e in self.events)

    def of(self, identifier: str) -> list[dict[str, Any]]:
        """Events whose userId or anonymousId is ``identifier``."""
        return [e for e in self.events if identifier in (e.get("userId"), e.get("anonymousId"))]

    def buyers(self) -> set[str]:
        return {
            e["userId"]
            for e in self.events
            if e.get("event") == "Order Completed" and "userId" in e
        }


def generate(seed: int = 4, users: int = 24, visitors: int = 8) -> Shop:
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    shop = Shop()

    def add(kind: str, moment: datetime, **fields: Any) -> None:
        shop.events.append(
            {
                "type": kind,
                "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "timestamp": iso(moment),
                "context": {"userAgent": AGENT, "locale": rng.choice(["en-US", "de-DE"])},
                **fields,
            }
        )

    def page(moment: datetime, ids: dict[str, str]) -> None:
        name, path = rng.choice(PAGES)
        add(
            "page",
            moment,
            name=name,
            properties={"path": path, "url": f"https://shop.example{path}", "title": name},
            **ids,
        )

    for n in range(1, users + 1):
        user_id = f"u-{n:03d}"
        email = f"customer{n}@shop.example"
        plan = rng.choice(PLANS)
        devices = [f"anon-{user_id}-{d}" for d in range(rng.choice([1, 1, 2]))]
        start = now - timedelta(days=rng.uniform(2, 13), hours=rng.uniform(0, 6))
        shop.users[user_id] = {"email": email, "plan": plan, "devices": devices}
        moment = start
        for device in devices:  # browse anonymously first
            for _ in range(rng.randint(1, 3)):
                moment += timedelta(minutes=rng.uniform(1, 20))
                page(moment, {"anonymousId": device})
        moment += timedelta(minutes=rng.uniform(1, 10))
        add(
            "identify",
            moment,
            userId=user_id,
            anonymousId=devices[0],
            traits={"email": email, "plan": plan, "name": f"Customer {n}"},
        )
        ids = {"userId": user_id, "anonymousId": devices[-1]}
        for visit in range(rng.randint(1, 3)):  # a visit on the first day, maybe later ones
            if visit:
                moment += timedelta(days=rng.randint(1, 3), minutes=rng.uniform(0, 60))
            if moment > now - timedelta(minutes=5):
                break
            page(moment, ids)
            for product in rng.sample(PRODUCTS, rng.randint(1, 3)):
                moment += timedelta(minutes=rng.uniform(0.5, 6))
                add("track", moment, event="Product Viewed", properties={"sku": product}, **ids)
                if rng.random() < 0.55:
                    moment += timedelta(minutes=rng.uniform(0.5, 4))
                    price = rng.choice([19, 49, 89, 129])
                    add(
                        "track",
                        moment,
                        event="Product Added",
                        properties={"sku": product, "price": price},
                        **ids,
                    )
            if rng.random() < 0.6:
                moment += timedelta(minutes=rng.uniform(1, 8))
                add("track", moment, event="Checkout Started", **ids)
                if rng.random() < 0.7:
                    moment += timedelta(minutes=rng.uniform(1, 5))
                    revenue = rng.choice([19, 49, 89, 129, 178])
                    add(
                        "track",
                        moment,
                        event="Order Completed",
                        properties={"revenue": revenue, "currency": "EUR"},
                        **ids,
                    )
    for n in range(1, visitors + 1):
        anonymous = f"anon-visitor-{n:02d}"
        shop.visitors.append(anonymous)
        moment = now - timedelta(days=rng.uniform(0.5, 12))
        for _ in range(rng.randint(1, 4)):
            moment += timedelta(minutes=rng.uniform(1, 15))
            page(moment, {"anonymousId": anonymous})
        moment += timedelta(minutes=2)
        add(
            "track",
            moment,
            event="Product Viewed",
            properties={"sku": "parka"},
            anonymousId=anonymous,
        )
    shop.events.sort(key=lambda e: e["timestamp"])
    return shop


def send(base_url: str, write_key: str, shop: Shop) -> None:
    """Through ``POST /v1/batch``, 200 events a request, as an SDK would."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for start in range(0, len(shop.events), 200):
            chunk = shop.events[start : start + 200]
            reply = client.post(
                "/v1/batch",
                json={"batch": chunk, "sentAt": iso(datetime.now(UTC))},
                headers=basic(write_key),
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["accepted"] == len(chunk), body
            assert not body["rejected"], body
