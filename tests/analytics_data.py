"""A generated but realistic data set for the analytics tests, and the plain-Python truth.

People browse anonymously on one to three devices, sign up or log in (which links the
device's anonymous id to their user id), and shop, search, watch and upgrade over six
weeks. Some devices never log in (their person is the device), some visitors never sign
up. Funnel steps happen out of order, repeat, and tie on timestamps. The events go into
the event log exactly as the collector writes them, and the processor turns them into the
lake; the tests then check every analysis against the plain-Python rules below, which use
only the generated events and who generated them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any
from urllib.parse import urlsplit

import msgspec

from auie.eventlog import EVENTS_TOPIC, LogRecord
from auie.events import Normalizer
from auie.runtime import Runtime

START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
DAYS = 42
END = START + timedelta(days=DAYS)
WINDOW = 2 * 3600  # the funnel conversion window the scripted people are built around

AGENTS = {
    "chrome": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/126.0.0.0 Safari/537.36",
    "firefox": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "safari": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.5 Safari/605.1.15",
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
}
CATEGORIES = ["shoes", "shirts", "bags", "hats", "socks"]
PLANS = ["free", "pro", "team"]
COUNTRIES = ["DE", "FR", "US", "GB", "JP", "BR"]
SOURCES = ["google", "newsletter", "twitter", None, None]
FUNNEL = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
_encode = msgspec.json.Encoder().encode


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Device:
    anonymous_id: str
    agent: str
    #: Time of the device's first event carrying the user id (None: never logged in).
    login_at: datetime | None = None


@dataclass
class Person:
    key: str
    user_id: str | None
    devices: list[Device]
    #: Trait values per identify call: (time, message id, traits).
    identifies: list[tuple[datetime, str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Dataset:
    #: Normalised events as the collector stores them.
    events: list[dict[str, Any]]
    #: Ground-truth person key of each message id.
    person_of: dict[str, str]
    people: dict[str, Person]

    def lookup(self, key: str) -> tuple[str, str]:
        """An identifier of a person, to find its profile id."""
        person = self.people[key]
        if person.user_id is not None:
            return "user_id", person.user_id
        return "anonymous_id", person.devices[0].anonymous_id

    def traits(self, key: str) -> dict[str, Any]:
        """Last write wins by event time (then message id), per trait."""
        result: dict[str, tuple[tuple[datetime, str], Any]] = {}
        for moment, message_id, traits in self.people[key].identifies:
            for name, value in traits.items():
                if name not in result or (moment, message_id) > result[name][0]:
                    result[name] = ((moment, message_id), value)
        return {name: value for name, (_stamp, value) in result.items()}


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.messages: list[tuple[dict[str, Any], str]] = []
        self.people: dict[str, Person] = {}
        self.counter = 0

    def message_id(self) -> str:
        self.counter += 1
        return f"m{self.rng.randrange(16**8):08x}-{self.counter:06d}"

    def emit(
        self,
        person: Person,
        device: Device,
        moment: datetime,
        kind: str,
        *,
        logged_in: bool,
        event: str | None = None,
        properties: dict[str, Any] | None = None,
        traits: dict[str, Any] | None = None,
        name: str | None = None,
        message_id: str | None = None,
        url: str | None = None,
    ) -> str:
        message: dict[str, Any] = {
            "type": kind,
            "messageId": message_id or self.message_id(),
            "anonymousId": device.anonymous_id,
            "timestamp": iso(moment),
            "context": {"userAgent": device.agent, "locale": "en-US"},
        }
        if logged_in:
            assert person.user_id is not None
            message["userId"] = person.user_id
            if device.login_at is None or moment < device.login_at:
                device.login_at = moment
        if event is not None:
            message["event"] = event
        if name is not None:
            message["name"] = name
        if properties is not None:
            message["properties"] = properties
        if traits is not None:
            message["traits"] = traits
            person.identifies.append((moment, message["messageId"], dict(traits)))
        if url is not None:
            message["context"]["page"] = {"url": url, "path": urlsplit(url).path}
        self.messages.append((message, person.key))
        return str(message["messageId"])

    # -- people ---------------------------------------------------------------------------

    def person(self, key: str, user_id: str | None, devices: int) -> Person:
        found = Person(
            key,
            user_id,
            [
                Device(f"anon-{key}-{d}-{self.rng.randrange(16**6):06x}", self.agent())
                for d in range(devices)
            ],
        )
        self.people[key] = found
        return found

    def agent(self) -> str:
        return AGENTS[self.rng.choice(list(AGENTS))]

    def url(self, path: str) -> str:
        source = self.rng.choice(SOURCES)
        query = f"?utm_source={source}&utm_medium=cpc" if source else ""
        return f"https://shop.example{path}{query}"

    def session(
        self, person: Person, device: Device, start: datetime, *, logged_in: bool
    ) -> datetime:
        """A browsing session; returns its last event's time."""
        rng = self.rng
        moment = start
        emit = self.emit

        def later(low: float = 5, high: float = 600) -> datetime:
            nonlocal moment
            moment += timedelta(seconds=rng.uniform(low, high))
            return moment

        emit(person, device, moment, "page", logged_in=logged_in, name="Home", url=self.url("/"))
        for _ in range(rng.randint(0, 3)):
            category = rng.choice(CATEGORIES)
            emit(
                person,
                device,
                later(),
                "page",
                logged_in=logged_in,
                name="Category",
                properties={"category": category},
                url=self.url(f"/c/{category}"),
            )
        if rng.random() < 0.3:
            emit(
                person,
                device,
                later(),
                "track",
                logged_in=logged_in,
                event="Products Searched",
                properties={"query": rng.choice(["red shoes", "Bag", "hat", "SOCKS"])},
            )
        if rng.random() < 0.15:
            emit(
                person,
                device,
                later(),
                "track",
                logged_in=logged_in,
                event="Video Played",
                properties={"length": rng.randint(10, 300), "autoplay": rng.random() < 0.5},
            )
        self.shop(person, device, later, logged_in=logged_in)
        return moment

    def shop(
        self,
        person: Person,
        device: Device,
        later: Callable[..., datetime],
        *,
        logged_in: bool,
    ) -> None:
        rng = self.rng
        category = rng.choice(CATEGORIES)
        price = rng.choice([9.5, 19, 25, 49.99, 120])
        product = {"product_id": f"sku-{rng.randrange(40)}", "category": category, "price": price}
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            self.emit(
                person, device, later(), "track", logged_in=logged_in, event=FUNNEL[0],
                properties=product,
            )  # fmt: skip
        depth = rng.choice([0, 1, 1, 2, 2, 3, 4, 4])
        if depth == 0:
            return
        quantity = rng.randint(1, 3)
        added = later()
        self.emit(
            person, device, added, "track", logged_in=logged_in, event=FUNNEL[1],
            properties={**product, "quantity": quantity},
        )  # fmt: skip
        if rng.random() < 0.2:
            self.emit(person, device, later(), "track", logged_in=logged_in, event="Cart Viewed")
        if depth < 3:
            return
        checkout = added if rng.random() < 0.1 else later(1, 900)  # same-time ties
        order = later(30, 2000)
        if rng.random() < 0.1:
            # The client's clock: the order is logged before the checkout.
            order = checkout - timedelta(seconds=rng.uniform(1, 60))
        self.emit(
            person, device, checkout, "track", logged_in=logged_in, event=FUNNEL[2],
            properties={"value": price * quantity},
        )  # fmt: skip
        if rng.random() < 0.2:
            self.emit(
                person, device, later(), "track", logged_in=logged_in, event="Coupon Applied",
                properties={"coupon": rng.choice(["WELCOME", "SUMMER", "vip10"])},
            )  # fmt: skip
        if depth == 4:
            self.emit(
                person, device, order, "track", logged_in=logged_in, event=FUNNEL[3],
                properties={"revenue": round(price * quantity, 2), "currency": "EUR",
                            "category": category},
            )  # fmt: skip

    def registered(self, index: int) -> None:
        rng = self.rng
        person = self.person(f"user-{index:04d}", f"u{index:04d}", rng.choice([1, 1, 2, 2, 3]))
        first = person.devices[0]
        signup_day = rng.uniform(0, DAYS - 7)
        moment = START + timedelta(days=signup_day)
        # Anonymous browsing first, then the sign-up links the device.
        moment = self.session(person, first, moment, logged_in=False)
        moment += timedelta(seconds=rng.uniform(10, 300))
        traits = {
            "email": f"user{index}@example.com",
            "plan": rng.choice(PLANS),
            "country": rng.choice(COUNTRIES),
            "age": rng.randint(18, 80),
        }
        if rng.random() < 0.2:
            traits["beta"] = rng.random() < 0.5
        self.emit(person, first, moment, "identify", logged_in=True, traits=traits)
        self.emit(
            person,
            first,
            moment + timedelta(seconds=1),
            "track",
            logged_in=True,
            event="Signed Up",
            properties={"method": rng.choice(["email", "google", "apple"])},
        )
        sessions = rng.randint(2, 12)
        for _ in range(sessions):
            moment = START + timedelta(days=rng.uniform(signup_day, DAYS - 0.01))
            device = rng.choice(person.devices)
            logged = device.login_at is not None and device.login_at <= moment
            if not logged and rng.random() < 0.6:
                moment = self.session(person, device, moment, logged_in=False)
                moment += timedelta(seconds=rng.uniform(5, 120))
                self.emit(person, device, moment, "track", logged_in=True, event="Logged In")
                logged = True
            end = self.session(person, device, moment, logged_in=logged)
            if logged and rng.random() < 0.1:
                plan = rng.choice(PLANS)
                upgrade = end + timedelta(seconds=rng.uniform(5, 60))
                self.emit(
                    person,
                    device,
                    upgrade,
                    "track",
                    logged_in=True,
                    event="Subscription Upgraded",
                    properties={"plan": plan},
                )
                self.emit(
                    person,
                    device,
                    upgrade + timedelta(milliseconds=5),
                    "identify",
                    logged_in=True,
                    traits={"plan": plan},
                )
            if logged and rng.random() < 0.05:
                self.emit(
                    person,
                    device,
                    end + timedelta(seconds=30),
                    "track",
                    logged_in=True,
                    event="Support Ticket Created",
                    properties={"priority": rng.choice(["low", "high"])},
                )

    def visitor(self, index: int) -> None:
        person = self.person(f"visitor-{index:04d}", None, 1)
        moment = START + timedelta(days=self.rng.uniform(0, DAYS - 0.5))
        for _ in range(self.rng.randint(1, 3)):
            moment = self.session(person, person.devices[0], moment, logged_in=False)
            moment += timedelta(hours=self.rng.uniform(1, 100))
            if moment >= END:
                break

    def scripted(self) -> None:
        """People built around the funnel rules (window WINDOW from step 1)."""
        day = START + timedelta(days=20, hours=10)
        w = timedelta(seconds=WINDOW)
        ms = timedelta(milliseconds=1)
        scripts: dict[str, list[tuple[timedelta, int, str | None]]] = {
            # (offset, step index or -1 for another event, message id or None)
            "edge-window": [(timedelta(0), 0, None), (w / 2, 1, None), (w, 2, None),
                            (w + ms, 3, None)],
            "out-of-order": [(timedelta(0), 3, None), (ms, 2, None), (2 * ms, 0, None),
                             (3 * ms, 2, None), (4 * ms, 1, None), (5 * ms, 3, None)],
            "tie-before": [(timedelta(0), 0, "t-b"), (timedelta(0), 1, "t-a"),
                           (timedelta(seconds=5), 2, None)],
            "tie-after": [(timedelta(0), 0, "t-c"), (timedelta(0), 1, "t-d"),
                          (timedelta(0), 2, "t-e"), (timedelta(0), 3, "t-f")],
            "repeat-entry": [(timedelta(0), 0, None), (w - ms, 0, None), (w + ms, 1, None)],
            "repeats": [(timedelta(0), 0, None), (ms, 1, None), (2 * ms, 0, None),
                        (3 * ms, 1, None), (4 * ms, 0, None), (5 * ms, 2, None),
                        (6 * ms, 2, None), (7 * ms, 3, None), (8 * ms, 3, None)],
            "same-step-twice": [(timedelta(0), 0, None), (timedelta(seconds=1), 0, None)],
        }  # fmt: skip
        for index, (name, steps) in enumerate(scripts.items()):
            person = self.person(f"script-{name}", f"script-{index}", 1)
            device = person.devices[0]
            self.emit(
                person, device, day - timedelta(minutes=5), "identify", logged_in=True,
                traits={"plan": "pro", "country": "DE", "email": f"{name}@example.com"},
            )  # fmt: skip
            for offset, step, message_id in steps:
                self.emit(
                    person,
                    device,
                    day + offset,
                    "track",
                    logged_in=True,
                    event=FUNNEL[step],
                    properties={"category": "shoes", "price": 10},
                    message_id=f"{name}-{message_id}" if message_id else None,
                )
            day += timedelta(hours=5)

    def boundaries(self) -> None:
        """Events exactly at the range's start and end (the end is exclusive)."""
        person = self.person("boundary", "boundary-user", 1)
        device = person.devices[0]
        for moment in (START, END - timedelta(milliseconds=1), END):
            self.emit(person, device, moment, "track", logged_in=True, event="Product Viewed")


