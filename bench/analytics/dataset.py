"""The analytics benchmark's data set: 10 million events written straight into the lake.

Sending 10 million events through the collector and the processor would take far longer
than the analyses (the processor's goal is 30,000 events/s on an idle machine), so the lake
tables are written directly, with AUIE's own schemas and writer path: the ``events`` and
``identities`` tables of :data:`auie.lake.tables.TABLES`, created by
:class:`auie.lake.catalog.Lake` (format 2, zstd, partitioned by day), appended with
pyiceberg in large Arrow batches, each ``events`` append carrying ``auie.log-offsets`` as the
processor's commits do. The analyses therefore read exactly the layout a real install has
after ``auie lake compact``: one data file per day partition (compaction packs a day's
micro-batch files into files of up to 64 MB; a day here is 10-20 MB), rows in time order
within the day (the processor writes micro-batches in arrival order; compaction
concatenates them, so a real file is time-ordered in chunks rather than throughout).

What is in it (``Spec`` defaults): 200,000 people, 90 days, 30 event names (28 track
events of an e-commerce site, ``page`` and ``identify``):

* **people** arrive over the period (a little more towards its end), each with a country,
  a device (desktop, mobile, tablet, with a browser and OS), an engagement level (casual,
  regular, power user) that sets how many sessions they have and how long they stay away
  between them (exponential gaps): the chance of coming back decays, so retention curves
  fall and flatten;
* **sessions** of several events in time order (30-60 s apart): a landing page, more pages,
  other events, and a funnel-shaped journey ``Product Viewed`` → ``Product Added`` →
  ``Checkout Started`` → ``Order Completed`` with drop-off at every step (conversion lower
  on mobile, higher for paying plans);
* **identity**: 45 % of people sign up (``Signed Up`` + ``identify`` with e-mail and plan),
  in their first session or a later one; their earlier events are anonymous (anonymous id
  only), later ones carry the user id. 30 % of them also use a second device, anonymously
  first and then after ``Signed In``. ``identities`` holds what the processor would record:
  each anonymous id on its own profile when first seen, then the user id, e-mail and the
  device ids moved to the user's profile at sign-up or sign-in (``changed_at`` = the time
  the event arrived). Profile ids are AUIE's (:func:`auie.profiles.identity.profile_id`);
* **properties** (JSON text, as the processor writes them): ``country`` on every event,
  ``plan`` on the events of identified people, product fields (``product_id``, ``sku``,
  ``category``, ``price``...) on product events, ``order_id``/``revenue`` on checkout
  events, ``query`` on searches, page fields on pages; ``context`` with library, page, user
  agent, locale, time zone and IP, and the typed columns the processor copies out or
  enriches (``context_*``, ``browser_*``, ``os_*``, ``device_type``, ``page_*``, ``utm_*``
  on some landing pages).

Only the lake's ``events`` and ``identities`` tables are written: the event log, the
profile store, ``dead_letters`` and the ``profiles`` snapshot table stay empty (the
analyses timed here break down by event properties, not traits, so they need neither).
The data directory is otherwise a normal AUIE data directory with one workspace, so
``Runtime(Settings(data_dir=...))`` and every analysis, CLI command or SQL query work on it.

``build_dataset(path)`` builds it once and returns the data directory; a second call with
the same parameters reuses it (``dataset.json`` records the version, parameters and
workspace). The lake's catalog and manifests hold absolute paths: a moved directory is
rebuilt.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from auie.config import Settings
from auie.eventlog import EVENTS_TOPIC
from auie.lake.catalog import Lake, offsets_property, open_catalog
from auie.lake.tables import EVENTS, IDENTITIES, TABLES
from auie.profiles.identity import node, profile_id
from auie.tenancy import TenancyStore

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / "bench" / "data" / "analytics-10m"
#: Bump when the generated data changes: a data set of another version is rebuilt.
VERSION = 1
MANIFEST = "dataset.json"
LOG_PARTITIONS = 4
START = datetime(2026, 8, 3, tzinfo=UTC)  # a Monday: weekly cohorts start with the data

_US = 1_000_000
_DAY_US = 86_400 * _US
_TS = pa.timestamp("us", tz="UTC")
_STR = pa.large_string()

# -- the vocabulary ------------------------------------------------------------------------

FUNNEL = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
#: The 28 track events; with ``page`` and ``identify`` the 30 event names of the data set.
TRACK = (
    *FUNNEL,
    "Products Searched",
    "Product List Viewed",
    "Product List Filtered",
    "Product Clicked",
    "Promotion Viewed",
    "Promotion Clicked",
    "Product Removed",
    "Cart Viewed",
    "Checkout Step Viewed",
    "Checkout Step Completed",
    "Payment Info Entered",
    "Coupon Entered",
    "Coupon Applied",
    "Order Refunded",
    "Product Added to Wishlist",
    "Product Shared",
    "Cart Shared",
    "Product Reviewed",
    "Signed Up",
    "Signed In",
    "Signed Out",
    "Newsletter Subscribed",
    "Support Ticket Created",
    "Account Updated",
)
PAGE, IDENTIFY = len(TRACK), len(TRACK) + 1
EVENT_NAMES = (*TRACK, "page", "identify")
_CODE = {name: code for code, name in enumerate(TRACK)}
_PRODUCT_EVENTS = frozenset(
    _CODE[n]
    for n in (
        "Product Viewed",
        "Product Added",
        "Product Clicked",
        "Product Removed",
        "Product Added to Wishlist",
        "Product Shared",
        "Product Reviewed",
    )
)
_ORDER_EVENTS = frozenset(
    _CODE[n]
    for n in (
        "Checkout Started",
        "Order Completed",
        "Cart Viewed",
        "Checkout Step Viewed",
        "Checkout Step Completed",
        "Payment Info Entered",
        "Coupon Entered",
        "Coupon Applied",
        "Order Refunded",
        "Cart Shared",
    )
)
#: Events that happen anywhere in a session, with their weights.
_FILLER = {
    "Products Searched": 9,
    "Product List Viewed": 12,
    "Product List Filtered": 5,
    "Product Clicked": 10,
    "Promotion Viewed": 7,
    "Promotion Clicked": 2,
    "Product Removed": 1.5,
    "Cart Viewed": 4,
    "Coupon Entered": 0.8,
    "Coupon Applied": 0.6,
    "Order Refunded": 0.2,
    "Product Added to Wishlist": 2,
    "Product Shared": 0.8,
    "Cart Shared": 0.3,
    "Product Reviewed": 0.7,
    "Signed Out": 0.6,
    "Newsletter Subscribed": 0.4,
    "Support Ticket Created": 0.3,
    "Account Updated": 0.5,
    "Checkout Step Completed": 0.3,
}

COUNTRIES = (
    ("US", 30, "en-US", "America/New_York"),
    ("GB", 10, "en-GB", "Europe/London"),
    ("DE", 10, "de-DE", "Europe/Berlin"),
    ("IN", 9, "en-IN", "Asia/Kolkata"),
    ("FR", 7, "fr-FR", "Europe/Paris"),
    ("BR", 7, "pt-BR", "America/Sao_Paulo"),
    ("CA", 5, "en-CA", "America/Toronto"),
    ("ES", 4, "es-ES", "Europe/Madrid"),
    ("IT", 4, "it-IT", "Europe/Rome"),
    ("NL", 3, "nl-NL", "Europe/Amsterdam"),
    ("JP", 3, "ja-JP", "Asia/Tokyo"),
    ("AU", 3, "en-AU", "Australia/Sydney"),
    ("MX", 3, "es-MX", "America/Mexico_City"),
    ("PL", 2, "pl-PL", "Europe/Warsaw"),
)
PLANS = ("free", "starter", "pro", "enterprise")
DEVICES = ("desktop", "mobile", "tablet")
#: (device, weight, browser, browser version, OS, OS version, brand, model, user agent)
_AGENTS = (
    (0, 60, "Chrome", "131.0.0", "Windows", "10", None, None,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36"),
    (0, 25, "Safari", "18.1", "Mac OS X", "10.15.7", "Apple", "Mac",
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/18.1 Safari/605.1.15"),
    (0, 10, "Firefox", "132.0", "Windows", "10", None, None,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0"),
    (0, 5, "Edge", "131.0.0", "Windows", "10", None, None,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"),
    (1, 55, "Mobile Safari", "18.1", "iOS", "18.1", "Apple", "iPhone",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    (1, 45, "Chrome Mobile", "131.0.0", "Android", "14", "Samsung", "SM-S918B",
     "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36"),
    (2, 70, "Mobile Safari", "18.1", "iOS", "18.1", "Apple", "iPad",
     "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    (2, 30, "Chrome", "131.0.0", "Android", "14", "Samsung", "SM-X710",
     "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36"),
)  # fmt: skip
#: Pages: (name, path, weight among the pages of a session).
_PAGES = (
    ("Home", "/", 30),
    ("Category", "/c/", 22),
    ("Product", "/p/", 25),
    ("Search", "/search", 8),
    ("Cart", "/cart", 6),
    ("Pricing", "/pricing", 3),
    ("Blog", "/blog", 4),
    ("Account", "/account", 2),
)
_CATEGORIES = (
    "Shoes", "Shirts", "Jackets", "Bags", "Watches", "Books", "Games", "Kitchen", "Garden",
    "Toys", "Beauty", "Sports",
)  # fmt: skip
_SEARCHES = (
    "running shoes", "rain jacket", "gift", "watch", "backpack", "sale", "coffee", "lego",
    "yoga mat", "headphones", "sneakers", "dress", "novel", "board game", "knife set",
)  # fmt: skip
_UTM = (
    ("google", "cpc", "brand"),
    ("google", "organic", None),
    ("facebook", "social", "autumn-sale"),
    ("newsletter", "email", "weekly"),
    ("instagram", "social", "influencer"),
)
HOST = "shop.example.com"
PRODUCTS = 5_000


@dataclass(frozen=True, slots=True)
class Spec:
    """What to generate; the defaults are the benchmark's data set."""

    events: int = 10_000_000
    people: int = 200_000
    days: int = 90
    seed: int = 20261126

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``."""


def build_dataset(
    path: Path | str = DEFAULT_DIR,
    *,
    events: int = 10_000_000,
    people: int = 200_000,
    days: int = 90,
    seed: int = 20261126,
    rebuild: bool = False,
    progress: Progress | bool = True,
) -> Path:
    """The data directory of the data set at ``path``, built there first unless a data set
    of this version and these parameters is already there (``rebuild`` forces it).

    ``progress``: True draws a progress bar on the terminal, False is silent, a callable
    gets ``(stage, done, total)``. :func:`manifest` describes the result (workspace, time
    range, counts)."""
    path = Path(path).resolve()
    spec = Spec(events=events, people=people, days=days, seed=seed)
    found = manifest(path)
    if not rebuild and found is not None and _matches(found, spec, path):
        return path
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    with _reporter(progress) as report:
        built = Builder(path, spec, report).build()
    (path / MANIFEST).write_text(json.dumps(built, indent=2) + "\n")
    return path


def manifest(path: Path | str) -> dict[str, Any] | None:
    """What ``build_dataset`` recorded about the data set at ``path`` (None if absent)."""
    try:
        found: dict[str, Any] = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return found


def _matches(found: dict[str, Any], spec: Spec, path: Path) -> bool:
    return (
        found.get("version") == VERSION
        and found.get("spec") == spec.to_dict()
        and found.get("path") == str(path)
    )


@contextmanager
def _reporter(progress: Progress | bool) -> Iterator[Progress]:
    if callable(progress):
        yield progress
        return
    if not progress:
        yield lambda _stage, _done, _total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        task = tasks.get(stage)
        if task is None:
            task = tasks[stage] = bar.add_task(stage, total=total)
        bar.update(task, completed=done, total=total)

    with bar:
        yield report


# -- helpers -------------------------------------------------------------------------------


def user_id(i: int) -> str:
    return f"user-{i:07d}"


def email(i: int) -> str:
    return f"{user_id(i)}@example.com"


def _choice(rng: np.random.Generator, n: int, weights: Any) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return np.asarray(rng.choice(len(w), size=n, p=w / w.sum()))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def uuids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` random version-4 UUIDs as text, made without a Python loop."""
    digits = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    digits[:, 12] = 4
    digits[:, 16] = 8 + (digits[:, 16] & 3)
    chars = _HEX[digits]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = chars[:, src : src + width]
    return pa.array(out.view("S36").ravel(), pa.binary()).cast(_STR)


