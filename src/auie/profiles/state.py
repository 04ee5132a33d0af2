"""What AUIE knows about one identifier, as a state that merges in any order.

Every event is attributed to one identifier (its ``userId``, else its ``anonymousId``) and
folded into that identifier's :class:`NodeState`. A profile's traits and computed traits
are the merge of its identifiers' states. Every part merges commutatively and
associatively, so the result depends only on the *set* of events, never on the order in
which they arrive:

* traits: last write wins by event time, ties broken by ``messageId``. An identifier keeps
  at most ``max_traits`` traits: the most recently written ones, by the time and
  ``messageId`` of their latest write, then by name (the later in the alphabet first), so
  the traits kept are the same in any arrival order; merged states keep the same bound.
  Pinned traits (the identifier and PII traits: ``email``, ``profiles.id_traits``,
  ``privacy.pii_fields``) are always kept and do not use up the bound;
* first/last seen: min/max of event time;
* counts by event name: sums. An identifier counts at most ``max_event_names`` track event
  names by name: beyond that, the names kept are the alphabetically first (whatever the
  order they arrived in), and the events of the others are counted together as *other
  events*. Event types (``page``, ``identify``...) and the events of declared computed
  traits are always counted by name. Merged states keep the same bound;
* sessions: event-time intervals, joined when at most the session gap apart (joining
  intervals gives the same sessions as splitting all the events at once). An identifier
  keeps its latest ``max_sessions`` intervals; older ones are *closed*: only counted, with
  the end of the latest. An event at or before that end (plus the gap) is taken to belong
  to a closed session and adds no interval, so the count is exact in any arrival order
  unless an event arrives after a session at or after its time was closed. Merged states
  add their closed counts (a visit closed by one identifier and held by another counts
  once per session each of them has in it);
* last page: the page event with the latest time;
* declared computed traits (``count``, ``sum``, ``min``, ``max``, ``first``, ``last`` of a
  property of an event): each kept in a mergeable form; sums are exact decimals.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from auie.events import format_time
from auie.privacy.consent import PURPOSES
from auie.privacy.consent import from_event as consent_from_event

_DECIMALS = Context(prec=60)
#: Events of this type carry only a consent statement (``PUT /v1/privacy/consent/...``).
CONSENT_TYPE = "consent"
_CONSENT_HISTORY = 200
#: Session intervals an identifier keeps by default (``profiles.max_sessions``).
DEFAULT_MAX_SESSIONS = 100
#: Track event names an identifier counts by name by default (``profiles.max_event_names``).
DEFAULT_MAX_EVENT_NAMES = 500
#: Traits an identifier keeps by default (``profiles.max_traits``).
DEFAULT_MAX_TRAITS = 1000
#: Event types, counted under their type's name (never bounded).
_TYPES = frozenset({"page", "screen", "identify", "group", "alias"})
ComputedKind = Literal["count", "sum", "min", "max", "first", "last"]

#: (event time ms, messageId): the order "last write wins" uses.
Stamp = tuple[int, str]


@dataclass(frozen=True, slots=True)
class ComputedTrait:
    """A declared computed trait, e.g. ``orders = count of "Order Completed"``."""

    name: str
    kind: ComputedKind
    event: str | None = None
    property: str | None = None


@dataclass(slots=True)
class NodeState:
    """Mergeable facts about one identifier (see the module docstring)."""

    traits: dict[str, tuple[Any, Stamp]] = field(default_factory=dict)
    first_seen: int | None = None
    last_seen: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    sessions: list[list[int]] = field(default_factory=list)
    last_page: tuple[dict[str, Any], Stamp] | None = None
    computed: dict[str, Any] = field(default_factory=dict)
    #: Consent per purpose: (granted, stamp), last statement by event time wins.
    consent: dict[str, tuple[bool, Stamp]] = field(default_factory=dict)
    #: Every consent statement: [event time ms, messageId, purpose, granted, source].
    consent_history: list[list[Any]] = field(default_factory=list)
    #: Sessions closed (counted, no longer kept as intervals) and the end of the latest.
    closed_sessions: int = 0
    closed_until: int | None = None
    #: Events counted in no name of ``counts`` (names beyond the bound).
    other_events: int = 0
    #: The last of the kept bounded names once the bound dropped some (not stored: found
    #: again at the next drop), so an event of a dropped name costs one comparison.
    last_kept: str | None = field(default=None, compare=False, repr=False)
    #: Once the trait bound dropped some (not stored: built again at the next drop): a heap
    #: of (stamp, name) of the traits that are not pinned, with stale entries of rewritten
    #: ones, so a write at the bound drops the lowest in O(log n) instead of a sort.
    trait_heap: list[tuple[Stamp, str]] | None = field(default=None, compare=False, repr=False)

    def current_consent(self) -> dict[str, bool]:
        """Consent per purpose as it stands ({purpose: granted})."""
        return {purpose: granted for purpose, (granted, _stamp) in self.consent.items()}

    # -- serialisation -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "t": {k: [v, list(s)] for k, (v, s) in self.traits.items()},
            "f": self.first_seen,
            "l": self.last_seen,
            "c": self.counts,
            "s": self.sessions,
            "p": [self.last_page[0], list(self.last_page[1])] if self.last_page else None,
            "x": self.computed,
            **(
                {
                    "k": {p: [g, list(st)] for p, (g, st) in self.consent.items()},
                    "h": self.consent_history,
                }
                if self.consent or self.consent_history
                else {}
            ),
            **({"n": self.closed_sessions, "u": self.closed_until} if self.closed_sessions else {}),
            **({"o": self.other_events} if self.other_events else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeState:
        page = data.get("p")
        return cls(
            traits={k: (v, (s[0], s[1])) for k, (v, s) in data.get("t", {}).items()},
            first_seen=data.get("f"),
            last_seen=data.get("l"),
            counts=dict(data.get("c", {})),
            sessions=[list(x) for x in data.get("s", [])],
            last_page=(page[0], (page[1][0], page[1][1])) if page else None,
            computed=dict(data.get("x", {})),
            consent={p: (bool(g), (st[0], st[1])) for p, (g, st) in data.get("k", {}).items()},
            consent_history=[list(h) for h in data.get("h", [])],
            closed_sessions=int(data.get("n", 0)),
            closed_until=data.get("u"),
            other_events=int(data.get("o", 0)),
        )

    def encode(self) -> bytes:
        """``to_json()`` as JSON text, byte for byte, without building it: msgspec writes
        the (value, stamp) tuples as the arrays ``to_json`` makes of them."""
        data: dict[str, Any] = {
            "t": self.traits,
            "f": self.first_seen,
            "l": self.last_seen,
            "c": self.counts,
            "s": self.sessions,
            "p": self.last_page,
            "x": self.computed,
        }
        if self.consent or self.consent_history:
            data["k"] = self.consent
            data["h"] = self.consent_history
        if self.closed_sessions:
            data["n"] = self.closed_sessions
            data["u"] = self.closed_until
        if self.other_events:
            data["o"] = self.other_events
        return _encode(data)

    @classmethod
    def decode(cls, text: str | bytes) -> NodeState:
        """``from_json`` of JSON text, decoded by msgspec straight into the state's tuples
        (faster: the profile store reads a state per event). Text of
        another shape (an older writer, NaN from ``json.dumps``) takes ``from_json``."""
        try:
            stored = _decode_stored(text)
        except msgspec.DecodeError:  # json.dumps also writes NaN and Infinity
            return cls.from_json(json.loads(text))
        except msgspec.ValidationError:
            return cls.from_json(msgspec.json.decode(text))
        return cls(  # positional: faster, and in field order
            stored.traits,
            stored.first_seen,
            stored.last_seen,
            stored.counts,
            stored.sessions,
            stored.last_page or None,
            stored.computed,
            stored.consent,
            stored.consent_history,
            stored.closed_sessions,
            stored.closed_until,
            stored.other_events,
        )


class _Stored(
    msgspec.Struct,
    rename={
        "traits": "t",
        "first_seen": "f",
        "last_seen": "l",
        "counts": "c",
        "sessions": "s",
        "last_page": "p",
        "computed": "x",
        "consent": "k",
        "consent_history": "h",
        "closed_sessions": "n",
        "closed_until": "u",
        "other_events": "o",
    },
):
    """The JSON form of a :class:`NodeState` (see ``to_json``), typed for msgspec."""

    traits: dict[str, tuple[Any, tuple[Any, Any]]] = {}
    first_seen: Any = None
    last_seen: Any = None
    counts: dict[str, Any] = {}
    sessions: list[list[Any]] = []
    last_page: tuple[Any, tuple[Any, Any]] | None = None
    computed: dict[str, Any] = {}
    consent: dict[str, tuple[bool, tuple[Any, Any]]] = {}
    consent_history: list[list[Any]] = []
    closed_sessions: int = 0
    closed_until: Any = None
    other_events: int = 0


_encode = msgspec.json.Encoder().encode
_decode_stored = msgspec.json.Decoder(_Stored).decode


def _later(a: Stamp, b: Stamp) -> bool:
    return a > b


#: Consent per purpose as a node holds it: (granted, stamp of the statement).
Consent = dict[str, tuple[bool, Stamp]]


def _overrides(statement: tuple[bool, Stamp], current: tuple[bool, Stamp]) -> bool:
    """Whether a consent statement replaces the current one: it is later by event time and
    ``messageId``; of two with the same stamp, the refusal (so the result never depends on
    which was seen first)."""
    return statement[1] > current[1] or (statement[1] == current[1] and not statement[0])


def merge_consent(into: Consent, other: Mapping[str, tuple[bool, Stamp]]) -> Consent:
    """Fold ``other``'s consent into ``into`` (in place, and returned): per purpose, the
    latest statement wins, as in :meth:`StateFolder.merge`."""
    for purpose, statement in other.items():
        current = into.get(purpose)
        if current is None or _overrides(statement, current):
            into[purpose] = statement
    return into


_decode_consent = msgspec.json.Decoder(dict[str, tuple[bool, tuple[Any, Any]]]).decode


def encode_consent(consent: Mapping[str, tuple[bool, Stamp]]) -> str | None:
    """A node's consent as the profile store's ``consent`` column holds it (None: none)."""
    return _encode(consent).decode() if consent else None


def decode_consent(text: str | bytes) -> Consent:
    return _decode_consent(text)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def add_session_time(sessions: list[list[int]], ts: int, gap_ms: int) -> None:
    """Insert one event time into sorted, disjoint session intervals."""
    add_interval(sessions, [ts, ts], gap_ms)


def add_interval(sessions: list[list[int]], interval: Sequence[int], gap_ms: int) -> None:
    """Insert an interval, joining every interval at most ``gap_ms`` away from it."""
    start, end = interval[0], interval[1]
    index = bisect.bisect_left(sessions, [start, start])
    lo = index
    while lo > 0 and sessions[lo - 1][1] + gap_ms >= start:
        lo -= 1
    hi = index
    while hi < len(sessions) and sessions[hi][0] - gap_ms <= end:
        hi += 1
    if lo < hi:
        start = min(start, sessions[lo][0])
        end = max(end, sessions[hi - 1][1])
    sessions[lo:hi] = [[start, end]]


def _least(a: Decimal, b: Decimal) -> Decimal:
    """The smaller; of equal numbers spelled apart (``0`` and ``0.0``) always the same one
    (Decimal's total order), so the stored text does not depend on the arrival order."""
    return a if a.compare_total(b) <= 0 else b


def _greatest(a: Decimal, b: Decimal) -> Decimal:
    """The larger; of equal numbers spelled apart always the same one (see :func:`_least`)."""
    return a if a.compare_total(b) >= 0 else b


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


class StateFolder:
    """Folds events into node states and merges states, under one configuration."""

    def __init__(
        self,
        session_gap_ms: int,
        computed: Sequence[ComputedTrait] = (),
        consent_categories: Mapping[str, str] | None = None,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_event_names: int = DEFAULT_MAX_EVENT_NAMES,
        max_traits: int = DEFAULT_MAX_TRAITS,
        pinned_traits: Sequence[str] = ("email",),
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if max_event_names < 1:
            raise ValueError("max_event_names must be at least 1")
        if max_traits < 1:
            raise ValueError("max_traits must be at least 1")
        self.gap = session_gap_ms
        self.max_sessions = max_sessions
        self.max_event_names = max_event_names
        self.max_traits = max_traits
        self.pinned_traits = frozenset(pinned_traits)
        self.computed = tuple(computed)
        #: Names always counted by name: the types and the declared traits' events.
        self.unbounded = _TYPES | {t.event for t in self.computed if t.event is not None}
        self.consent_categories = dict(consent_categories or {})

    # -- events -----------------------------------------------------------------------

    def apply(self, state: NodeState, event: Mapping[str, Any], ts: int) -> None:
        """Fold one normalised event (with its event time in ms) into a state."""
        stamp: Stamp = (ts, str(event.get("messageId", "")))
        kind = event.get("type")
        if kind == CONSENT_TYPE:  # a statement through the privacy API: consent only
            self._consent(state, event.get("consent") or {}, stamp, "api")
            return
        if self.consent_categories:
            stated = consent_from_event(event, self.consent_categories)
            if stated:
                self._consent(state, stated, stamp, "event")
        state.first_seen = ts if state.first_seen is None else min(state.first_seen, ts)
        state.last_seen = ts if state.last_seen is None else max(state.last_seen, ts)
        name = event.get("event") if kind == "track" else kind
        key = str(name)
        counts = state.counts
        count = counts.get(key)
        if count is not None:
            counts[key] = count + 1
        elif len(counts) < self.max_event_names or key in self.unbounded:
            counts[key] = 1
        else:
            self._count_new_name(state, key)
        self._session_time(state, ts)
        if kind == "identify":
            self._write_traits(state, event.get("traits") or {}, stamp)
        elif kind == "page":
            page = _page_of(event)
            if state.last_page is None or _later(stamp, state.last_page[1]):
                state.last_page = (page, stamp)
        for trait in self.computed:
            self._computed(state, trait, event, key, stamp)

    def _count_new_name(self, state: NodeState, key: str) -> None:
        """Count the first event of a name when the state is at its bound: the name is
        kept if it sorts before a kept one, whose events then become other events."""
        if state.last_kept is not None and key > state.last_kept:
            state.other_events += 1
            return
        state.counts[key] = 1
        self._trim_names(state)

    def _trim_names(self, state: NodeState) -> None:
        """Keep the alphabetically first ``max_event_names`` bounded names; count the
        others' events as other events (an older writer's state may hold more)."""
        counts, unbounded = state.counts, self.unbounded
        bounded = [name for name in counts if name not in unbounded]
        excess = len(bounded) - self.max_event_names
        if excess <= 0:
            return
        if excess == 1:
            last = max(bounded)
            state.other_events += counts.pop(last)
            state.last_kept = max(name for name in bounded if name != last)
            return
        ordered = sorted(bounded)
        for name in ordered[self.max_event_names :]:
            state.other_events += counts.pop(name)
        state.last_kept = ordered[self.max_event_names - 1]

    def _write_traits(self, state: NodeState, traits: Mapping[str, Any], stamp: Stamp) -> None:
        """An identify's traits, each where it is later than the one held."""
        held, heap = state.traits, state.trait_heap
        for trait, value in traits.items():
            current = held.get(trait)
            if current is None or _later(stamp, current[1]):
                held[trait] = (value, stamp)
                if heap is not None and trait not in self.pinned_traits:
                    heapq.heappush(heap, (stamp, trait))
        if len(held) > self.max_traits:
            self._trim_traits(state)

    def _trim_traits(self, state: NodeState) -> None:
        """Keep the pinned traits and the ``max_traits`` most recently written others (see
        the module docstring): the kept set is the top of one total order, so trimming in
        any order, or after any grouping of merges, keeps the same traits."""
        traits, pinned = state.traits, self.pinned_traits
        excess = self._excess_traits(traits)
        if excess <= 0:
            return
        heap = state.trait_heap
        if heap is None or len(heap) > 2 * len(traits) + 64:  # first drop, or mostly stale
            heap = [(held[1], name) for name, held in traits.items() if name not in pinned]
            heapq.heapify(heap)
            state.trait_heap = heap
        while excess > 0:
            stamp, name = heapq.heappop(heap)
            held = traits.get(name)
            if held is not None and held[1] == stamp:  # not a rewritten trait's old entry
                del traits[name]
                excess -= 1

    def _excess_traits(self, traits: Mapping[str, Any]) -> int:
        """How many more than ``max_traits`` traits ``traits`` hold besides the pinned."""
        return len(traits) - sum(name in traits for name in self.pinned_traits) - self.max_traits

    def _session_time(self, state: NodeState, ts: int) -> None:
        """Add an event time to the state's sessions; close the oldest beyond the bound.
        Kept intervals start more than the gap after the latest closed session (as long as
        the gap setting is unchanged; a larger one may count a joined visit twice)."""
        gap, sessions, until = self.gap, state.sessions, state.closed_until
        if until is not None and ts <= until + gap:  # a closed session's: already counted
            if ts > until:  # it extends the latest closed session, maybe up to kept ones
                while sessions and sessions[0][0] - gap <= ts:
                    ts = max(ts, sessions.pop(0)[1])
                state.closed_until = ts
            return
        add_session_time(sessions, ts, gap)
        excess = len(sessions) - self.max_sessions
        if excess > 0:
            last = sessions[excess - 1][1]
            del sessions[:excess]
            state.closed_sessions += excess
            state.closed_until = _latest(until, last)

    def _computed(
        self,
        state: NodeState,
        trait: ComputedTrait,
        event: Mapping[str, Any],
        name: str,
        stamp: Stamp,
    ) -> None:
        if trait.event is not None and trait.event != name:
            return
        if trait.kind == "count":
            state.computed[trait.name] = int(state.computed.get(trait.name, 0)) + 1
            return
        value = (event.get("properties") or {}).get(trait.property or "")
        if value is None:
            return
        if trait.kind in ("first", "last"):
            current = state.computed.get(trait.name)
            if current is None or (
                _later(stamp, tuple(current[1]))
                if trait.kind == "last"
                else _later(tuple(current[1]), stamp)
            ):
                state.computed[trait.name] = [value, list(stamp)]
            return
        number = _number(value)
        if number is None:
            return
        current_text = state.computed.get(trait.name)
        current = Decimal(current_text) if current_text is not None else None
        if trait.kind == "sum":
            total = number if current is None else _DECIMALS.add(current, number)
            state.computed[trait.name] = str(total)
        elif trait.kind == "min":
            state.computed[trait.name] = str(number if current is None else _least(current, number))
        elif trait.kind == "max":
            state.computed[trait.name] = str(
                number if current is None else _greatest(current, number)
            )

    @staticmethod
    def _consent(state: NodeState, stated: Mapping[str, Any], stamp: Stamp, source: str) -> None:
        for purpose, granted in stated.items():
            if purpose not in PURPOSES or not isinstance(granted, bool):
                continue
            current = state.consent.get(purpose)
            if current is None or _overrides((granted, stamp), current):
                state.consent[purpose] = (granted, stamp)
            entry = [stamp[0], stamp[1], purpose, granted, source]
            if entry not in state.consent_history:
                state.consent_history.append(entry)
        state.consent_history.sort(key=lambda h: (h[0], h[1], h[2]))
        del state.consent_history[:-_CONSENT_HISTORY]

    # -- merging ------------------------------------------------------------------------

    def merge(self, into: NodeState, other: NodeState) -> None:
        """Fold ``other`` into ``into`` (commutative and associative)."""
        for name, (value, stamp) in other.traits.items():
            current = into.traits.get(name)
            if current is None or _later(stamp, current[1]):
                into.traits[name] = (value, stamp)
        into.trait_heap = None  # the merge wrote traits without it
        if len(into.traits) > self.max_traits:
            self._trim_traits(into)
        into.first_seen = _earliest(into.first_seen, other.first_seen)
        into.last_seen = _latest(into.last_seen, other.last_seen)
        for event_name, count in other.counts.items():
            into.counts[event_name] = into.counts.get(event_name, 0) + count
        into.other_events += other.other_events
        if len(into.counts) > self.max_event_names:
            self._trim_names(into)
        self._merge_sessions(into, other)
        if other.last_page is not None and (
            into.last_page is None or _later(other.last_page[1], into.last_page[1])
        ):
            into.last_page = other.last_page
        for trait in self.computed:
            self._merge_computed(into, other, trait)
        merge_consent(into.consent, other.consent)
        if other.consent_history:
            seen = {tuple(h) for h in into.consent_history}
            into.consent_history.extend(h for h in other.consent_history if tuple(h) not in seen)
            into.consent_history.sort(key=lambda h: (h[0], h[1], h[2]))
            del into.consent_history[:-_CONSENT_HISTORY]

    def _merge_sessions(self, into: NodeState, other: NodeState) -> None:
        """Kept intervals joined, closed sessions added (not bounded again: a merge is
        read, not stored)."""
        for interval in other.sessions:
            add_interval(into.sessions, interval, self.gap)
        if other.closed_sessions:
            into.closed_sessions += other.closed_sessions
            into.closed_until = _latest(into.closed_until, other.closed_until)

    def is_merged(self, state: NodeState) -> bool:
        """Whether ``state`` is what merging it into an empty state gives (for the facts
        the presentation reads): its sessions are sorted and further apart than the gap
        (they are unless the gap setting changed since they were written), its event
        names, traits and consent history are within their bounds, and the history is in
        order."""
        counts, sessions, gap = state.counts, state.sessions, self.gap
        if self._excess_traits(state.traits) > 0:  # an older writer's, or a lowered bound
            return False
        if len(counts) > self.max_event_names and (
            sum(name not in self.unbounded for name in counts) > self.max_event_names
        ):  # an older writer's state: more names than the bound
            return False
        if any(s[0] > s[1] for s in sessions) or any(
            later[0] - earlier[1] <= gap for earlier, later in itertools.pairwise(sessions)
        ):
            return False
        history = state.consent_history
        return len(history) <= _CONSENT_HISTORY and all(
            (a[0], a[1], a[2]) <= (b[0], b[1], b[2]) for a, b in itertools.pairwise(history)
        )

    def consent(self, state: NodeState) -> dict[str, Any]:
        """Current consent ({purpose: bool}) and its history, for the API."""
        return {
            "current": {p: g for p, (g, _stamp) in sorted(state.consent.items())},
            "history": [
                {
                    "timestamp": format_time(datetime.fromtimestamp(h[0] / 1000, UTC)),
                    "messageId": h[1],
                    "purpose": h[2],
                    "granted": h[3],
                    "source": h[4],
                }
                for h in state.consent_history
            ],
        }

    @staticmethod
    def _merge_computed(into: NodeState, other: NodeState, trait: ComputedTrait) -> None:
        theirs = other.computed.get(trait.name)
        if theirs is None:
            return
        ours = into.computed.get(trait.name)
        if ours is None:
            into.computed[trait.name] = theirs
        elif trait.kind == "count":
            into.computed[trait.name] = int(ours) + int(theirs)
        elif trait.kind == "sum":
            into.computed[trait.name] = str(_DECIMALS.add(Decimal(ours), Decimal(theirs)))
        elif trait.kind == "min":
            into.computed[trait.name] = str(_least(Decimal(ours), Decimal(theirs)))
        elif trait.kind == "max":
            into.computed[trait.name] = str(_greatest(Decimal(ours), Decimal(theirs)))
        elif trait.kind in ("first", "last"):
            newer = tuple(theirs[1]) > tuple(ours[1])
            if newer == (trait.kind == "last"):
                into.computed[trait.name] = theirs

    # -- presentation -------------------------------------------------------------------

    def traits(self, state: NodeState) -> dict[str, Any]:
        return {name: value for name, (value, _stamp) in sorted(state.traits.items())}

    def computed_traits(self, state: NodeState) -> dict[str, Any]:
        def iso(ms: int | None) -> str | None:
            return None if ms is None else format_time(datetime.fromtimestamp(ms / 1000, UTC))

        result: dict[str, Any] = {
            "firstSeen": iso(state.first_seen),
            "lastSeen": iso(state.last_seen),
            "eventCounts": dict(sorted(state.counts.items())),
            "sessions": state.closed_sessions + len(state.sessions),
            "lastPage": state.last_page[0] if state.last_page else None,
        }
        if state.other_events:  # names beyond the bound
            result["otherEvents"] = state.other_events
        for trait in self.computed:
            value = state.computed.get(trait.name)
            if trait.kind in ("first", "last") and value is not None:
                value = value[0]
            elif trait.kind in ("sum", "min", "max") and value is not None:
                number = Decimal(value)
                value = int(number) if number == number.to_integral_value() else float(number)
            elif trait.kind == "count" and value is None:
                value = 0
            result[trait.name] = value
        return result


def _page_of(event: Mapping[str, Any]) -> dict[str, Any]:
    properties = event.get("properties") or {}
    page = (event.get("context") or {}).get("page") or {}
    result = {
        "name": event.get("name"),
        "url": properties.get("url") or page.get("url"),
        "path": properties.get("path") or page.get("path"),
        "title": properties.get("title") or page.get("title"),
    }
    return {k: v for k, v in result.items() if v is not None}