def generate(seed: int = 7, users: int = 300, visitors: int = 80) -> tuple[Dataset, list[dict]]:
    """The data set and the raw messages (Segment shape) in arrival order."""
    builder = _Builder(seed)
    for index in range(users):
        builder.registered(index)
    for index in range(visitors):
        builder.visitor(index)
    builder.scripted()
    builder.boundaries()
    # Devices that never logged in are people of their own.
    raw: list[tuple[dict[str, Any], str]] = []
    device_person: dict[str, str] = {}
    for person in list(builder.people.values()):
        for device in person.devices:
            if person.user_id is not None and device.login_at is None:
                own = Person(f"device-{device.anonymous_id}", None, [device])
                builder.people[own.key] = own
                device_person[device.anonymous_id] = own.key
    for message, key in builder.messages:
        raw.append((message, device_person.get(message["anonymousId"], key)))
    builder.rng.shuffle(raw)  # arrival order is not event order
    normalizer = Normalizer(received_at=END + timedelta(days=1), peer_ip="198.51.100.7")
    events = [normalizer.normalize(message) for message, _key in raw]
    used = {key for _message, key in raw}
    people = {k: p for k, p in builder.people.items() if k in used}
    dataset = Dataset(
        events, {e["messageId"]: key for e, (_m, key) in zip(events, raw, strict=True)}, people
    )
    return dataset, [message for message, _key in raw]


