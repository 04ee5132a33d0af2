"""Realistic Segment payloads, pre-built once and made unique per request for almost free.

Each event looks like what analytics.js sends: a track, page or identify call with a
``messageId``, ``anonymousId`` (and for logged-in users a ``userId``), properties or
traits, and a browser ``context`` (library, page, userAgent, locale, timezone). Events
average about 400 bytes of JSON.

A *template* is the body (or the whole HTTP request) split at a placeholder that stands
in every ``messageId``; :func:`render` joins the parts with a fixed-width request number,
so every request carries unique ids, the length never changes (the Content-Length in a
pre-built request stays right) and the cost is one ``bytes.join``.
"""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

#: Stands in every messageId of a template; replaced by a request number.
PLACEHOLDER = b"@@SEQ@@"
#: Request numbers are zero-padded to this many digits.
SEQ_DIGITS = 10

_encode = msgspec.json.Encoder().encode

_LIBRARY = {"name": "analytics.js", "version": "1.70.0"}
_SERVER_LIBRARY = {"name": "analytics-python", "version": "2.3.3"}
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
_LOCALES = ("en-US", "de-DE", "fr-FR")
_TRACKS = (
    ("Product Viewed", "/products/{sku}"),
    ("Product Added", "/products/{sku}"),
    ("Checkout Started", "/checkout"),
    ("Order Completed", "/checkout/done"),
    ("Signed Up", "/signup"),
)
_PAGES = (("Home", "/"), ("Search", "/search"), ("Product", "/products/{sku}"), ("Cart", "/cart"))
_REFERRERS = ("", "", "https://www.google.com/")
_PLANS = ("free", "pro", "team")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Person:
    """One visitor: an anonymous id, and a user id once logged in."""

    def __init__(self, rng: random.Random) -> None:
        self.anonymous_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.user_id = f"user-{rng.randrange(10**7):07d}" if rng.random() < 0.6 else None
        self.agent = rng.choice(_AGENTS)
        self.locale = rng.choice(_LOCALES)


def _event(rng: random.Random, person: Person, message_id: str, now: datetime) -> dict[str, Any]:
    sku = f"sku-{rng.randrange(100_000):05d}"
    roll = rng.random()
    if roll < 0.6:
        kind = "track"
        name, path = rng.choice(_TRACKS)
        path = path.format(sku=sku)
    elif roll < 0.9:
        kind = "page"
        name, path = rng.choice(_PAGES)
        path = path.format(sku=sku)
    else:
        kind, name, path = "identify", "", "/account"
    event: dict[str, Any] = {"type": kind, "messageId": message_id}
    if kind == "track":
        event["event"] = name
        event["properties"] = {"product_id": sku, "price": round(rng.uniform(5, 250), 2)}
    elif kind == "page":
        event["name"] = name
        event["properties"] = {"path": path, "title": f"{name} | Shop"}
    else:
        event["traits"] = {"plan": rng.choice(_PLANS), "logins": rng.randint(1, 400)}
    event["anonymousId"] = person.anonymous_id
    if person.user_id is not None or kind == "identify":
        event["userId"] = person.user_id or f"user-{rng.randrange(10**7):07d}"
    if rng.random() < 0.35:  # sent from the product's back end (analytics-python)
        event["context"] = {"library": _SERVER_LIBRARY}
    else:
        event["context"] = {
            "library": _LIBRARY,
            "page": {"path": path, "referrer": rng.choice(_REFERRERS)},
            "userAgent": person.agent,
            "locale": person.locale,
        }
    event["timestamp"] = _iso(now - timedelta(milliseconds=rng.randrange(2000)))
    return event


def _split(document: bytes) -> list[bytes]:
    parts = document.split(PLACEHOLDER)
    assert len(parts) > 1
    return parts


def batch_template(rng: random.Random, tag: str, events: int = 100) -> list[bytes]:
    """A ``/v1/batch`` body of ``events`` events, split at the request-number placeholder."""
    now = datetime.now(UTC)
    people = [Person(rng) for _ in range(max(1, events // 5))]
    batch = [
        _event(rng, rng.choice(people), f"{tag}-@@SEQ@@-{index:03d}", now)
        for index in range(events)
    ]
    body = _encode({"batch": batch, "sentAt": _iso(now)})
    return _split(body)


def single_template(rng: random.Random, tag: str) -> list[bytes]:
    """A ``/v1/track`` body (one event), split at the request-number placeholder."""
    now = datetime.now(UTC)
    while True:
        event = _event(rng, Person(rng), f"{tag}-@@SEQ@@", now)
        if event["type"] == "track":
            break
    event.pop("type")
    event["sentAt"] = _iso(now)
    return _split(_encode(event))


def http_template(path: str, body_parts: list[bytes], port: int, write_key: str) -> list[bytes]:
    """The whole HTTP/1.1 keep-alive request, split like its body."""
    length = sum(len(part) for part in body_parts) + SEQ_DIGITS * (len(body_parts) - 1)
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: auie-bench/1\r\n"
        f"Authorization: Basic {auth}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n"
        "\r\n"
    ).encode()
    return [head + body_parts[0], *body_parts[1:]]


def render(parts: list[bytes], seq: int) -> bytes:
    """The template with every messageId made unique by the request number ``seq``."""
    return (b"%010d" % seq).join(parts)
