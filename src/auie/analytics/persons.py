"""Shared SQL of the analyses: events with their person, people's traits, and filters.

Every analysis reads one workspace's lake through the query engine (DuckDB, see ADR 7),
straight from the tables the processor writes; no transformation has to run first.

**Person of an event.** The latest profile (by ``changed_at``) that the lake's
``identities`` table gives the event's ``user_id``; if it has none, the latest profile of
its ``anonymous_id``; for an event the processor pseudonymised (its ids are unlinked
hashes, which ``identities`` does not hold),
``'pseudo:' ||`` the anonymous id's hash (else the user id's); otherwise
``'anon:' || anonymous_id`` (and, for an event without anonymous id,
``'user:' || user_id``). Because identities record every move
of an identifier, anonymous events from before a login count for the person who logged in.

**Event name.** ``event`` for track events, the type (``page``, ``screen``, ``identify``,
``group``, ``alias``) for the others, as in the profile's ``eventCounts``.

**Traits of a person.** The latest row (by ``snapshot_at``) of the lake's ``profiles``
snapshot table; profiles it does not hold yet are read from the profile store. A snapshot
that withholds them (a person without ``analytics`` consent) makes every trait and
computed-trait condition false for that person, ``neq`` and ``is_set: false`` included:
withheld is not "has none"; so it is for the pseudonymised events' ``pseudo:`` people.
:func:`~auie.analytics.segments.evaluate_for` (a decision, which the person's
``personalization`` consent governs) reads the profile store instead.

**Filters.** See :func:`condition` and docs/analytics.md: values are compared by their text
form (strings as they are, numbers as JSON, booleans ``true``/``false``), numerically when
the filter's value is a number (then only JSON numbers match), ``neq`` is true for a
missing value, ordering and ``contains`` are false for a missing one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from auie.analytics.duckdb_engine import CURRENT_IDS
from auie.analytics.engine import QueryEngine, QueryResult
from auie.analytics.models import NUMERIC_FIELDS, Filter, Target
from auie.errors import InvalidRequest
from auie.privacy import consent
from auie.profiles.identity import node
from auie.profiles.service import ProfileService
from auie.profiles.state import NodeState
from auie.profiles.store.base import StoredNode

if TYPE_CHECKING:
    from auie.runtime import Runtime

#: Most rows an analysis query may return (its shape bounds it well below).
MAX_ROWS = 2_000_000
EVENT_NAME = "CASE WHEN e.type = 'track' THEN e.event ELSE e.type END"
_JSON_NUMBER = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT', 'UHUGEINT')"

#: Current profile of each user and anonymous id: its latest ``identities`` row, which the
#: engine keeps in a table rebuilt when ``identities`` changes (not once per query).
IDS_CTE = f"_ids AS (SELECT id_type, id_value, profile_id FROM {CURRENT_IDS})"
#: A pseudonymised event (a person without ``analytics`` consent: its ids are unlinked
#: keyed hashes) belongs to ``'pseudo:' || <anonymous id hash, else user id hash>``: grouped as an
#: unresolved visitor's events are (one person per device, across its login), keyed so that
#: the pseudonymous SQL views show it as it is (its value is a hash already).
PSEUDONYM = (
    "CASE WHEN e.user_id = e.user_hash OR e.anonymous_id = e.anonymous_hash"
    " THEN 'pseudo:' || coalesce(e.anonymous_hash, e.user_hash) END"
)
PERSON = (
    f"coalesce(u.profile_id, a.profile_id, {PSEUDONYM},"
    " 'anon:' || e.anonymous_id, 'user:' || e.user_id)"
)
PERSON_JOINS = (
    "LEFT JOIN _ids u ON u.id_type = 'user_id' AND u.id_value = e.user_id "
    "LEFT JOIN _ids a ON a.id_type = 'anonymous_id' AND a.id_value = e.anonymous_id"
)
#: Latest snapshot row of each profile.
SNAPSHOT = """SELECT profile_id, traits, computed_traits, coalesce(withheld, false) AS withheld
    FROM profiles
    QUALIFY row_number() OVER (PARTITION BY profile_id ORDER BY snapshot_at DESC) = 1"""


class Sql:
    """Collects a query's parameters; values never enter the SQL text."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"


