"""The subject of a privacy request, and everything that identifies the person.

A request names one or more identifiers (``userId``, ``anonymousId``, ``email`` or any
``idType``/``idValue``). :func:`resolve_person` looks them up in the profile store and
widens them to **every identifier of every profile they belong to**, plus every profile id
those identifiers ever had (profile ids are derived from an anchor identifier, so they are
the ids of the person's identifiers) and the person's PII trait values.

:class:`Person` then decides, *by JSON field*, whether a record is about the person:
``userId``/``user_id`` equal to one of their user ids, ``anonymousId``, ``previousId``,
``email`` (case-insensitively), configured id traits, ``context.externalIds`` entries,
``profileId``/``person_id`` and the ``eventId`` of their decisions — at any depth. A value
that merely contains an id (``u1`` in ``u10``) never matches. Substring searches are only
used as a cheap pre-filter before that check (:meth:`Person.needles`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from auie.errors import InvalidRequest
from auie.jsontext import lone_surrogate
from auie.privacy import fields
from auie.privacy.crypto import FieldCipher
from auie.profiles.identity import ANONYMOUS_ID, EMAIL, MAX_ID_LENGTH, USER_ID, node, split
from auie.profiles.identity import profile_id as derive_profile_id
from auie.profiles.store.base import ProfileStore
from auie.profiles.store.sql import SqlProfileStore

_ID_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_encode = msgspec.json.Encoder().encode
_USER_KEYS = frozenset({"userId", "user_id"})
_ANON_KEYS = frozenset({"anonymousId", "anonymous_id"})
_PREVIOUS_KEYS = frozenset({"previousId", "previous_id"})
_PROFILE_KEYS = frozenset({"profileId", "profile_id", "person_id", "personId"})
_EVENT_KEYS = frozenset({"eventId", "event_id"})
#: Characters that continue an identifier: a match must not be preceded by one, nor
#: followed by one (a dot only when more of an identifier follows: "u1." ends a sentence).
_ID_CHARS = r"A-Za-z0-9_.@+\-"
_ID_END = r"A-Za-z0-9_@+\-"
_MAX_DEPTH = 24


@dataclass(frozen=True, slots=True)
class Subject:
    """The identifiers a request names, normalised (emails lower-cased, values stripped)."""

    identifiers: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str | None]]) -> Subject:
        found: list[tuple[str, str]] = []
        for given_type, raw in pairs:
            if raw is None:
                continue
            id_type = given_type.strip().lower()
            if not _ID_TYPE.match(id_type):
                raise InvalidRequest(f"invalid identifier type {id_type!r}", code="invalid_subject")
            value = str(raw).strip()
            if id_type == EMAIL:
                value = value.lower()
            if not value or len(value) > MAX_ID_LENGTH:
                raise InvalidRequest(
                    f"the {id_type} value must be 1 to {MAX_ID_LENGTH} characters",
                    code="invalid_subject",
                )
            _check_text(id_type, value)
            if (id_type, value) not in found:
                found.append((id_type, value))
        if not found:
            raise InvalidRequest(
                "name the person: userId, anonymousId, email, or idType with idValue",
                code="invalid_subject",
            )
        return cls(tuple(found))

    @property
    def nodes(self) -> list[str]:
        return [node(t, v) for t, v in self.identifiers]


def _check_text(id_type: str, value: str) -> None:
    """Refuse a value that is not Unicode text (a lone surrogate, from JSON's ``"\ud800"``
    or an undecodable command-line byte): no store could hash, match or keep it, and the
    request would fail later with an encoding error instead of now with a clear one."""
    at = lone_surrogate(value)
    if at is not None:
        raise InvalidRequest(
            f"the {id_type} value is not valid Unicode text: it has a lone surrogate"
            f" (U+{ord(value[at]):04X}) at character {at}",
            code="invalid_subject",
        )


@dataclass
class Person:
    """Every identifier of the person and the precise "is this record about them?" test."""

    workspace: str
    nodes: set[str]
    #: Current profile ids (where the person's identifiers are now).
    profiles: set[str] = field(default_factory=set)
    #: Every profile id the person's identifiers ever had or could have had.
    profile_ids: set[str] = field(default_factory=set)
    #: PII trait values (decrypted), used to find free-text mentions (violation messages).
    pii: set[str] = field(default_factory=set)
    #: ``eventId`` of the person's decisions, filled while their decisions are found.
    decision_ids: set[str] = field(default_factory=set)
    #: Identifier types that are trait keys in events (``profiles.id_traits``).
    id_traits: tuple[str, ...] = ()
    #: Keyed hashes of the identifiers (pseudonymous id columns such as ``user_hash``).
    hashes: set[str] = field(default_factory=set)
    _by_type: dict[str, set[str]] = field(init=False, repr=False, default_factory=dict)
    _mart_keys: set[str] = field(init=False, repr=False, default_factory=set)
    #: JSON key → values that name the person under it (emails are handled apart).
    _by_key: dict[str, set[str]] = field(init=False, repr=False, default_factory=dict)
    #: Other identifier types (id traits, external ids) → values.
    _others: dict[str, set[str]] = field(init=False, repr=False, default_factory=dict)
    _free_text: re.Pattern[str] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        for key in self.nodes:
            id_type, value = split(key)
            self._by_type.setdefault(id_type, set()).add(value)
        keys = set(self.profile_ids) | self.values
        keys |= {f"anon:{a}" for a in self.anonymous} | {f"user:{u}" for u in self.users}
        self._mart_keys = keys
        users, anonymous = self.users, self.anonymous
        for names, values in (
            (_USER_KEYS, users),
            (_ANON_KEYS, anonymous),
            (_PREVIOUS_KEYS, users | anonymous),
            (_PROFILE_KEYS, keys),
            (_EVENT_KEYS, self.decision_ids),
        ):
            for name in names:
                self._by_key[name] = values
        self._others = {
            t: v for t, v in self._by_type.items() if t not in (USER_ID, ANONYMOUS_ID, EMAIL)
        }

    @property
    def users(self) -> set[str]:
        return self._by_type.get(USER_ID, set())

    @property
    def anonymous(self) -> set[str]:
        return self._by_type.get(ANONYMOUS_ID, set())

    @property
    def emails(self) -> set[str]:
        return self._by_type.get(EMAIL, set())

    def of_type(self, id_type: str) -> set[str]:
        return self._by_type.get(id_type, set())

    @property
    def values(self) -> set[str]:
        """Every identifier value (all types)."""
        return {v for values in self._by_type.values() for v in values}

    @property
    def mart_keys(self) -> set[str]:
        """Values that name the person in the marts (``person_id``: a profile id,
        ``anon:<anonymousId>`` or ``user:<userId>``) and in id columns of other tables;
        once :attr:`hashes` are known, also those of a person whose events the lake holds
        pseudonymised: the hashes and ``pseudo:<hash>`` (``anon:``/``user:`` of a hash in
        marts built before ``pseudo:`` keys existed)."""
        hashed = self.hashes
        if not hashed:
            return self._mart_keys
        return (
            self._mart_keys
            | hashed
            | {prefix + h for h in hashed for prefix in ("pseudo:", "anon:", "user:")}
        )

    # -- the precise test ---------------------------------------------------------------

    def mentions(self, value: Any, depth: int = 0) -> bool:
        """Whether a JSON value names the person in an identifying field (any depth)."""
        if depth > _MAX_DEPTH:
            return False
        if isinstance(value, Mapping):
            if self._mapping_names(value):
                return True
            return any(
                self.mentions(inner, depth + 1)
                for inner in value.values()
                if isinstance(inner, Mapping | list)
            )
        if isinstance(value, list):
            return any(
                self.mentions(inner, depth + 1)
                for inner in value
                if isinstance(inner, Mapping | list)
            )
        return False

    def _mapping_names(self, value: Mapping[str, Any]) -> bool:
        for key, inner in value.items():
            if inner is None or isinstance(inner, Mapping | list | bool):
                continue
            text = str(inner).strip()
            wanted = self._by_key.get(key)
            if wanted is None:
                lowered = key.lower()
                if lowered == EMAIL:
                    text, wanted = text.lower(), self._by_type.get(EMAIL)
                else:
                    wanted = self._others.get(lowered)
            if wanted and text in wanted:
                return True
        return self._names_external_id(value)

    def _names_external_id(self, value: Mapping[str, Any]) -> bool:
        """A ``context.externalIds`` entry: ``{"id": ..., "type": ...}``."""
        if "id" not in value or "type" not in value:
            return False
        id_type = str(value.get("type", "")).strip().lower().replace("-", "_")
        return str(value.get("id", "")).strip() in self._others.get(id_type, ())

    def mentions_text(self, text: str | bytes | None) -> bool:
        """:meth:`mentions` on JSON text; text that is not JSON is searched for the quoted
        identifiers (``"u1"``) instead."""
        if text is None:
            return False
        try:
            return self.mentions(json.loads(text))
        except (ValueError, TypeError):
            raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
            lowered = raw.lower()
            return any(
                (lowered if insensitive else raw).find(needle) >= 0
                for needle, insensitive in self.needles()
            )

    def mentions_free_text(self, text: str | None) -> bool:
        """Whether free text (a violation message) names an identifier or a PII value as a
        whole word."""
        if not text:
            return False
        pattern = self._free_text_pattern()
        return pattern is not None and pattern.search(text) is not None

    def _free_text_pattern(self) -> re.Pattern[str] | None:
        if self._free_text is not None:
            return self._free_text
        terms = sorted(
            {v for v in self.values if len(v) >= 2} | {p for p in self.pii if len(p) >= 3},
            key=len,
            reverse=True,
        )
        if not terms:
            return None
        alternation = "|".join(re.escape(t) for t in terms)
        self._free_text = re.compile(
            f"(?<![{_ID_CHARS}])(?:{alternation})(?![{_ID_END}]|\\.[A-Za-z0-9])",
            re.IGNORECASE,
        )
        return self._free_text

    # -- pre-filters --------------------------------------------------------------------

    def needles(self) -> list[tuple[bytes, bool]]:
        """(bytes, case-insensitive) to search JSON text for before :meth:`mentions`: each
        identifier as a JSON string, quotes included (so ``"u1"`` never finds ``"u10"``),
        as msgspec writes it and as ``json.dumps`` writes it."""
        found: dict[bytes, bool] = {}
        for id_type, values in self._by_type.items():
            for value in values:
                insensitive = id_type == EMAIL
                for encoded in _json_forms(value):
                    key = encoded.lower() if insensitive else encoded
                    found[key] = found.get(key, False) or insensitive
        for value in self.profile_ids | self.decision_ids:
            for encoded in _json_forms(value):
                found.setdefault(encoded, False)
        return sorted(found.items())

    def raw_needles(self, min_length: int = 6) -> list[bytes]:
        """Identifier values as raw UTF-8, for residue checks of stored bytes: every
        identifier, and e-mail addresses also as the traits spelled them."""
        values = {v for v in self.values if len(v) >= min_length}
        values |= {p for p in self.pii if "@" in p and p.lower() in self.emails}
        return sorted({v.encode("utf-8", "surrogatepass") for v in values})

    def digests(self, hasher: Any) -> list[str]:
        """Keyed hashes of every identifier (``Pseudonymizer.digest`` of the node)."""
        return sorted(hasher.digest(self.workspace, n) for n in self.nodes)

    def hash_forms(self, hasher: Any) -> set[str]:
        """Every keyed hash a pseudonymous column may hold for the person: digest and
        pseudonym, of each identifier's value and of its ``type:value`` node, and the
        node's unlinked hash (a pseudonymised row's)."""
        found: set[str] = set()
        for key in self.nodes:
            for text in (key, split(key)[1]):
                found.add(hasher.digest(self.workspace, text))
                found.add(hasher.pseudonym(self.workspace, text))
            found.add(hasher.unlinked(self.workspace, key))
        return found


def _json_forms(value: str) -> Iterator[bytes]:
    compact = _encode(value)
    yield compact
    ascii_form = json.dumps(value).encode()
    if ascii_form != compact:
        yield ascii_form


def _pii_texts(
    workspace: str, traits: dict[str, Any], is_pii: fields.IsPii, cipher: FieldCipher | None
) -> set[str]:
    """The text values stored under a PII field name at any depth of ``traits``
    (``address.street``; decrypted), never every string of an object-valued PII field (its
    city, or a phone's "mobile" type, would match other people's messages)."""
    texts: set[str] = set()
    pending = fields.values(traits, is_pii)
    while pending:
        found = pending.pop()
        value = cipher.decrypt_all(workspace, found) if cipher else found
        if isinstance(value, str):
            if value.strip():
                texts.add(value.strip())
        elif isinstance(value, int | float) and not isinstance(value, bool):
            texts.add(str(value))  # a phone number sent as a number
        elif isinstance(value, list):  # several values under the name: each of them
            pending.extend(value)
        else:  # an object (decrypted): its own PII fields
            pending.extend(fields.values(value, is_pii))
    return texts


def resolve_person(
    workspace: str,
    subject: Subject,
    store: ProfileStore,
    *,
    cipher: FieldCipher | None = None,
    pii_fields: Sequence[str] = (),
    id_traits: Sequence[str] = (),
) -> Person:
    """Widen the subject to every identifier of every profile it belongs to."""
    nodes = set(subject.nodes)
    profiles: set[str] = set()
    frontier = set(nodes)
    # Profiles are closed clusters, so one round suffices; loop for identifiers that the
    # profile's members name (none today) without ever going round in circles.
    while frontier:
        found = store.nodes(workspace, frontier)
        fresh = {s.profile_id for s in found.values()} - profiles
        profiles |= fresh
        frontier = set()
        for pid in fresh:
            for member in store.profile_nodes(workspace, pid):
                if member.node not in nodes:
                    nodes.add(member.node)
                    frontier.add(member.node)
    profile_ids = set(profiles) | {derive_profile_id(workspace, n) for n in nodes}
    for pid in profiles:
        for merge in store.merges(workspace, pid):
            profile_ids.update((merge.from_profile, merge.into_profile))
    pii: set[str] = set()
    is_pii = fields.PiiRules(pii_fields, ()).is_pii
    for item in store.nodes(workspace, nodes).values():
        if item.state is not None:
            traits = {name: stored for name, (stored, _stamp) in item.state.traits.items()}
            pii |= _pii_texts(workspace, traits, is_pii, cipher)
    return Person(
        workspace,
        nodes,
        profiles=profiles,
        profile_ids=profile_ids,
        pii=pii,
        id_traits=tuple(t.lower() for t in id_traits),
    )


def find_nodes_by_digest(
    store: ProfileStore, workspace: str, digests: set[str], hasher: Any
) -> list[str]:
    """Identifiers of the profile store whose keyed hash is one of ``digests`` (how a
    request whose identifiers were only kept in memory is resumed after a restart)."""
    if not isinstance(store, SqlProfileStore) or not digests:
        return []
    from sqlalchemy import select

    from auie.profiles.store.tables import identity_nodes

    c = identity_nodes.c
    found: list[str] = []
    query = select(c.node).where(c.workspace_id == workspace)
    with store.engine.connect() as conn:
        for (key,) in conn.execution_options(yield_per=10_000).execute(query):
            if hasher.digest(workspace, key) in digests:
                found.append(str(key))
    return found