def _text(values: Any) -> pa.Array:
    return pa.array(values, _STR)


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of text arrays and literals (null if any part is)."""
    values = [pa.scalar(p, _STR) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*values, pa.scalar("", _STR))


def _s(value: str) -> pa.Scalar:
    return pa.scalar(value, _STR)


def _quoted(values: pa.Array) -> pa.Array:
    """JSON string literals of texts that need no escaping (all of ours)."""
    return _join('"', values, '"')


def _number(values: np.ndarray) -> pa.Array:
    return pa.array(values).cast(_STR)


def _conform(columns: dict[str, pa.Array], table: str, rows: int) -> pa.Table:
    """A table of exactly the lake table's Arrow schema; absent columns are null."""
    schema = TABLES[table].arrow
    arrays = []
    for field in schema:
        value = columns.get(field.name)
        arrays.append(pa.nulls(rows, field.type) if value is None else value.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of ``counts`` items laid out one after the other: each item's group and
    its position within the group."""
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return group, np.arange(int(counts.sum())) - starts[group]


# -- the generator -------------------------------------------------------------------------


@dataclass(slots=True)
class _People:
    n: int
    arrival: np.ndarray  # days after START
    level: np.ndarray  # 0 casual, 1 regular, 2 power
    country: np.ndarray
    plan: np.ndarray
    signs_up: np.ndarray
    second_device: np.ndarray
    agent_a: np.ndarray
    agent_b: np.ndarray
    propensity: np.ndarray
    anon_a: pa.Array
    anon_b: pa.Array
    users: pa.Array
    emails: pa.Array
    partition: np.ndarray


@dataclass(slots=True)
class _Events:
    """Every event, in time order."""

    ts: np.ndarray  # µs since the epoch
    code: np.ndarray
    person: np.ndarray
    session: np.ndarray
    identified: np.ndarray
    on_b: np.ndarray
    landing: np.ndarray
    product: np.ndarray
    page: np.ndarray


class Builder:
    """Writes the data set into an empty directory (see the module docstring)."""

    def __init__(self, path: Path, spec: Spec, report: Progress) -> None:
        self.path = path
        self.spec = spec
        self.report = report
        self.rng = np.random.default_rng(spec.seed)
        self.end = START + timedelta(days=spec.days)

    def build(self) -> dict[str, Any]:
        started = time.perf_counter()
        settings = Settings(data_dir=self.path)
        from auie import db

        engine = db.open_database(settings.database_url)
        try:
            workspace = TenancyStore(engine).create_workspace("analytics-bench").id
        finally:
            engine.dispose()
        self.report("people and sessions", 0, 3)
        people = self._people()
        self.report("people and sessions", 1, 3)
        sessions = self._sessions(people)
        self.report("people and sessions", 2, 3)
        events = self._events(people, sessions)
        self.report("people and sessions", 3, 3)
        lake = Lake(open_catalog(settings))
        written = self._write_events(lake, workspace, people, events, sessions)
        identities = self._write_identities(lake, workspace, people, events, sessions)
        names = np.bincount(events.code, minlength=len(EVENT_NAMES))
        return {
            "version": VERSION,
            "spec": self.spec.to_dict(),
            "path": str(self.path),
            "workspace": workspace,
            "from": START.isoformat(),
            "to": self.end.isoformat(),
            "events": len(events.ts),
            "people": int(people.n),
            "identified_people": int(people.signs_up.sum()),
            "sessions": int(sessions["count"]),
            "identities": identities,
            "event_counts": {
                EVENT_NAMES[c]: int(n) for c, n in sorted(enumerate(names), key=lambda x: -x[1])
            },
            "data_files": written["files"],
            "bytes": written["bytes"],
            "built": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
        }

    # -- people ------------------------------------------------------------------------

    def _people(self) -> _People:
        spec, rng = self.spec, self.rng
        n, d = spec.people, float(spec.days)
        # Arrivals grow linearly to 1.6x over the period: density ∝ 1 + 0.6 x / d.
        g = 0.6
        u = rng.random(n)
        a = g / (2 * d)
        arrival = (-1 + np.sqrt(1 + 4 * a * u * (d + g * d / 2))) / (2 * a)
        level = _choice(rng, n, [0.55, 0.32, 0.13])
        country = _choice(rng, n, [c[1] for c in COUNTRIES])
        signs_up = rng.random(n) < np.array([0.30, 0.60, 0.85])[level]
        plan_weights = np.array(
            [[0.75, 0.17, 0.06, 0.02], [0.60, 0.24, 0.12, 0.04], [0.35, 0.25, 0.28, 0.12]]
        )
        plan = (rng.random(n)[:, None] > plan_weights[level].cumsum(axis=1)).sum(axis=1)
        second = signs_up & (rng.random(n) < 0.3)
        device_a = _choice(rng, n, [0.55, 0.38, 0.07])
        device_b = np.where(device_a == 0, 1, 0)
        agent_a = self._agents(device_a)
        agent_b = self._agents(device_b)
        propensity = np.array([1.15, 0.75, 0.95])[device_a] * np.array([0.9, 1.05, 1.2, 1.3])[plan]
        users = _text([user_id(i) for i in range(n)])
        emails = _text([email(i) for i in range(n)])
        anon_a, anon_b = uuids(rng, n), uuids(rng, n)
        key = pc.if_else(pa.array(signs_up), users, anon_a).to_pylist()
        partition = np.array([zlib.crc32(k.encode()) % LOG_PARTITIONS for k in key], dtype=np.int32)
        return _People(
            n, arrival, level, country, plan, signs_up, second, agent_a, agent_b, propensity,
            anon_a, anon_b, users, emails, partition,
        )  # fmt: skip

    def _agents(self, device: np.ndarray) -> np.ndarray:
        out = np.empty(len(device), dtype=np.int8)
        for kind in range(len(DEVICES)):
            rows = [i for i, agent in enumerate(_AGENTS) if agent[0] == kind]
            mask = device == kind
            picked = _choice(self.rng, int(mask.sum()), [_AGENTS[i][1] for i in rows])
            out[mask] = np.array(rows)[picked]
        return out

    # -- sessions ----------------------------------------------------------------------

    def _sessions(self, people: _People) -> dict[str, Any]:
        spec, rng = self.spec, self.rng
        stay = np.array([0.60, 0.88, 0.955])[people.level]  # chance of another session
        gap_days = np.array([7.0, 3.0, 1.3])[people.level] * rng.lognormal(0, 0.3, people.n)
        count = np.minimum(rng.geometric(1 - stay), 400)
        person, ordinal = _segments(count)
        gaps = rng.exponential(gap_days[person])
        gaps[ordinal == 0] = 0.0
        total = np.cumsum(gaps)
        first = np.cumsum(count) - count
        day_float = people.arrival[person] + total - total[first][person]
        day = np.floor(day_float).astype(np.int64)
        keep = day < spec.days
        person, day = person[keep], day[keep]
        # Time of day: quiet at night, peaks at lunch and in the evening (UTC, roughly).
        hourly = np.array(
            [2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 9, 10, 9, 8, 8, 8, 9, 11, 12, 12, 10, 7, 4]
        )
        hour = _choice(rng, len(day), hourly)
        second = hour * 3600 + rng.integers(0, 3600, len(day))
        start = int(START.timestamp()) * _US + day * _DAY_US + second * _US
        order = np.lexsort((start, person))
        person, start = person[order], start[order]
        counts = np.bincount(person, minlength=people.n)
        _group, ordinal = _segments(counts)
        # Sign-up: in the first session (60 %) or a later one, if the person has it.
        later = rng.geometric(0.45, people.n)
        signup_at = np.where(rng.random(people.n) < 0.6, 0, later)
        signup_at = np.minimum(signup_at, np.maximum(counts - 1, 0))
        signed = people.signs_up & (counts > 0)
        signup_session = signed[person] & (ordinal == signup_at[person])
        after = signed[person] & (ordinal > signup_at[person])
        on_b = after & people.second_device[person] & (rng.random(len(person)) < 0.35)
        # The first session on the second device starts anonymously, then signs in.
        b_index = np.flatnonzero(on_b)
        first_b = np.zeros(len(person), dtype=bool)
        if len(b_index):
            _, firsts = np.unique(person[b_index], return_index=True)
            first_b[b_index[firsts]] = True
        return {
            "count": len(person),
            "person": person,
            "start": start,
            "signup": signup_session,
            "after": after,
            "on_b": on_b,
            "first_b": first_b,
        }

    # -- events ------------------------------------------------------------------------

    def _events(self, people: _People, sessions: dict[str, Any]) -> _Events:
        spec, rng = self.spec, self.rng
        s_count = sessions["count"]
        person = sessions["person"]
        blocks: list[tuple[np.ndarray, int | np.ndarray, np.ndarray]] = []

        def add(
            session_counts: np.ndarray, code: int | np.ndarray, low: float, high: float
        ) -> None:
            index = np.repeat(np.arange(s_count), np.asarray(session_counts, dtype=np.int64))
            blocks.append((index, code, rng.uniform(low, high, len(index))))

        every = np.ones(s_count, dtype=np.int64)
        # Landing page first (key 0), more pages anywhere.
        blocks.append((np.arange(s_count), PAGE, np.zeros(s_count)))
        add(rng.poisson(1.4, s_count), PAGE, 0.01, 1.0)
        # The funnel, with drop-off at each step.
        boost = people.propensity[person]
        viewed = rng.random(s_count) < 0.72
        added = viewed & (rng.random(s_count) < np.minimum(0.30 * boost, 0.9))
        checkout = added & (rng.random(s_count) < np.minimum(0.55 * boost, 0.95))
        ordered = checkout & (rng.random(s_count) < 0.7)
        add(viewed * (1 + rng.poisson(1.2, s_count)), _CODE["Product Viewed"], 0.02, 0.5)
        add(added * every, _CODE["Product Added"], 0.5, 0.7)
        add(checkout * every, _CODE["Checkout Started"], 0.7, 0.78)
        add(checkout * every, _CODE["Checkout Step Viewed"], 0.78, 0.84)
        add(checkout * (rng.random(s_count) < 0.85), _CODE["Payment Info Entered"], 0.84, 0.9)
        add(ordered * every, _CODE["Checkout Step Completed"], 0.9, 0.94)
        add(ordered * every, _CODE["Order Completed"], 0.96, 0.97)
        # Sign-up (with identify right after) and sign-in on the second device.
        signup = sessions["signup"].astype(np.int64)
        signup_index = np.flatnonzero(signup)
        signup_keys = rng.uniform(0.02, 0.6, len(signup_index))
        blocks.append((signup_index, _CODE["Signed Up"], signup_keys))
        blocks.append((signup_index, IDENTIFY, signup_keys + 1e-6))
        index = np.flatnonzero(sessions["first_b"])
        blocks.append((index, _CODE["Signed In"], np.full(len(index), 0.005)))
        blocks.append((index, IDENTIFY, np.full(len(index), 0.006)))
        # Everything else, as many as make up the requested total (the excess is dropped).
        fixed = sum(len(b[0]) for b in blocks)
        rate = max(0.0, (spec.events - fixed) / s_count) * 1.06 + 0.05
        fillers = rng.poisson(rate, s_count)
        names = list(_FILLER)
        codes = np.array([_CODE[n] for n in names])[
            _choice(rng, int(fillers.sum()), [_FILLER[n] for n in names])
        ]
        add(fillers, codes, 0.01, 1.0)

        session = np.concatenate([b[0] for b in blocks])
        code = np.concatenate(
            [np.broadcast_to(np.asarray(b[1], dtype=np.int16), b[0].shape) for b in blocks]
        )
        order_key = np.concatenate([b[2] for b in blocks])
        is_filler = np.zeros(len(session), dtype=bool)
        is_filler[len(session) - len(codes) :] = True
        order = np.lexsort((order_key, session))
        session, code, order_key, is_filler = (
            session[order], code[order], order_key[order], is_filler[order]
        )  # fmt: skip
        # Time: 30-60 s between events of a session.
        gaps = rng.exponential(40.0, len(session)) + 1.0
        counts = np.bincount(session, minlength=s_count)
        _g, position = _segments(counts)
        gaps[position == 0] = 0.0
        total = np.cumsum(gaps)
        first = np.cumsum(counts) - counts
        offset_s = total - total[first][session]
        ts = sessions["start"][session] + (offset_s * _US).astype(np.int64)
        keep = ts < int(self.end.timestamp()) * _US
        excess = int(keep.sum()) - spec.events
        if excess < 0:
            raise RuntimeError(f"generated {keep.sum():,} events, fewer than {spec.events:,}")
        droppable = np.flatnonzero(keep & is_filler)
        keep[rng.choice(droppable, excess, replace=False)] = False
        session, code, order_key, ts = session[keep], code[keep], order_key[keep], ts[keep]
        person = sessions["person"][session]
        # Identified: after the sign-up session, or in it from the sign-up on; on the
        # second device from the sign-in on.
        signup_key = np.full(s_count, 2.0)
        signup_key[signup_index] = signup_keys
        identified = sessions["after"][session] | (
            sessions["signup"][session] & (order_key >= signup_key[session])
        )
        identified &= ~(sessions["first_b"][session] & (order_key < 0.005))
        on_b = sessions["on_b"][session]
        landing = np.zeros(len(ts), dtype=bool)
        counts = np.bincount(session, minlength=s_count)
        landing[(np.cumsum(counts) - counts)[counts > 0]] = True
        # Products: popular ones more often (a long tail); a page gets a page kind.
        product = (rng.pareto(1.2, len(ts)) * 50).astype(np.int64) % PRODUCTS
        page = _choice(rng, len(ts), [p[2] for p in _PAGES])
        page[landing] = np.where(rng.random(int(landing.sum())) < 0.5, 0, page[landing])
        order = np.argsort(ts, kind="stable")
        return _Events(
            ts[order],
            code[order].astype(np.int8),
            person[order].astype(np.int32),
            session[order].astype(np.int32),
            identified[order],
            on_b[order],
            landing[order],
            product[order].astype(np.int32),
            page[order].astype(np.int8),
        )

    # -- writing -----------------------------------------------------------------------

    def _write_events(
        self,
        lake: Lake,
        workspace: str,
        people: _People,
        events: _Events,
        sessions: dict[str, Any],
    ) -> dict[str, int]:
        table = lake.table(workspace, EVENTS)
        partition = people.partition[events.person]
        offsets = np.zeros(len(events.ts), dtype=np.int64)
        for part in range(LOG_PARTITIONS):
            mask = partition == part
            offsets[mask] = np.arange(int(mask.sum()))
        day = (events.ts - int(START.timestamp()) * _US) // _DAY_US
        bounds = np.searchsorted(day, np.arange(self.spec.days + 1))
        days = self.spec.days
        self.report("events (one append per day)", 0, days)
        done: dict[int, int] = {}
        for d in range(days):
            lo, hi = int(bounds[d]), int(bounds[d + 1])
            data = self._day(people, events, lo, hi, partition, offsets)
            covered = {
                p: int(offsets[lo:hi][partition[lo:hi] == p].max(initial=-1)) + 1
                for p in range(LOG_PARTITIONS)
            }
            done = {p: max(done.get(p, 0), o) for p, o in covered.items()}
            table.append(data, snapshot_properties=offsets_property({EVENTS_TOPIC: done}))
            self.report("events (one append per day)", d + 1, days)
        files = list(table.scan().plan_files())
        return {"files": len(files), "bytes": sum(t.file.file_size_in_bytes for t in files)}

    def _day(  # noqa: PLR0917 - one day's slice of the generated columns
        self,
        people: _People,
        events: _Events,
        lo: int,
        hi: int,
        partition: np.ndarray,
        offsets: np.ndarray,
    ) -> pa.Table:
        rng = self.rng
        n = hi - lo
        sl = slice(lo, hi)
        code, who = events.code[sl], events.person[sl]
        identified, on_b = events.identified[sl], events.on_b[sl]
        who_idx = pa.array(who)
        ts_us = events.ts[sl]
        sent = ts_us + rng.integers(5_000, 900_000, n)
        received = sent + rng.integers(40_000, 400_000, n)
        agent = np.where(on_b, people.agent_b[who], people.agent_a[who])
        agents = [pa.array([a[k] for a in _AGENTS], _STR) for k in range(2, 9)]
        agent_idx = pa.array(agent)
        browser, browser_v, os_name, os_v, brand, model, user_agent = (
            a.take(agent_idx) for a in agents
        )
        device = _text(list(DEVICES)).take(pa.array(np.array([a[0] for a in _AGENTS])[agent]))
        country_idx = pa.array(people.country[who])
        country = _text([c[0] for c in COUNTRIES]).take(country_idx)
        locale = _text([c[2] for c in COUNTRIES]).take(country_idx)
        timezone = _text([c[3] for c in COUNTRIES]).take(country_idx)
        plan = _text(list(PLANS)).take(pa.array(people.plan[who]))
        users = pc.if_else(pa.array(identified), people.users.take(who_idx), pa.nulls(n, _STR))
        anon = pc.if_else(pa.array(on_b), people.anon_b.take(who_idx), people.anon_a.take(who_idx))
        kind = np.where(code == PAGE, 0, np.where(code == IDENTIFY, 1, 2))
        is_page, is_identify, is_track = (pa.array(kind == k) for k in range(3))
        type_ = pc.if_else(
            is_page, pa.scalar("page", _STR), pc.if_else(is_identify, _s("identify"), _s("track"))
        )
        event = pc.if_else(is_track, _text(list(TRACK)).take(pa.array(np.minimum(code, PAGE - 1))),
                           pa.nulls(n, _STR))  # fmt: skip
        # Where the event happened: a page kind for pages, the product page for product
        # events, checkout for order events, search for searches.
        product = events.product[sl]
        product_code = _join("P", _number(product + 10_000))
        page_kind = events.page[sl].astype(np.int64)
        is_product = np.isin(code, list(_PRODUCT_EVENTS))
        is_order = np.isin(code, list(_ORDER_EVENTS))
        is_search = code == _CODE["Products Searched"]
        category_idx = pa.array(product % len(_CATEGORIES))
        category = _text(list(_CATEGORIES)).take(category_idx)
        base_path = _text([p[1] for p in _PAGES]).take(pa.array(page_kind))
        path = pc.if_else(
            pa.array((page_kind == 2) | is_product),
            _join("/p/", product_code),
            pc.if_else(
                pa.array(page_kind == 1),
                _join("/c/", pc.utf8_lower(category)),
                base_path,
            ),
        )
        path = pc.if_else(pa.array(is_order), pa.scalar("/checkout", _STR), path)
        path = pc.if_else(pa.array(is_search), pa.scalar("/search", _STR), path)
        title = _text([p[0] for p in _PAGES]).take(pa.array(page_kind))
        title = pc.if_else(pa.array(is_product), pa.scalar("Product", _STR), title)
        title = pc.if_else(pa.array(is_order), pa.scalar("Checkout", _STR), title)
        url = _join(f"https://{HOST}", path)
        landing = events.landing[sl]
        referrer = pc.if_else(
            pa.array(landing),
            _text(["https://www.google.com/", "https://www.facebook.com/", None, None]).take(
                pa.array(rng.integers(0, 4, n))
            ),
            pa.scalar(f"https://{HOST}/", _STR),
        )
        tagged = landing & (rng.random(n) < 0.35)
        utm_idx = pa.array(rng.integers(0, len(_UTM), n))
        utm = [
            pc.if_else(pa.array(tagged), _text([u[k] for u in _UTM]).take(utm_idx),
                       pa.nulls(n, _STR))
            for k in range(3)
        ]  # fmt: skip
        # Properties (JSON text): country always, plan once identified, per kind fields.
        supers = _join(
            '"country":',
            _quoted(country),
            pc.if_else(pa.array(identified), _join(',"plan":', _quoted(plan)), _s("")),
        )
        prices = np.round(np.exp(2.5 + (np.arange(PRODUCTS) * 7919 % 1000) / 400), 2)
        price = prices[product]
        quantity = 1 + rng.poisson(0.3, n)
        order_id = _join("O", _number((events.session[sl].astype(np.int64) * 7) + 1_000_000))
        page_props = _join(
            '{"path":', _quoted(path), ',"referrer":', pc.fill_null(_quoted(referrer), _s("null")),
            ',"title":', _quoted(title), ',"url":', _quoted(url), ",", supers, "}",
        )  # fmt: skip
        product_props = _join(
            '{"product_id":', _quoted(product_code),
            ',"sku":', _quoted(_join("SKU-", product_code)),
            ',"category":', _quoted(category),
            ',"name":', _quoted(_join(category, " ", product_code)),
            ',"price":', _number(price), ',"quantity":', _number(quantity),
            ',"currency":"USD",', supers, "}",
        )  # fmt: skip
        revenue = np.round(price * quantity, 2)
        order_props = _join(
            '{"order_id":', _quoted(order_id), ',"revenue":', _number(revenue),
            ',"currency":"USD","products":', _number(quantity), ",", supers, "}",
        )  # fmt: skip
        search_props = _join(
            '{"query":',
            _quoted(_text(list(_SEARCHES)).take(pa.array(rng.integers(0, len(_SEARCHES), n)))),
            ",",
            supers,
            "}",
        )
        plain_props = _join("{", supers, "}")
        properties = pc.if_else(
            is_page,
            page_props,
            pc.if_else(
                pa.array(is_product),
                product_props,
                pc.if_else(
                    pa.array(is_order),
                    order_props,
                    pc.if_else(pa.array(is_search), search_props, plain_props),
                ),
            ),
        )
        properties = pc.if_else(is_identify, pa.nulls(n, _STR), properties)
        traits = pc.if_else(
            is_identify,
            _join(
                '{"email":', _quoted(people.emails.take(who_idx)), ',"plan":', _quoted(plan),
                ',"country":', _quoted(country), "}",
            ),
            pa.nulls(n, _STR),
        )  # fmt: skip
        ip_octets = (who.astype(np.int64) * 2654435761) % (2**24)
        ip = _join(
            _number(ip_octets // 65536 % 200 + 20), ".", _number(ip_octets // 256 % 256), ".",
            _number(ip_octets % 256), ".0",
        )  # fmt: skip
        context = _join(
            '{"ip":', _quoted(ip),
            ',"library":{"name":"analytics.js","version":"5.2.1"},"locale":', _quoted(locale),
            ',"page":{"path":', _quoted(path), ',"referrer":',
            pc.fill_null(_quoted(referrer), _s("null")), ',"title":', _quoted(title),
            ',"url":', _quoted(url), '},"timezone":', _quoted(timezone),
            ',"userAgent":', _quoted(user_agent), "}",
        )  # fmt: skip
        page_name = pc.if_else(is_page, title, pa.nulls(n, _STR))
        columns: dict[str, pa.Array] = {
            "message_id": uuids(rng, n),
            "type": type_,
            "event": event,
            "name": page_name,
            "user_id": users,
            "anonymous_id": anon,
            "source_id": pa.array(["src_web"] * n, _STR),
            "timestamp": pa.array(ts_us, _TS),
            "original_timestamp": pa.array(ts_us, _TS),
            "sent_at": pa.array(sent, _TS),
            "received_at": pa.array(received, _TS),
            "properties": properties,
            "traits": traits,
            "context": context,
            "context_ip": ip,
            "context_user_agent": user_agent,
            "context_locale": locale,
            "context_timezone": timezone,
            "context_library_name": pa.array(["analytics.js"] * n, _STR),
            "context_library_version": pa.array(["5.2.1"] * n, _STR),
            "context_page_url": url,
            "context_page_path": path,
            "context_page_referrer": referrer,
            "context_page_title": title,
            "browser_name": browser,
            "browser_version": browser_v,
            "os_name": os_name,
            "os_version": os_v,
            "device_type": device,
            "device_brand": brand,
            "device_model": model,
            "page_host": pa.array([HOST] * n, _STR),
            "page_path": path,
            "utm_source": utm[0],
            "utm_medium": utm[1],
            "utm_campaign": utm[2],
            "log_partition": pa.array(partition[sl], pa.int32()),
            "log_offset": pa.array(offsets[sl], pa.int64()),
        }
        return _conform(columns, EVENTS, n)

    def _write_identities(
        self,
        lake: Lake,
        workspace: str,
        people: _People,
        events: _Events,
        sessions: dict[str, Any],
    ) -> int:
        """What the processor records: an identifier's profile when first seen and every
        move to another profile, at the time the event that caused it arrived."""
        self.report("identities", 0, 1)
        n = people.n
        ts = events.ts

        # First event of each person on device A / device B, and their first identified
        # events (sign-up, then sign-in on device B).
        def first(mask: np.ndarray) -> np.ndarray:
            found = np.full(n, -1, dtype=np.int64)
            index = np.flatnonzero(mask)[::-1]  # last write wins: the earliest event
            found[events.person[index]] = ts[index]
            return found

        seen_a = first(~events.on_b)
        seen_b = first(events.on_b)
        joined_a = first(events.identified & ~events.on_b)
        joined_b = first(events.identified & events.on_b)
        delay = 250_000  # µs from the event to its processing
        rows: dict[str, list[Any]] = {"id_type": [], "id_value": [], "profile_id": [], "at": []}
        anon_a = people.anon_a.to_pylist()
        anon_b = people.anon_b.to_pylist()

        def put(kind: str, value: str, pid: str, at: int) -> None:
            rows["id_type"].append(kind)
            rows["id_value"].append(value)
            rows["profile_id"].append(pid)
            rows["at"].append(at + delay)

        for i in range(n):
            user_pid = profile_id(workspace, node("user_id", user_id(i)))
            if seen_a[i] >= 0:
                first_a = node("anonymous_id", anon_a[i])
                put("anonymous_id", anon_a[i], profile_id(workspace, first_a), int(seen_a[i]))
            if joined_a[i] >= 0:
                at = int(joined_a[i])
                put("user_id", user_id(i), user_pid, at)
                put("email", email(i), user_pid, at)
                put("anonymous_id", anon_a[i], user_pid, at)
            if seen_b[i] >= 0:
                first_b = node("anonymous_id", anon_b[i])
                put("anonymous_id", anon_b[i], profile_id(workspace, first_b), int(seen_b[i]))
                if joined_b[i] >= 0:
                    put("anonymous_id", anon_b[i], user_pid, int(joined_b[i]))
        count = len(rows["at"])
        data = _conform(
            {
                "id_type": _text(rows["id_type"]),
                "id_value": _text(rows["id_value"]),
                "profile_id": _text(rows["profile_id"]),
                "changed_at": pa.array(np.array(rows["at"], dtype=np.int64), _TS),
            },
            IDENTITIES,
            count,
        )
        data = data.sort_by("changed_at")
        lake.table(workspace, IDENTITIES).append(data)
        self.report("identities", 1, 1)
        return count
