"""ProfileStore on SQLAlchemy 2: SQLite (default, a file in the data directory) or
PostgreSQL (``profiles.url = "postgresql://..."``). Migrations are Alembic's, with their
own version table. Upserts use each dialect's ``INSERT ... ON CONFLICT``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from auie import db
from auie.errors import StorageUnavailable
from auie.ids import utcnow
from auie.profiles.identity import Edge, Merge, split
from auie.profiles.state import Consent, NodeState, decode_consent, encode_consent
from auie.profiles.store.base import (
    ClosedProfile,
    DeadLetter,
    NodeChange,
    NodeMarks,
    NodeRow,
    ProfileStore,
    ProfileWrite,
    StoredNode,
    ViolationCount,
)
from auie.profiles.store.tables import (
    change_sequence,
    closed_profiles,
    consumer_offsets,
    dead_letters,
    identity_edges,
    identity_nodes,
    plan_violations,
    profile_merges,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_CHUNK = 400
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _state(text: str | None) -> NodeState | None:
    return None if text is None else NodeState.decode(text)


def _dump(state: NodeState | None) -> str | None:
    # Events are decoded by msgspec, which refuses NaN, infinities and lone surrogates, so
    # a state holds nothing msgspec would write differently from json.dumps.
    return None if state is None else state.encode().decode()


_n, _e = identity_nodes.c, identity_edges.c
#: Reads by key lists: one statement each, run by :class:`_DriverQuery` (compiled once per
#: list length; building an IN clause per call costs more than the query).
#: Each is a plain ``IN`` on the leading columns of an index: SQLite answers a row-value
#: ``(a, b, kind) IN (...)`` or an ``a IN (...) OR b IN (...)`` by scanning every edge of
#: the workspace.
_NODES = select(_n.node, _n.profile_id, _n.evidenced, _n.state).where(
    _n.workspace_id == bindparam("ws"), _n.node.in_(bindparam("keys", expanding=True))
)
_EDGES_FROM = select(_e.a, _e.b, _e.kind, _e.ts_ms, _e.message_id).where(
    _e.workspace_id == bindparam("ws"), _e.a.in_(bindparam("keys", expanding=True))
)
_EDGES_TO = select(_e.a, _e.b, _e.kind, _e.ts_ms, _e.message_id).where(
    _e.workspace_id == bindparam("ws"), _e.b.in_(bindparam("keys", expanding=True))
)
_PROFILES_NODES = select(_n.node, _n.profile_id, _n.evidenced, _n.state).where(
    _n.workspace_id == bindparam("ws"), _n.profile_id.in_(bindparam("keys", expanding=True))
)
#: The statements of every node of the profile each node of ``keys`` belongs to, in one
#: statement (one snapshot: a node moved by another writer meanwhile takes its statements
#: along): each node by the primary key, its profile's statements by the partial index
#: ``ix_identity_nodes_consent``.
_owner, _holder = identity_nodes.alias("owner"), identity_nodes.alias("holder")
_NODES_CONSENT = (
    select(_owner.c.node, _holder.c.consent)
    .join(
        _holder,
        (_holder.c.workspace_id == _owner.c.workspace_id)
        & (_holder.c.profile_id == _owner.c.profile_id)
        & _holder.c.consent.is_not(None),
    )
    .where(
        _owner.c.workspace_id == bindparam("ws"),
        _owner.c.node.in_(bindparam("keys", expanding=True)),
    )
)


#: An existing node's state columns (see ``NodeRow.kept``), by key.
_NODE_UPDATE_COLUMNS = (
    "evidenced",
    "state",
    "updated_at",
    "changed_seq",
    "consent",
    "workspace_id",
    "node",
)
_NODE_UPDATE = (
    update(identity_nodes)
    .where(_n.workspace_id == bindparam("b_workspace_id"), _n.node == bindparam("b_node"))
    .values({name: bindparam(f"b_{name}") for name in _NODE_UPDATE_COLUMNS[:5]})
)
_NODE_COLUMNS = (
    "workspace_id",
    "node",
    "id_type",
    "id_value",
    "profile_id",
    "evidenced",
    "state",
    "updated_at",
    "moved_seq",
    "changed_seq",
    "consent",
)
#: The change sequence's counter of node writes.
_NODES_SEQUENCE = "nodes"
#: The counter of transactions that deleted nodes (:meth:`SqlProfileStore.count_deletion`).
_DELETIONS = "node_deletions"


class _DriverStatement:
    """A statement compiled once by SQLAlchemy and run by the DB-API driver's
    ``executemany``, its rows given as tuples in ``columns`` order.

    SQLAlchemy runs every value of every row through its parameter processing, which for
    thousands of node rows per batch costs more than the database's own work. Here each
    column's bind processor (booleans for SQLite, UTC timestamps) is applied by hand, and
    only to the columns that have one: the driver receives the same values.
    """

    def __init__(
        self,
        statement: Any,
        dialect: Dialect,
        columns: Sequence[Column[Any]],
        *,
        names: tuple[str, ...] | None = None,
    ) -> None:
        """``names``: the statement's parameter names, if they are not the columns' (the
        ``columns`` give each parameter's type)."""
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.names = names or tuple(c.name for c in columns)
        if compiled.positional and tuple(compiled.positiontup or ()) != self.names:
            raise ValueError(f"parameters {compiled.positiontup} are not {self.names}")
        self.positional: bool = compiled.positional
        self.processors = [
            (index, processor)
            for index, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run the statement once per row (the processed columns' values must be hashable:
        each distinct value is processed once)."""
        if not rows:
            return
        columns = [list(values) for values in zip(*rows, strict=True)]
        for index, processor in self.processors:
            done: dict[Any, Any] = {}
            columns[index] = [
                done[v] if v in done else done.setdefault(v, processor(v)) for v in columns[index]
            ]
        params: list[Any] = list(zip(*columns, strict=True))
        if not self.positional:
            params = [dict(zip(self.names, row, strict=True)) for row in params]
        conn.exec_driver_sql(self.sql, params)


def _raw_rows(conn: Connection, statement: Any) -> list[Any]:
    """The rows of a select as the DB-API driver returns them, without SQLAlchemy's result
    processing (for reads of thousands of rows whose values need none, or get it by hand).
    Its parameters must need no bind processing either (numbers and strings)."""
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.params
    args: Any = (
        tuple(params[name] for name in compiled.positiontup or ())
        if compiled.positional
        else params
    )
    return _fetch_all(conn, compiled.string, args)


def _fetch_all(conn: Connection, sql: str, args: Any) -> list[Any]:
    """Run ``sql`` on the DB-API cursor of ``conn``: its rows as the driver returns them."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _result_processor(kind: Any, dialect: Dialect) -> Callable[[Any], Any]:
    """The conversion SQLAlchemy applies to a column of ``kind`` as the driver returns it."""
    processor = kind.dialect_impl(dialect).result_processor(dialect, None)
    return processor if processor is not None else (lambda value: value)


class _DriverQuery:
    """A read by key list (one of the statements above: a ``ws`` parameter and an expanding
    ``keys`` one), compiled by SQLAlchemy once per list length and run on the DB-API cursor.

    The processor reads thousands of nodes and edges per batch; SQLAlchemy's per-call
    compilation of the expanded IN list and its per-row result processing cost more than
    the database's own work. The rows are the driver's tuples (SQLite gives booleans as
    0 and 1).
    """

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        self.statement = statement
        self.dialect = dialect
        self._compiled: dict[int, tuple[str, tuple[str, ...] | None]] = {}

    def _sql(self, size: int) -> tuple[str, tuple[str, ...] | None]:
        compiled = self._compiled.get(size)
        if compiled is None:
            keys = [f"k{i}" for i in range(size)]
            form = self.statement.params(ws="", keys=keys).compile(
                dialect=self.dialect, compile_kwargs={"render_postcompile": True}
            )
            order = tuple(form.positiontup or ()) if form.positional else None
            compiled = self._compiled[size] = (form.string, order)
        return compiled

    def rows(self, conn: Connection, workspace: str, keys: Sequence[str]) -> list[Any]:
        """The rows for ``keys`` (at most ``_CHUNK`` of them)."""
        sql, order = self._sql(len(keys))
        named = {"ws": workspace, **{f"keys_{i + 1}": k for i, k in enumerate(keys)}}
        params: Any = tuple(named[name] for name in order) if order is not None else named
        return _fetch_all(conn, sql, params)


class SqlProfileStore(ProfileStore):
    """See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._node_upsert = _DriverStatement(
            self._node_upsert_statement(), engine.dialect, [_n[name] for name in _NODE_COLUMNS]
        )
        self._node_update = _DriverStatement(
            _NODE_UPDATE,
            engine.dialect,
            [_n[name] for name in _NODE_UPDATE_COLUMNS],
            names=tuple(f"b_{name}" for name in _NODE_UPDATE_COLUMNS),
        )
        self._edge_upsert = _DriverStatement(
            self._edge_upsert_statement(), engine.dialect, list(identity_edges.c)
        )
        self._merge_insert = _DriverStatement(
            profile_merges.insert(), engine.dialect, list(profile_merges.c)
        )
        self._nodes = _DriverQuery(_NODES, engine.dialect)
        self._edges_from = _DriverQuery(_EDGES_FROM, engine.dialect)
        self._edges_to = _DriverQuery(_EDGES_TO, engine.dialect)
        self._profiles_nodes = _DriverQuery(_PROFILES_NODES, engine.dialect)
        self._nodes_consent = _DriverQuery(_NODES_CONSENT, engine.dialect)
        #: ``identity_nodes.updated_at`` from the driver's value to an aware datetime.
        self._updated_at = _result_processor(_n.updated_at.type, engine.dialect)

    @classmethod
    def open(cls, url: str) -> SqlProfileStore:
        return cls(db.open_database(url, migrations=MIGRATIONS))

    def _node_upsert_statement(self) -> Any:
        """Insert or replace a node; ``moved_seq`` changes only if its profile does."""
        stmt = self._insert(identity_nodes)
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=["workspace_id", "node"],
            set_={
                "profile_id": new.profile_id,
                "evidenced": new.evidenced,
                "state": new.state,
                "consent": new.consent,
                "updated_at": new.updated_at,
                "changed_seq": new.changed_seq,
                "moved_seq": case(
                    (_n.profile_id == new.profile_id, _n.moved_seq), else_=new.moved_seq
                ),
            },
        )

    def _edge_upsert_statement(self) -> Any:
        """Insert an edge, or move a stored one to an earlier event."""
        stmt = self._insert(identity_edges)
        earlier = tuple_(stmt.excluded.ts_ms, stmt.excluded.message_id) < tuple_(
            identity_edges.c.ts_ms, identity_edges.c.message_id
        )
        return stmt.on_conflict_do_update(
            index_elements=["workspace_id", "a", "b", "kind"],
            set_={"ts_ms": stmt.excluded.ts_ms, "message_id": stmt.excluded.message_id},
            where=earlier,
        )

    def _upsert(self, table: Table, keys: Sequence[str], values: Sequence[str]) -> Any:
        stmt = self._insert(table)
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in values}
        )

    # -- reads ---------------------------------------------------------------------------

    def offsets(self, consumer: str, topic: str) -> dict[int, int]:
        query = select(consumer_offsets.c.part, consumer_offsets.c.next_offset).where(
            consumer_offsets.c.consumer == consumer, consumer_offsets.c.topic == topic
        )
        with self.engine.connect() as conn:
            return {int(part): int(offset) for part, offset in conn.execute(query)}

    def nodes(self, workspace: str, keys: Iterable[str]) -> dict[str, StoredNode]:
        wanted = sorted(set(keys))
        found: dict[str, StoredNode] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted):
                for key, profile, evidenced, state in self._nodes.rows(conn, workspace, chunk):
                    found[key] = StoredNode(key, profile, bool(evidenced), _state(state))
        return found

    def edges(
        self, workspace: str, pairs: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Edge]:
        wanted = set(pairs)
        found: dict[tuple[str, str, str], Edge] = {}
        with self.engine.connect() as conn:
            # every edge of each pair's first node, then only the pairs asked for
            for chunk in _chunks(sorted({a for a, _b, _kind in wanted})):
                for a, b, kind, ts, message_id in self._edges_from.rows(conn, workspace, chunk):
                    if (a, b, kind) in wanted:
                        found[(a, b, kind)] = Edge(int(ts), message_id, kind, a, b)
        return found

    def neighbours(self, workspace: str, keys: Iterable[str]) -> list[Edge]:
        wanted = sorted(set(keys))
        found: set[Edge] = set()
        with self.engine.connect() as conn:
            for query in (self._edges_from, self._edges_to):
                for chunk in _chunks(wanted):
                    rows = query.rows(conn, workspace, chunk)
                    found.update(Edge(int(ts), mid, kind, a, b) for a, b, kind, ts, mid in rows)
        return sorted(found)

    def profile_nodes(self, workspace: str, profile_id: str) -> list[StoredNode]:
        c = identity_nodes.c
        # Sorted here: ORDER BY node leads SQLite to scan the workspace's primary key
        # instead of using the profile index.
        query = select(c.node, c.profile_id, c.evidenced, c.state).where(
            c.workspace_id == workspace, c.profile_id == profile_id
        )
        with self.engine.connect() as conn:
            found = [StoredNode(n, p, bool(e), _state(s)) for n, p, e, s in conn.execute(query)]
        return sorted(found, key=lambda n: n.node)

    def merges(self, workspace: str, profile_id: str) -> list[Merge]:
        c = profile_merges.c
        query = (
            select(c.from_profile, c.into_profile, c.message_id, c.ts_ms, c.kind)
            .where(c.workspace_id == workspace, c.profile_id == profile_id)
            .order_by(c.seq)
        )
        with self.engine.connect() as conn:
            return [Merge(f, i, m, int(t), k) for f, i, m, t, k in conn.execute(query)]

    def change_sequence(self) -> int:
        return self.node_marks().sequence

    def node_marks(self) -> NodeMarks:
        c = change_sequence.c
        query = select(c.name, c.value).where(c.name.in_((_NODES_SEQUENCE, _DELETIONS)))
        with self.engine.connect() as conn:
            values = {str(name): int(value) for name, value in conn.execute(query)}
        return NodeMarks(values.get(_NODES_SEQUENCE, 0), values.get(_DELETIONS, 0))

    def changed_nodes(self, after: int) -> list[tuple[str, str]]:
        query = select(_n.workspace_id, _n.node).where(_n.changed_seq > after)
        with self.engine.connect() as conn:
            return [(str(ws), str(key)) for ws, key in _raw_rows(conn, query)]

    def count_deletion(self, conn: Connection) -> None:
        """Count a transaction that deletes nodes (in it): caches of nodes drop everything
        they hold when they see the count move (:class:`~auie.profiles.nodecache.NodeCache`)."""
        self._take(conn, _DELETIONS)

    def moved_nodes(self, after: int, upto: int) -> list[NodeChange]:
        # By the moved_seq index (only the nodes that moved, not every node written since).
        # Rows as the driver gives them (every member of a group reads all of them, and
        # SQLAlchemy's processing per row cost more than the query), ``updated_at``
        # converted once per distinct value: the nodes of one write share it.
        query = (
            select(_n.workspace_id, _n.node, _n.profile_id, _n.moved_seq, _n.updated_at)
            .where(_n.moved_seq > after, _n.moved_seq <= upto)
            .order_by(_n.moved_seq)
        )
        times: dict[Any, datetime] = {}
        with self.engine.connect() as conn:
            return [
                NodeChange(
                    ws,
                    key,
                    pid,
                    int(seq),
                    times[at] if at in times else times.setdefault(at, self._updated_at(at)),
                )
                for ws, key, pid, seq, at in _raw_rows(conn, query)
            ]

    def changed_profiles(self, after: int, upto: int) -> dict[tuple[str, str], int]:
        query = (
            select(_n.workspace_id, _n.profile_id, func.max(_n.changed_seq))
            .where(_n.changed_seq > after, _n.changed_seq <= upto)
            .group_by(_n.workspace_id, _n.profile_id)
        )
        with self.engine.connect() as conn:
            return {(str(ws), str(pid)): int(seq) for ws, pid, seq in _raw_rows(conn, query)}

    def closed_profiles(self, after: int, upto: int) -> list[ClosedProfile]:
        c = closed_profiles.c
        query = (
            select(c.workspace_id, c.profile_id, c.into_profile, c.closed_seq)
            .where(c.closed_seq > after, c.closed_seq <= upto)
            .order_by(c.closed_seq, c.workspace_id, c.profile_id)
        )
        with self.engine.connect() as conn:
            return [ClosedProfile(w, p, i, int(q)) for w, p, i, q in conn.execute(query)]

    def workspaces(self) -> list[str]:
        query = select(_n.workspace_id).distinct().order_by(_n.workspace_id)
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def profiles_nodes(
        self, workspace: str, profile_ids: Iterable[str]
    ) -> dict[str, list[StoredNode]]:
        found: dict[str, list[StoredNode]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(profile_ids))):
                for key, pid, evidenced, state in self._profiles_nodes.rows(conn, workspace, chunk):
                    found.setdefault(pid, []).append(
                        StoredNode(key, pid, bool(evidenced), _state(state))
                    )
        for nodes in found.values():
            nodes.sort(key=lambda n: n.node)
        return found

    def consents(self, workspace: str, keys: Iterable[str]) -> dict[str, list[Consent]]:
        found: dict[str, list[Consent]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(keys))):
                for key, text in self._nodes_consent.rows(conn, workspace, chunk):
                    found.setdefault(key, []).append(decode_consent(text))
        return found

    def profile_ids(self, workspace: str) -> list[str]:
        c = identity_nodes.c
        query = (
            select(c.profile_id)
            .where(c.workspace_id == workspace, c.evidenced.is_(True))
            .distinct()
            .order_by(c.profile_id)
        )
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def dead_letters(
        self,
        workspace: str | None,
        *,
        pending: bool = True,
        stage: str | None = None,
        code: str | None = None,
        limit: int = 1000,
        after: tuple[datetime, str] | None = None,
    ) -> list[DeadLetter]:
        c = dead_letters.c
        query = select(dead_letters).order_by(c.created_at, c.id).limit(limit)
        if after is not None:
            at, letter_id = after
            query = query.where(or_(c.created_at > at, and_(c.created_at == at, c.id > letter_id)))
        if workspace is not None:
            query = query.where(c.workspace_id == workspace)
        if pending:
            query = query.where(c.replayed_at.is_(None))
        if stage is not None:
            query = query.where(c.stage == stage)
        if code is not None:
            query = query.where(c.code == code)
        with self.engine.connect() as conn:
            return [DeadLetter(**row._mapping) for row in conn.execute(query)]

    def violations(self, workspace: str) -> list[ViolationCount]:
        c = plan_violations.c
        query = (
            select(
                c.event_key, c.plan_version, c.violations, c.blocked, c.last_message, c.last_seen_at
            )
            .where(c.workspace_id == workspace)
            .order_by(c.event_key, c.plan_version)
        )
        with self.engine.connect() as conn:
            return [ViolationCount(*row) for row in conn.execute(query)]

    # -- writes --------------------------------------------------------------------------

    def mark_replayed(self, ids: Sequence[str], at: datetime) -> None:
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids)):
                conn.execute(
                    update(dead_letters).where(dead_letters.c.id.in_(chunk)).values(replayed_at=at)
                )

    def write(self, change: ProfileWrite) -> int | None:
        try:
            with self.engine.begin() as conn:
                self._write_edges(conn, change)
                seq = self._write_nodes(conn, change)
                self._write_merges(conn, change)
                self._write_offsets(conn, change)
                self._write_dead_letters(conn, change)
                self._write_violations(conn, change)
        except SQLAlchemyError as exc:
            raise StorageUnavailable(f"profile store write failed: {exc}") from exc
        return seq

    def _write_edges(self, conn: Connection, change: ProfileWrite) -> None:
        self._edge_upsert.execute(
            conn, [(ws, e.a, e.b, e.kind, e.ts, e.message_id) for ws, e in change.edges]
        )

    def _take(self, conn: Connection, name: str) -> int:
        """Take a counter's next value; its row stays locked until commit."""
        insert = self._insert(change_sequence).values(name=name, value=1)
        stmt = insert.on_conflict_do_update(
            index_elements=["name"], set_={"value": change_sequence.c.value + 1}
        ).returning(change_sequence.c.value)
        return int(conn.execute(stmt).scalar_one())

    def _write_nodes(self, conn: Connection, change: ProfileWrite) -> int | None:
        if not change.nodes and not change.reassign and not change.closed:
            return None
        now = utcnow()
        seq = self._take(conn, _NODES_SEQUENCE)
        if change.closed:
            conn.execute(
                self._upsert(
                    closed_profiles, ("workspace_id", "profile_id"), ("into_profile", "closed_seq")
                ),
                [
                    {"workspace_id": ws, "profile_id": pid, "into_profile": into, "closed_seq": seq}
                    for ws, pid, into in change.closed
                ],
            )
        if change.nodes:
            # Nodes that keep their profile: an update of the state columns alone leaves the
            # profile index as it is (an upsert rewrites every index it sets a column of).
            self._node_update.execute(
                conn,
                [
                    (
                        row.evidenced,
                        _state_text(row),
                        now,
                        seq,
                        _consent_text(row),
                        row.workspace_id,
                        row.node,
                    )
                    for row in change.nodes
                    if row.kept
                ],
            )
            self._node_upsert.execute(
                conn,
                [
                    (
                        row.workspace_id,
                        row.node,
                        *split(row.node),
                        row.profile_id,
                        row.evidenced,
                        _state_text(row),
                        now,
                        seq,
                        seq,
                        _consent_text(row),
                    )
                    for row in change.nodes
                    if not row.kept
                ],
            )
        if change.reassign:
            c = identity_nodes.c
            conn.execute(
                update(identity_nodes)
                .where(c.workspace_id == bindparam("ws"), c.node == bindparam("key"))
                .values(
                    profile_id=bindparam("pid"), updated_at=now, moved_seq=seq, changed_seq=seq
                ),
                [{"ws": ws, "key": key, "pid": pid} for ws, key, pid in change.reassign],
            )
        return seq

    def _write_merges(self, conn: Connection, change: ProfileWrite) -> None:
        """Replace the merge history of every profile in ``change.merges``: one batched
        delete, one batched insert."""
        if not change.merges:
            return
        c = profile_merges.c
        conn.execute(
            delete(profile_merges).where(
                c.workspace_id == bindparam("ws"), c.profile_id == bindparam("pid")
            ),
            [{"ws": ws, "pid": profile} for ws, profile in change.merges],
        )
        self._merge_insert.execute(
            conn,
            [
                (ws, profile, seq, m.from_profile, m.into_profile, m.message_id, m.ts, m.kind)
                for (ws, profile), merges in change.merges.items()
                for seq, m in enumerate(merges)
            ],
        )

    def _write_offsets(self, conn: Connection, change: ProfileWrite) -> None:
        rows = [
            {"consumer": consumer, "topic": topic, "part": part, "next_offset": offset}
            for (consumer, topic), offsets in change.offsets.items()
            for part, offset in offsets.items()
        ]
        if rows:
            conn.execute(
                self._upsert(consumer_offsets, ("consumer", "topic", "part"), ("next_offset",)),
                rows,
            )

    def _write_dead_letters(self, conn: Connection, change: ProfileWrite) -> None:
        if change.dead_letters:
            rows = [
                {k: getattr(d, k) for k in DeadLetter.__dataclass_fields__}
                for d in change.dead_letters
            ]
            conn.execute(self._insert(dead_letters).on_conflict_do_nothing(), rows)

    def _write_violations(self, conn: Connection, change: ProfileWrite) -> None:
        counts: dict[tuple[str, str, int], list[Any]] = {}
        for v in change.violations:
            entry = counts.setdefault((v.workspace_id, v.event_key, v.plan_version), [0, 0, ""])
            entry[0] += 1
            entry[1] += int(v.blocked)
            entry[2] = v.message[:2000]
        c = plan_violations.c
        now = utcnow()
        for (ws, key, version), (count, blocked, message) in counts.items():
            stmt = self._insert(plan_violations).values(
                workspace_id=ws,
                event_key=key,
                plan_version=version,
                violations=count,
                blocked=blocked,
                last_message=message,
                last_seen_at=now,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["workspace_id", "event_key", "plan_version"],
                set_={
                    "violations": c.violations + count,
                    "blocked": c.blocked + blocked,
                    "last_message": stmt.excluded.last_message,
                    "last_seen_at": stmt.excluded.last_seen_at,
                },
            )
            conn.execute(stmt)

    # -- lifecycle -------------------------------------------------------------------------

    def count_dead_letters(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(dead_letters)).scalar_one())

    def count_nodes(self, workspace: str) -> int:
        c = identity_nodes.c
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(identity_nodes)
                    .where(c.workspace_id == workspace)
                ).scalar_one()
            )

    def ping(self) -> None:
        db.ping(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def _state_text(row: NodeRow) -> str | None:
    return row.encoded.decode() if row.encoded is not None else _dump(row.state)


def _consent_text(row: NodeRow) -> str | None:
    return encode_consent(row.state.consent) if row.state is not None else None