@dataclass(frozen=True, slots=True)
class Scope:
    """What an analysis reads: one workspace's lake and, for traits, its profile store."""

    engine: QueryEngine
    workspace: str
    profiles: ProfileService
    #: ``privacy.require_explicit_consent``: whether traits need a granted ``analytics``.
    require_explicit_consent: bool = False

    @classmethod
    def of(cls, runtime: Runtime, workspace: str) -> Scope:
        explicit = runtime.settings.privacy.require_explicit_consent
        return cls(runtime.analytics, workspace, runtime.profiles, explicit)

    def query(self, sql: str, params: Mapping[str, Any]) -> QueryResult:
        result = self.engine.query(self.workspace, sql, dict(params), limit=MAX_ROWS)
        if result.truncated:
            raise InvalidRequest(
                "the analysis has too many result rows; narrow the range or breakdown",
                code="result_too_large",
            )
        return result

    # -- traits -----------------------------------------------------------------------------

    def traits_cte(self, q: Sql, profile_ids: Sequence[str] | None = None) -> str:
        """``person_traits(profile_id, traits, computed_traits, withheld)``: the snapshot
        table's latest rows, plus, for current profiles it lacks, the profile store's (only
        ``profile_ids`` when given; withheld as a snapshot would be, by consent)."""
        found = self._store_traits(self._missing_from_snapshot(profile_ids))
        return f"person_traits AS ({SNAPSHOT} UNION ALL {_traits_rows(q, found)})"

    def store_traits_cte(self, q: Sql, profile_id: str) -> str:
        """``person_traits`` of one profile as the profile store holds it now, whatever its
        snapshot shows and its consent (for a decision: see the module's docstring)."""
        members = self.profiles.store.profile_nodes(self.workspace, profile_id)
        found = {profile_id: _fold(self.profiles, members, withheld=False)} if members else {}
        return f"person_traits AS ({_traits_rows(q, found)})"

    def _store_traits(self, wanted: list[str]) -> dict[str, StoreTraits]:
        """Traits of profiles from the profile store: the states of their user and anonymous
        ids (found through the lake's identities, read in bulk), else one by one; withheld
        for people without ``analytics`` consent."""
        if not wanted:
            return {}
        q = Sql()
        sql = (
            f"WITH {IDS_CTE} SELECT id_type, id_value FROM _ids"
            f" WHERE profile_id IN (SELECT unnest({q.bind(wanted)}::VARCHAR[]))"
        )
        keys = [node(id_type, value) for id_type, value in self.query(sql, q.params).rows]
        members: dict[str, list[StoredNode]] = {}
        targets = set(wanted)
        for stored in self.profiles.store.nodes(self.workspace, keys).values():
            if stored.profile_id in targets:
                members.setdefault(stored.profile_id, []).append(stored)
        for pid in targets - members.keys():
            single = self.profiles.store.profile_nodes(self.workspace, pid)
            if single:
                members[pid] = single
        consents = self.profiles.consents(self.workspace, [m[0].node for m in members.values()])
        return {
            pid: _fold(
                self.profiles,
                nodes,
                withheld=not consent.allowed(
                    consents.get(nodes[0].node, {}),
                    "analytics",
                    require_explicit=self.require_explicit_consent,
                ),
            )
            for pid, nodes in members.items()
        }

    def _missing_from_snapshot(self, profile_ids: Sequence[str] | None) -> list[str]:
        q = Sql()
        if profile_ids is None:
            wanted = "SELECT DISTINCT profile_id FROM _ids"
        else:
            wanted = f"SELECT unnest({q.bind(list(profile_ids))}::VARCHAR[]) AS profile_id"
        sql = (
            f"WITH {IDS_CTE}, wanted AS ({wanted}) SELECT profile_id FROM wanted"
            " WHERE profile_id NOT IN (SELECT profile_id FROM profiles) ORDER BY profile_id"
        )
        return [row[0] for row in self.query(sql, q.params).rows]


