"""A realistic stream of normalised events, written straight into an event log.

Visitors of a shop over a few hours: each has an ``anonymousId``, most a browser (user
agent, locale, IP), about half log in (``userId``), and some of those identify
with an ``email`` trait. Their events are page views (URLs, some with UTM parameters),
tracks with product properties and identifies; a few are aliases. Events are normalised
by the collector's own :class:`~auie.events.Normalizer` and wrapped in
:class:`~auie.eventlog.LogRecord` exactly as :mod:`auie.collect.service` builds them, so
the processor reads what it would read behind ``auie serve``. About 400 bytes each.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from auie.eventlog import EVENTS_TOPIC, EventLog, LogRecord
from auie.events import Normalizer

_encode = msgspec.json.Encoder().encode

_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{m} Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPad; CPU OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{m} Mobile/15E148 Safari/604.1",
)
_LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "nl-NL")
_UTM = (
    "utm_source=google&utm_medium=cpc&utm_campaign=summer_sale&utm_term=running+shoes",
    "utm_source=newsletter&utm_medium=email&utm_campaign=week_{w}",
    "utm_source=facebook&utm_medium=social&utm_campaign=retargeting&utm_content=carousel",
)
_PAGES = (
    ("Home", "/"),
    ("Search", "/search?q={q}"),
    ("Product", "/products/{sku}"),
    ("Product", "/products/{sku}"),
    ("Cart", "/cart"),
)
_TRACKS = (
    "Product Viewed",
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Coupon Applied",
)
_QUERIES = ("shoes", "red dress", "jacket", "socks", "running", "sale")
_PLANS = ("free", "pro", "team")
_HOST = "https://shop.example.com"
_SERVER_LIBRARY = {"name": "analytics-python", "version": "2.3.3"}
_WEB_LIBRARY = {"name": "analytics.js", "version": "next-1.70.0"}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Visitor:
    anonymous_id: str
    user_id: str | None
    email: str | None
    agent: str
    locale: str
    ip: str
    logged_in: bool = False
    #: What the visitor's consent manager states with each web event (None: none).
    consent: dict[str, bool] | None = None

    @classmethod
    def make(cls, rng: random.Random, index: int, consent_share: float = 0.0) -> Visitor:
        user = f"user-{index:07d}" if rng.random() < 0.5 else None
        email = f"{user}@mail.example.org" if user and rng.random() < 0.6 else None
        agent = rng.choice(_BROWSERS).format(v=rng.randint(118, 127), m=rng.randint(0, 6))
        ip = f"{rng.randint(11, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{index % 250}"
        consent = None
        if consent_share and rng.random() < consent_share:
            consent = {"analytics": rng.random() >= 0.1, "advertising": rng.random() >= 0.4}
        return cls(
            _uuid(rng),
            user,
            email,
            agent,
            rng.choice(_LOCALES),
            ip,
            consent=consent,
        )


def _page_url(rng: random.Random, path: str) -> str:
    url = _HOST + path
    if rng.random() < 0.3:
        query = rng.choice(_UTM).format(w=rng.randint(1, 52))
        url += ("&" if "?" in url else "?") + query
    return url


def _message(rng: random.Random, visitor: Visitor, message_id: str) -> dict[str, Any]:
    sku = f"sku-{rng.randrange(20_000):05d}"
    roll = rng.random()
    message: dict[str, Any] = {"messageId": message_id, "anonymousId": visitor.anonymous_id}
    if visitor.user_id and not visitor.logged_in and rng.random() < 0.3:
        visitor.logged_in = True
        roll = 2.0  # the login: an identify
    if visitor.logged_in:
        message["userId"] = visitor.user_id
    name, path = rng.choice(_PAGES)
    path = path.format(sku=sku, q=rng.choice(_QUERIES))
    if roll < 0.40:
        message.update(type="page", name=name, properties={"path": path.split("?")[0]})
    elif roll < 0.95:
        event = rng.choice(_TRACKS)
        properties: dict[str, Any] = {"product_id": sku, "price": round(rng.uniform(5, 250), 2)}
        if event == "Order Completed":
            properties.update(order_id=_uuid(rng)[:13], currency="EUR")
        message.update(type="track", event=event, properties=properties)
    elif roll < 0.995 or roll > 1 or not message.get("userId"):
        traits: dict[str, Any] = {"plan": rng.choice(_PLANS), "logins": rng.randint(1, 400)}
        if visitor.email:
            traits["email"] = visitor.email
        message.update(type="identify", traits=traits)
        message.setdefault("userId", visitor.user_id)
        if message["userId"] is None:
            message.pop("userId")
    else:
        message.update(type="alias", previousId=visitor.anonymous_id)
    if rng.random() < 0.35:  # from the shop's back end (analytics-python)
        message["context"] = {"library": _SERVER_LIBRARY}
    else:
        message["context"] = {
            "library": _WEB_LIBRARY,
            "page": {"url": _page_url(rng, path)},
            "userAgent": visitor.agent,
            "locale": visitor.locale,
        }
        if visitor.consent is not None:  # a consent manager's wrapper: on every web event
            message["context"]["consent"] = {"categoryPreferences": visitor.consent}
    return message


class Stream:
    """``events`` normalised events of ``people`` visitors, in event-time order; a share
    ``consent`` of the visitors state consent with every web event (a consent manager's
    wrapper; one in ten refuses ``analytics``)."""

    def __init__(
        self, seed: int, events: int, people: int, hours: float = 3.0, consent: float = 0.0
    ) -> None:
        self.rng = random.Random(seed)
        self.events = events
        self.visitors = [Visitor.make(self.rng, i, consent) for i in range(people)]
        self.started = datetime.now(UTC) - timedelta(hours=hours)
        self.step_ms = hours * 3_600_000 / max(1, events)
        self.tag = f"{seed % 10**6:06d}"

    def records(self, workspace: str, source: str) -> Iterator[LogRecord]:
        headers = {"workspaceId": workspace, "sourceId": source}
        rng = self.rng
        for index in range(self.events):
            visitor = rng.choice(self.visitors)
            sent = self.started + timedelta(milliseconds=index * self.step_ms)
            received = sent + timedelta(milliseconds=rng.randrange(20, 400))
            message = _message(rng, visitor, f"bench-{self.tag}-{index:08d}")
            message["timestamp"] = _iso(sent - timedelta(milliseconds=rng.randrange(0, 1500)))
            message["sentAt"] = _iso(sent)
            normalizer = Normalizer(received_at=received, peer_ip=visitor.ip)
            event = normalizer.normalize(message)
            person = event.get("userId") or event["anonymousId"]
            yield LogRecord(
                topic=EVENTS_TOPIC,
                key=person.encode("utf-8", "surrogatepass"),
                value=_encode(event),
                timestamp_ms=int(received.timestamp() * 1000),
                headers=headers,
                dedupe_key=f"{workspace}:{event['messageId']}",
            )


def fill(log: EventLog, stream: Stream, workspace: str, source: str, chunk: int = 5000) -> int:
    """Append the whole stream to ``log`` in chunks; returns the bytes of event JSON."""
    size = 0
    records: list[LogRecord] = []
    for record in stream.records(workspace, source):
        records.append(record)
        size += len(record.value)
        if len(records) >= chunk:
            log.append(records)
            records = []
    if records:
        log.append(records)
    return size