def load(runtime: Runtime, workspace: str, events: Sequence[dict[str, Any]]) -> None:
    """Append the events to the log as the collector does, then process them into the lake."""
    records = [
        LogRecord(
            topic=EVENTS_TOPIC,
            key=(event.get("userId") or event["anonymousId"]).encode(),
            value=_encode(event),
            timestamp_ms=int(datetime.fromisoformat(event["receivedAt"]).timestamp() * 1000),
            headers={"workspaceId": workspace, "sourceId": "src_test"},
            dedupe_key=f"{workspace}:{event['messageId']}",
        )
        for event in events
    ]
    for start in range(0, len(records), 5000):
        runtime.eventlog.append(records[start : start + 5000])
    processor = runtime.processor()
    while True:
        report = processor.step()
        if report.events == 0 and report.dead_letters == 0:
            break
    processor.flush()


# -- the rules, in plain Python ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One generated event, as the analyses see it."""

    message_id: str
    ts: datetime
    name: str
    person: str
    properties: dict[str, Any]
    fields: dict[str, Any]


def rows(dataset: Dataset) -> list[Row]:
    result = []
    for event in dataset.events:
        name = event["event"] if event["type"] == "track" else event["type"]
        fields = {
            "type": event["type"],
            "user_id": event.get("userId"),
            "anonymous_id": event.get("anonymousId"),
            "name": event.get("name"),
            "browser_name": _browser(event["context"].get("userAgent", "")),
            "utm_source": _utm_source(event["context"].get("page", {}).get("url")),
        }
        result.append(
            Row(
                event["messageId"],
                datetime.fromisoformat(event["timestamp"]),
                name,
                dataset.person_of[event["messageId"]],
                event.get("properties") or {},
                fields,
            )
        )
    return result


