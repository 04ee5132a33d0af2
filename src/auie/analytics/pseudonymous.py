"""What SQL callers without the ``pii:read`` scope see: keyed hashes instead of identifiers.

``POST /v1/sql`` from a token without ``pii:read`` runs on a separate DuckDB database of the
workspace whose views wrap the lake tables and marts:

* identifier columns (``user_id``, ``anonymous_id``, ``group_id``, ``previous_id``,
  ``id_value``, ``email``) hold the keyed hash AUIE stores beside them (``h_…``, the same
  value the lake's ``user_hash`` / ``anonymous_hash`` / ``id_hash`` columns hold, so hashes
  join across tables; the rows pseudonymised for want of ``analytics`` consent hold
  *unlinked* hashes, which join only each other:
  :meth:`auie.privacy.crypto.Pseudonymizer.unlinked`); person columns of the marts
  (``person_id``, ``previous_person_id``) keep profile ids, hash the ``anon:``/``user:``
  fallbacks and keep ``pseudo:<hash>`` (the key of pseudonymised events, a hash already);
* ``context_ip`` is NULL; the configured PII fields are removed from ``traits``,
  ``properties`` and ``extra`` JSON, found as the privacy stage finds them
  (:class:`auie.privacy.fields.PiiRules`: any case, at any depth of traits and extra fields,
  ``privacy.pii_properties`` at the top level of properties); ``ip``, ``traits``, ``externalIds``,
  ``device.advertisingId`` and ``user.traits`` (the profile traits a decision joined)
  from ``context``;
* raw copies are not reachable: ``dead_letters.payload`` and ``profiles.identities`` are
  NULL, the engine's own hidden tables of raw ids do not exist in that database, and
  untrusted SQL may not call file-reading table functions nor the views' own hash functions
  (see :func:`auie.analytics.duckdb_engine.check_untrusted`).

The hash is :meth:`auie.privacy.crypto.Pseudonymizer.pseudonym` of ``"<id type>:<value>"``
with the workspace's key: stable, so counts and joins work; useless without the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

import duckdb
import msgspec
import pyarrow as pa
from duckdb.func import FunctionNullHandling, PythonUDFType

from auie.privacy.fields import Holder, PiiRules

#: Column name → the identifier type its values are hashed as.
ID_COLUMNS: dict[str, str] = {
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "group_id": "group_id",
    "previous_id": "previous_id",
    "email": "email",
}
#: Mart columns holding a person: a profile id, or ``anon:<anonymous id>`` /
#: ``user:<user id>`` for people the identity graph has not resolved (yet), or
#: ``pseudo:<hash>`` for pseudonymised events (shown as it is).
PERSON_COLUMNS = frozenset({"person_id", "previous_person_id"})
#: Lake columns that already hold the stored hash of another column.
_STORED_HASH = {"user_id": "user_hash", "anonymous_id": "anonymous_hash", "id_value": "id_hash"}
#: Columns whose content is raw personal data as a whole.
_BLANKED = frozenset({"context_ip", "payload", "identities"})
#: JSON columns whose configured PII fields are removed, and where in an event each sits
#: (``extra``: the event's top-level fields without a column of their own, e.g. a track's
#: ``"email"`` beside ``properties``).
_JSON_FIELDS: dict[str, Holder] = {"traits": "traits", "properties": "properties", "extra": "extra"}
_PREFIXES = {"anon:": "anonymous_id", "user:": "user_id"}

HASH_FUNCTION = "auie_pseudonym"
PERSON_FUNCTION = "auie_person"
STRIP_FUNCTION = "auie_strip_pii"
#: Scalar functions only the views may call: called by untrusted SQL, the hash function would
#: hash any guessed identifier and so re-identify people by joining the guess to the views.
INTERNAL_FUNCTIONS = frozenset({HASH_FUNCTION, PERSON_FUNCTION, STRIP_FUNCTION})
#: Names the native pre-check can look for: printable ASCII without quote, backslash or
#: slash (JSON may escape it as ``\/``), so a key spelled any case appears verbatim in the
#: stored JSON text (which AUIE writes with msgspec: keys are escaped only for quotes,
#: backslashes and control characters).
_PLAIN_NAME = re.compile(r"[ !#-.0-\[\]-~]+")
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()

Hasher = Callable[[str, str], str | None]


def register(
    connection: duckdb.DuckDBPyConnection,
    workspace: str,
    pseudonym: Hasher,
    rules: PiiRules | None = None,
) -> None:
    """Give ``connection`` the hash functions, bound to ``workspace``'s key, and the PII
    field remover of ``rules``."""

    def hash_ids(kinds: pa.Array, values: pa.Array) -> pa.Array:
        return pa.array(
            [
                None if v is None else pseudonym(workspace, f"{k}:{v}")
                for k, v in zip(kinds.to_pylist(), values.to_pylist(), strict=True)
            ],
            pa.string(),
        )

    def hash_people(values: pa.Array) -> pa.Array:
        out: list[str | None] = []
        for value in values.to_pylist():
            kind = (
                None if value is None else next((k for k in _PREFIXES if value.startswith(k)), None)
            )
            out.append(
                value
                if kind is None
                else kind + str(pseudonym(workspace, f"{_PREFIXES[kind]}:{value[len(kind) :]}"))
            )
        return pa.array(out, pa.string())

    def strip_pii(holders: pa.Array, texts: pa.Array) -> pa.Array:
        return pa.array(
            [
                None if text is None else _stripped(rules, holder, text)
                for holder, text in zip(holders.to_pylist(), texts.to_pylist(), strict=True)
            ],
            pa.string(),
        )

    arrow = PythonUDFType.ARROW
    connection.create_function(
        HASH_FUNCTION, hash_ids, ["varchar", "varchar"], "varchar", type=arrow, side_effects=False
    )
    connection.create_function(
        PERSON_FUNCTION, hash_people, ["varchar"], "varchar", type=arrow, side_effects=False
    )
    connection.create_function(  # "special": it returns NULL for text that is no JSON
        STRIP_FUNCTION,
        strip_pii,
        ["varchar", "varchar"],
        "varchar",
        type=arrow,
        null_handling=FunctionNullHandling.SPECIAL,
        side_effects=False,
    )


def _stripped(rules: PiiRules | None, holder: Holder, text: str) -> str | None:
    """JSON ``text`` (found at ``holder``) without its PII fields: the same text when it has
    none; NULL when it is no JSON (what it holds cannot be told, so it is not shown)."""
    if rules is None:
        return text
    try:
        value = _decode.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None
    kept = rules.strip(holder, value)
    return text if kept is value else _encode.encode(kept).decode()


def _may_hold(column: str, names: frozenset[str]) -> str:
    """A native SQL condition true for every row of JSON ``column`` that may hold one of
    ``names`` as a key (and for some that do not): a case-insensitive search for the quoted
    name, or any ``\\u`` escape (a key spelled with one would escape the search). TRUE when
    a name could not be searched for that way."""
    if not all(_PLAIN_NAME.fullmatch(name) for name in names):
        return "TRUE"
    pattern = '(?i)"(?:' + "|".join(re.escape(name) for name in sorted(names)) + ')"'
    return f"(regexp_matches({column}, {_literal(pattern)}) OR contains({column}, '\\u'))"


def view_sql(source: str, columns: Sequence[str], rules: PiiRules | None = None) -> str:
    """A SELECT over ``source`` (a FROM item) that shows ``columns`` pseudonymised, their
    JSON without the PII fields of ``rules`` (the connection's, :func:`register`)."""
    present = set(columns)
    replace: list[str] = []
    exclude = [hashed for hashed in _STORED_HASH.values() if hashed in present]
    for column in columns:
        quoted = f'"{column}"'
        if column in _STORED_HASH.values():
            continue
        kind = ID_COLUMNS.get(column)
        if column == "id_value":
            # identities: the hash of "<id_type>:<value>", the id_hash column when stored
            computed = f"{HASH_FUNCTION}(id_type, id_value)"
            expression = f"coalesce(id_hash, {computed})" if "id_hash" in present else computed
        elif kind is not None:
            computed = f"{HASH_FUNCTION}('{kind}', {quoted})"
            stored = _STORED_HASH.get(column)
            expression = (
                f"coalesce({stored}, {computed})"
                if stored is not None and stored in present
                else computed
            )
        elif column in PERSON_COLUMNS:
            expression = f"{PERSON_FUNCTION}({quoted})"
        elif column in _BLANKED:
            expression = "NULL::VARCHAR"
        elif column in _JSON_FIELDS:
            holder = _JSON_FIELDS[column]
            names = rules.names_of(holder) if rules is not None else frozenset()
            if not names:
                continue
            expression = (
                f"CASE WHEN {_may_hold(quoted, names)}"
                f" THEN {STRIP_FUNCTION}({_literal(holder)}, {quoted}) ELSE {quoted} END"
            )
        elif column == "context":
            expression = _unless_null(quoted, _context_expression(quoted))
        else:
            continue
        replace.append(f"{expression} AS {quoted}")
    star = "*"
    if exclude:
        star += " EXCLUDE (" + ", ".join(f'"{c}"' for c in exclude) + ")"
    if replace:
        star += " REPLACE (" + ", ".join(replace) + ")"
    return f"SELECT {star} FROM {source}"


#: Keys removed from ``context``: top-level ones (``externalIds``: ids in other systems), and
#: ones inside an object of the context (``device.advertisingId``; ``user.traits``: the
#: profile traits a decision joined) — only when the parent is an object, so a context
#: without one does not gain an empty one.
_CONTEXT_REMOVED = ("ip", "traits", "externalIds")
_CONTEXT_NESTED_REMOVED: dict[str, tuple[str, ...]] = {
    "device": ("advertisingId",),
    "user": ("traits",),
}


def _context_expression(column: str) -> str:
    """``column`` (a JSON context) without :data:`_CONTEXT_REMOVED` and, where their parent
    is an object, :data:`_CONTEXT_NESTED_REMOVED`: one merge patch assembled per row."""
    top = ", ".join(f"{json.dumps(key)}: null" for key in _CONTEXT_REMOVED)
    parts = [_literal(top)]
    for parent, keys in _CONTEXT_NESTED_REMOVED.items():
        inner = ", ".join(f"{json.dumps(key)}: null" for key in keys)
        nested = _literal(f", {json.dumps(parent)}: {{{inner}}}")
        parts.append(
            f"CASE WHEN json_type({column}, {_literal('$.' + parent)}) = 'OBJECT'"
            f" THEN {nested} ELSE '' END"
        )
    patch = "'{' || " + " || ".join(parts) + " || '}'"
    return f"json_merge_patch({column}, ({patch})::JSON)::VARCHAR"


def _unless_null(column: str, expression: str) -> str:
    """``expression``, NULL where ``column`` is (a merge patch of NULL gives the patch)."""
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {expression} END"


def _literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