#: A profile's traits, computed traits and whether they are withheld (then both are empty).
StoreTraits = tuple[dict[str, Any], dict[str, Any], bool]


def _fold(service: ProfileService, members: Sequence[StoredNode], *, withheld: bool) -> StoreTraits:
    """The traits and computed traits of a profile's nodes, merged (or withheld)."""
    if withheld:
        return {}, {}, True
    merged = NodeState()
    for member in members:
        if member.state is not None:
            service.folder.merge(merged, member.state)
    return service.folder.traits(merged), service.folder.computed_traits(merged), False


def _traits_rows(q: Sql, found: Mapping[str, StoreTraits]) -> str:
    """``person_traits`` rows of the profiles in ``found``."""
    ids = sorted(found)
    return (
        f"SELECT unnest({q.bind(ids)}::VARCHAR[]) AS profile_id,"
        f" unnest({q.bind([_json(found[i][0]) for i in ids])}::VARCHAR[]) AS traits,"
        f" unnest({q.bind([_json(found[i][1]) for i in ids])}::VARCHAR[]) AS computed_traits,"
        f" unnest({q.bind([found[i][2] for i in ids])}::BOOLEAN[]) AS withheld"
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# -- events -----------------------------------------------------------------------------------


def events_cte(
    q: Sql,
    *,
    start: datetime,
    end: datetime | None,
    names: Iterable[str] | None,
    targets: Iterable[Target | None] = (),
    person: bool = True,
) -> str:
    """``_ids`` and ``ev(message_id, timestamp, event_name, person_id, ...)``: the events with
    ``start <= timestamp < end`` (no upper bound if ``end`` is None) named one of ``names``
    (any if None), with the columns ``targets`` read (``properties``, fields)."""
    where = [f"e.timestamp >= {q.bind(start)}"]
    if end is not None:
        where.append(f"e.timestamp < {q.bind(end)}")
    if names is not None:
        # One parameter per name: DuckDB folds the list into an IN filter (a subquery over
        # a bound list would be a semi-join of every event).
        listed = ", ".join(q.bind(name) for name in sorted(set(names)))
        where.append(f"{EVENT_NAME} IN ({listed})" if listed else "false")
    columns = ["e.message_id", "e.timestamp"]
    for target in targets:
        if target is None:
            continue
        kind, name = target.target()
        column = "e.properties" if kind == "property" else f'e."{name}"'
        if kind in ("property", "field") and column not in columns:
            columns.append(column)
    person_sql = PERSON if person else "NULL"
    joins = PERSON_JOINS if person else ""
    return (
        f"{IDS_CTE}, ev AS (SELECT {', '.join(columns)}, {EVENT_NAME} AS event_name,"
        f" {person_sql} AS person_id FROM events e {joins} WHERE {' AND '.join(where)})"
    )


# -- values, filters, breakdowns ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueSql:
    """SQL of one target's value: its text form, its number (JSON numbers only), and
    whether it is present (not missing, not JSON null)."""

    text: str
    number: str
    present: str


def value_sql(q: Sql, target: Target, event: str = "ev", traits: str = "pt") -> ValueSql:
    kind, name = target.target()
    if kind == "field":
        column = f'{event}."{name}"'
        number = f"CAST({column} AS DOUBLE)" if name in NUMERIC_FIELDS else "NULL::DOUBLE"
        return ValueSql(f"CAST({column} AS VARCHAR)", number, f"({column} IS NOT NULL)")
    if kind == "property":
        document, keys = f"{event}.properties", [name]
    elif kind == "trait":
        document, keys = f"{traits}.traits", [name]
    else:
        document, keys = f"{traits}.computed_traits", name.split(".")
    path = q.bind("$" + "".join(f'."{key}"' for key in keys))
    kind_sql = f"json_type({document}, {path})"
    raw = f"json_extract_string({document}, {path})"
    return ValueSql(
        _without_ciphertext(raw),
        # a JSON number holds no ciphertext: its text is read as it is
        f"CASE WHEN {kind_sql} IN {_JSON_NUMBER} THEN TRY_CAST({raw} AS DOUBLE) END",
        f"coalesce({kind_sql} <> 'NULL', false)",
    )


#: Field encryption's ciphertext (:mod:`auie.privacy.crypto`): ``enc:v1:<key id>:<base64>``.
_CIPHERTEXT = r"enc:v1:[0-9A-Za-z_-]*:[0-9A-Za-z+/=]*"
ENCRYPTED = "[encrypted]"


def _without_ciphertext(text: str) -> str:
    """``text`` (SQL) with every ciphertext replaced by ``[encrypted]``: a PII field nested
    in a trait or property an analysis may use (``contact`` holding ``email``) would
    otherwise show its ciphertext, and the key id in it names the person."""
    return (
        f"CASE WHEN contains({text}, 'enc:v1:') THEN regexp_replace({text}, "
        f"'{_CIPHERTEXT}', '{ENCRYPTED}', 'g') ELSE {text} END"
    )


def scalar_text(value: Any) -> str:
    """The text form a string or boolean filter value is compared with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _equals(q: Sql, value: ValueSql, wanted: Any) -> str:
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        return f"({value.number} = {q.bind(float(wanted))})"
    return f"({value.text} = {q.bind(scalar_text(wanted))})"


_ORDER_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def condition(
    q: Sql, spec: Filter, event: str = "ev", traits: str = "pt", person: str | None = None
) -> str:
    """A boolean SQL expression (never NULL) for one filter. ``person``: the SQL of the
    person id where it may be a pseudonymised person's (``pseudo:``), whose traits are
    withheld as well (an event's person, not a profile's)."""
    value = value_sql(q, spec, event, traits)
    wanted: Any = spec.value
    if spec.op == "is_set":
        expression = value.present if wanted is None or wanted else f"(NOT {value.present})"
    elif spec.op in ("eq", "neq", "in"):
        options = wanted if isinstance(wanted, list) else [wanted]
        expression = f"coalesce({' OR '.join(_equals(q, value, w) for w in options)}, false)"
        if spec.op == "neq":
            expression = f"(NOT {expression})"
    elif spec.op == "contains":
        expression = f"coalesce(contains(lower({value.text}), lower({q.bind(str(wanted))})), false)"
    elif isinstance(wanted, int | float) and not isinstance(wanted, bool):
        expression = (
            f"coalesce({value.number} {_ORDER_SQL[spec.op]} {q.bind(float(wanted))}, false)"
        )
    else:
        expression = (
            f"coalesce({value.text} {_ORDER_SQL[spec.op]} {q.bind(scalar_text(wanted))}, false)"
        )
    if spec.target()[0] in ("trait", "computedTrait"):
        # Withheld traits (see the module's docstring) satisfy no condition.
        pseudonymised = f"starts_with({person}, 'pseudo:')" if person is not None else "false"
        expression = f"(NOT coalesce({traits}.withheld, {pseudonymised}) AND {expression})"
    return expression


def conditions(
    q: Sql,
    specs: Iterable[Filter],
    event: str = "ev",
    traits: str = "pt",
    person: str | None = None,
) -> str:
    parts = [condition(q, spec, event, traits, person) for spec in specs]
    return " AND ".join(parts) if parts else "true"


def needs_traits(targets: Iterable[Target | None]) -> bool:
    return any(t is not None and t.target()[0] in ("trait", "computedTrait") for t in targets)
