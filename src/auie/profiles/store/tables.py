"""Tables of the profile store (its own database and Alembic history)."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from auie.db import UtcDateTime

metadata = MetaData()

identity_nodes = Table(
    "identity_nodes",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("node", String(600), primary_key=True),
    Column("id_type", String(40), nullable=False),
    Column("id_value", String(520), nullable=False),
    Column("profile_id", String(40), nullable=False),
    #: Seen in use by an event (not only named by an alias's previousId).
    Column("evidenced", Boolean, nullable=False),
    #: The node's mergeable state (auie.profiles.state.NodeState) as JSON; NULL if none.
    Column("state", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    #: Value of the change sequence (``change_sequence``) when the node last got a new
    #: profile (or was created): the lake's ``identities`` export picks rows above its mark.
    Column("moved_seq", BigInteger, nullable=False, server_default="0"),
    #: Value of the change sequence when the node was last written in any way: the lake's
    #: ``profiles`` snapshots pick the profiles of rows above their mark.
    Column("changed_seq", BigInteger, nullable=False, server_default="0"),
    #: The node's current consent per purpose (``state``'s, as JSON: {purpose: [granted,
    #: [time, messageId]]}); NULL when it holds no statement. The processor reads the
    #: statements of a profile's every identifier by it (``ix_identity_nodes_consent``)
    #: without reading their whole states.
    Column("consent", Text, nullable=True),
    Index("ix_identity_nodes_profile", "workspace_id", "profile_id"),
    Index("ix_identity_nodes_changed", "changed_seq"),
    Index("ix_identity_nodes_moved", "moved_seq"),
    Index(
        "ix_identity_nodes_consent",
        "workspace_id",
        "profile_id",
        sqlite_where=text("consent IS NOT NULL"),
        postgresql_where=text("consent IS NOT NULL"),
    ),
)

#: Counters incremented inside a write transaction; ``nodes`` numbers the batches that
#: write identity nodes. The row stays locked until the write commits, so the values
#: become visible in increasing order (a reader that sees value n sees every write <= n).
change_sequence = Table(
    "change_sequence",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

identity_edges = Table(
    "identity_edges",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("a", String(600), primary_key=True),
    Column("b", String(600), primary_key=True),
    Column("kind", String(8), primary_key=True),
    #: The earliest event (by event time, then messageId) that stated the edge.
    Column("ts_ms", BigInteger, nullable=False),
    Column("message_id", String(520), nullable=False),
    Index("ix_identity_edges_b", "workspace_id", "b"),
)

profile_merges = Table(
    "profile_merges",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("profile_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("from_profile", String(40), nullable=False),
    Column("into_profile", String(40), nullable=False),
    Column("message_id", String(520), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
)

#: Profiles that ceased to exist because every identifier of theirs moved into another
#: (a merge): the lake's ``profiles`` snapshots close them with a row naming the survivor.
closed_profiles = Table(
    "closed_profiles",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("profile_id", String(40), primary_key=True),
    Column("into_profile", String(40), nullable=False),
    #: Value of the change sequence of the write that closed the profile.
    Column("closed_seq", BigInteger, nullable=False),
    Index("ix_closed_profiles_seq", "closed_seq"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("workspace_id", String(64), nullable=False, index=True),
    Column("stage", String(32), nullable=False),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("source_id", String(64), nullable=True),
    Column("log_partition", Integer, nullable=True),
    Column("log_offset", BigInteger, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("replayed_at", UtcDateTime, nullable=True),
)

plan_violations = Table(
    "plan_violations",
    metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("event_key", String(1100), primary_key=True),
    Column("plan_version", Integer, primary_key=True),
    Column("violations", BigInteger, nullable=False),
    Column("blocked", BigInteger, nullable=False),
    Column("last_message", Text, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
)