def _browser(agent: str) -> str | None:
    if "Firefox/" in agent:
        return "Firefox"
    if "Chrome/" in agent:
        return "Chrome"
    if "iPhone" in agent:
        return "Mobile Safari"
    if "Safari/" in agent:
        return "Safari"
    return None


def _utm_source(url: str | None) -> str | None:
    if not url or "utm_source=" not in url:
        return None
    return url.split("utm_source=")[1].split("&")[0]


def text_form(value: Any) -> str | None:
    """The text a value is compared by: strings as they are, others as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def matches(document: dict[str, Any], spec: dict[str, Any]) -> bool:  # noqa: PLR0911
    """One filter (``{"op", "value"}``) on the value under ``spec["key"]`` of ``document``."""
    value = document.get(spec["key"])
    op, wanted = spec["op"], spec.get("value")

    def equals(w: Any) -> bool:
        if isinstance(w, int | float) and not isinstance(w, bool):
            number = value if spec.get("typed") else _number(value)
            return number is not None and float(number) == float(w)
        text = text_form(value)
        return text is not None and text == text_form(w)

    if op == "is_set":
        return (value is not None) == (wanted is None or wanted)
    if op == "eq":
        return equals(wanted)
    if op == "neq":
        return not equals(wanted)
    if op == "in":
        return any(equals(w) for w in wanted)
    if op == "contains":
        text = text_form(value)
        return text is not None and wanted.lower() in text.lower()
    if isinstance(wanted, int | float):
        left: Any = _number(value)
        right: Any = float(wanted)
    else:
        left, right = text_form(value), wanted
    if left is None:
        return False
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
    }[op]


def event_filter(row: Row, traits: dict[str, dict[str, Any]], spec: dict[str, Any]) -> bool:
    if "property" in spec:
        return matches(row.properties, {**spec, "key": spec["property"]})
    if "field" in spec:
        return matches(row.fields, {**spec, "key": spec["field"]})
    return matches(traits.get(row.person, {}), {**spec, "key": spec["trait"]})


def label(row: Row, traits: dict[str, dict[str, Any]], spec: dict[str, Any] | None) -> Any:
    if spec is None:
        return None
    if "property" in spec:
        return text_form(row.properties.get(spec["property"]))
    if "field" in spec:
        return text_form(row.fields.get(spec["field"]))
    return text_form(traits.get(row.person, {}).get(spec["trait"]))


def top_values(totals: dict[Any, int], limit: int) -> list[Any]:
    ranked = sorted(totals, key=lambda v: (-totals[v], v is None, v or ""))
    return ranked[:limit]


def truncate(moment: datetime, interval: str) -> datetime:
    if interval == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day


def expected_trends(
    data: Iterable[Row],
    traits: dict[str, dict[str, Any]],
    *,
    events: list[str],
    measure: str,
    interval: str,
    start: datetime,
    end: datetime,
    filters: Sequence[dict[str, Any]] = (),
    breakdown: dict[str, Any] | None = None,
    limit: int = 10,
) -> dict[tuple[str, Any, bool], tuple[dict[datetime, int], int]]:
    """(event, breakdown value, other) → ({bucket: value}, total)."""
    chosen: dict[str, list[Row]] = {name: [] for name in events}
    for row in data:
        if (
            row.name in chosen
            and start <= row.ts < end
            and all(event_filter(row, traits, spec) for spec in filters)
        ):
            chosen[row.name].append(row)

    def measure_of(group: list[Row]) -> int:
        return len({r.person for r in group}) if measure == "people" else len(group)

    result = {}
    for name, group in chosen.items():
        by_value: dict[Any, list[Row]] = {}
        for row in group:
            by_value.setdefault(label(row, traits, breakdown), []).append(row)
        top = top_values({v: measure_of(g) for v, g in by_value.items()}, limit)
        series: dict[tuple[Any, bool], list[Row]] = {}
        for value, members in by_value.items():
            key = (value, False) if value in top else (None, True)
            series.setdefault(key, []).extend(members)
        if breakdown is None and not series:
            series[(None, False)] = []
        for (value, other), members in series.items():
            buckets: dict[datetime, list[Row]] = {}
            for row in members:
                buckets.setdefault(truncate(row.ts, interval), []).append(row)
            result[(name, value, other)] = (
                {b: measure_of(g) for b, g in buckets.items()},
                measure_of(members),
            )
    return result


def expected_funnel(
    data: Iterable[Row],
    traits: dict[str, dict[str, Any]],
    *,
    steps: Sequence[dict[str, Any]],
    window: int,
    start: datetime,
    end: datetime,
    breakdown: dict[str, Any] | None = None,
) -> dict[str, tuple[Any, list[float]]]:
    """person → (breakdown value, [time of each step reached])."""
    by_person: dict[str, list[Row]] = {}
    for row in data:
        if start <= row.ts < end:
            by_person.setdefault(row.person, []).append(row)
    result = {}
    for person, events in by_person.items():
        events.sort(key=lambda r: (r.ts, r.message_id))

        def fits(row: Row, index: int) -> bool:
            spec = steps[index]
            return row.name == spec["event"] and all(
                event_filter(row, traits, f) for f in spec.get("filters", [])
            )

        reached: list[Row] = []
        for row in events:
            index = len(reached)
            if index == len(steps):
                break
            if index > 0 and (row.ts - reached[0].ts).total_seconds() > window:
                break
            if fits(row, index):
                # Sorted by (time, message id), so a later row is strictly after.
                reached.append(row)
        if reached:
            result[person] = (
                label(reached[0], traits, breakdown),
                [r.ts.timestamp() for r in reached],
            )
    return result


def funnel_counts(
    people: Iterable[tuple[Any, list[float]]], steps: int
) -> list[tuple[int, float | None]]:
    """Per step: people reaching it, median seconds from the previous step."""
    reached = [[] for _ in range(steps)]  # type: list[list[float]]
    for _value, times in people:
        for index in range(len(times)):
            reached[index].append(times[index] - times[index - 1] if index else 0.0)
    return [(len(r), median(r) if r and i else None) for i, r in enumerate(reached)]


def expected_retention(
    data: Iterable[Row],
    *,
    start_event: str,
    return_event: str,
    period: str,
    periods: int,
    start: datetime,
    end: datetime,
) -> dict[datetime, list[int | None]]:
    """cohort start → [size, returning in period 1, ...] (None from ``end`` on)."""
    length = timedelta(days=7 if period == "week" else 1)
    first: dict[str, datetime] = {}
    returns: dict[str, list[datetime]] = {}
    for row in data:
        if not start <= row.ts < end:
            continue
        if row.name == start_event and (row.person not in first or row.ts < first[row.person]):
            first[row.person] = row.ts
        if row.name == return_event:
            returns.setdefault(row.person, []).append(row.ts)
    cohorts: dict[datetime, list[str]] = {}
    moment = truncate(start, period)
    while moment < end:
        cohorts[moment] = []
        moment += length
    for person, moment in first.items():
        cohorts[truncate(moment, period)].append(person)
    table = {}
    for cohort, members in cohorts.items():
        counts: list[int | None] = [len(members)]
        for k in range(1, periods):
            low = cohort + k * length
            if low >= end:
                counts.append(None)
                continue
            counts.append(
                sum(1 for p in members if any(low <= t < low + length for t in returns.get(p, [])))
            )
        table[cohort] = counts
    return table
