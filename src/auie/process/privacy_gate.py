"""The processor's privacy stage: suppression, PII in free text, field encryption, consent.

For every event, after enrichment and before identity resolution:

1. an event carrying an erased identifier (suppression list) is dropped and counted;
2. e-mail addresses, phone and card numbers in free-text properties are masked or flagged
   (``privacy.pii_in_text``);
3. configured PII fields (``privacy.pii_fields``: keys at any depth of ``traits``,
   ``context.traits`` and of the event's top-level fields that have no column of their own
   and so go to the lake's ``extra`` column; ``privacy.pii_properties``: top-level keys of
   ``properties``; see :mod:`auie.privacy.fields`) are encrypted whole with the data key
   of the event's primary identifier (``privacy.encrypt_pii``), so the profile store and
   the lake hold ciphertext and erasure can shred them (step 2 leaves them alone);
4. the lake row gets keyed hashes of the ids (``user_hash``, ``anonymous_hash``) for
   pseudonymous SQL access.

After identity resolution the person's ``analytics`` consent decides the lake row: kept,
pseudonymised (ids replaced by hashes that join nothing else: not the ids' own hashes,
which ``identities`` holds, see :meth:`~auie.privacy.crypto.Pseudonymizer.unlinked`;
traits, the client's own top-level fields, page properties and all of ``context`` but
:data:`KEPT_CONTEXT` removed, ``integrations`` reduced to its on/off switches, PII
properties removed, enrichment reduced to :data:`KEPT_ENRICHMENT`) or not written
(``privacy.without_analytics_consent``). A ``decisions`` row gets the ids' hashes too, and
those unlinked hashes in place of the ids without that consent
(:meth:`PrivacyGate.lake_decision`). Identity uses the event as sent (an encrypted e-mail
could not link profiles), which is why it is computed before step 3.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from auie.config import PrivacyConfig
from auie.lake.rows import TOP_LEVEL_FIELDS, as_text
from auie.privacy import consent, fields
from auie.privacy.crypto import FieldCipher, Pseudonymizer
from auie.privacy.fields import IsPii, PiiRules
from auie.privacy.pii import scan
from auie.privacy.suppression import SuppressionList

#: Entries of each per-identifier cache before it is emptied (a bound, not a tuning knob).
_CACHE_MAX = 100_000


def _holders(event: Mapping[str, Any], rules: PiiRules) -> list[tuple[Any, IsPii, int]]:
    """The objects (or arrays: the collector keeps a ``context.traits`` array as sent) of an
    event that hold PII fields, which names count in each and how deep to look: the traits
    (and ``context.traits``) at any depth, the properties at the top level with their own
    names. The top-level fields without a column of their own (the lake's ``extra``) are
    walked at any depth too: unlike properties they are never scanned as free text."""
    holders: list[tuple[Any, IsPii, int]] = [
        (event.get("traits"), rules.is_pii, fields.MAX_DEPTH),
        (event.get("properties"), rules.is_pii_property, fields.PROPERTIES_DEPTH),
    ]
    context = event.get("context")
    if isinstance(context, dict):
        holders.append((context.get("traits"), rules.is_pii, fields.MAX_DEPTH))
    return [h for h in holders if isinstance(h[0], dict | list)]


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _extras(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's top-level fields that have no column of their own (a track with
    ``"email": …`` beside ``properties``): they land in the lake's ``extra``."""
    if event.keys() <= TOP_LEVEL_FIELDS:  # nearly always: no set is built
        return {}
    return {k: v for k, v in event.items() if k not in TOP_LEVEL_FIELDS}


#: Segment's context fields that identify a person or their visit: a decision's context
#: loses them without ``analytics`` consent (and ``user``, the profile's part).
PERSONAL_CONTEXT = (
    "ip",
    "traits",
    "userAgent",
    "userAgentData",
    "page",
    "referrer",
    "location",
    "campaign",
    "groupId",
    "externalIds",
    "instanceId",
)
PERSONAL_DEVICE = ("id", "advertisingId", "adTrackingEnabled", "token", "name")
#: What a pseudonymised event's context keeps (everything else goes, nested keys too): of
#: Segment's context fields, what describes the product (the SDK, the app's build) and
#: coarse ones, each a string, number or boolean; a ``None`` entry is a scalar field, the
#: others objects with these keys. Like :data:`KEPT_ENRICHMENT`, no versions of the
#: person's software and no device model or screen size: with locale and timezone they
#: would single a device out again.
KEPT_CONTEXT: dict[str, frozenset[str] | None] = {
    "library": frozenset({"name", "version"}),
    "app": frozenset({"name", "version", "build", "namespace"}),
    "os": frozenset({"name"}),
    "device": frozenset({"type"}),
    "locale": None,
    "timezone": None,
    "channel": None,
}
#: Segment's page properties (where a page's URL, path and title are sent): a pseudonymised
#: event's properties lose them, as its context loses ``page``.
PAGE_PROPERTIES = ("url", "path", "referrer", "search", "title", "keywords")
#: The enrichment columns a pseudonymised event keeps.
KEPT_ENRICHMENT = frozenset({"browser_name", "os_name", "device_type"})


class PrivacyGate:
    """See the module docstring."""

    def __init__(
        self,
        config: PrivacyConfig,
        *,
        suppressions: SuppressionList,
        cipher: FieldCipher,
        pseudonyms: Pseudonymizer,
    ) -> None:
        self.config = config
        self.suppressions = suppressions
        self.cipher = cipher
        self.pseudonyms = pseudonyms
        self.rules = PiiRules.of(config)
        #: Keyed hashes of ids already computed: (workspace, id type, value) → pseudonym.
        self._pseudonyms: dict[tuple[str, str, str, bool], str | None] = {}
        #: Identifiers whose data keys were loaded or created: (workspace, node).
        self._keyed: set[tuple[str, str]] = set()

    # -- before identity resolution --------------------------------------------------------

    def suppressed(self, workspace: str, event: Mapping[str, Any]) -> bool:
        """Whether the event names an erased identifier (then it is counted as dropped)."""
        found = self.suppressions.suppressed_identifier(workspace, event)
        if found is None:
            return False
        self.suppressions.count_dropped(workspace, *found)
        return True

    def prepare_keys(self, workspace: str, nodes: Iterable[str]) -> None:
        """Create the data keys a batch will need in one transaction. Identifiers prepared
        before are skipped: the cipher keeps their keys (and would create a shredded one
        again on its own when encrypting)."""
        if not self.config.encrypt_pii:
            return
        keyed = self._keyed
        wanted = [n for n in nodes if (workspace, n) not in keyed]
        if not wanted:
            return
        self.cipher.ensure_keys(workspace, wanted)
        if len(keyed) + len(wanted) > _CACHE_MAX:
            keyed.clear()
        keyed.update((workspace, n) for n in wanted)

    def needs_key(self, event: Mapping[str, Any]) -> bool:
        """Whether the event holds a PII field to encrypt (stops at the first)."""
        rules = self.rules
        if not self.config.encrypt_pii or not rules:
            return False
        extras = _extras(event)
        return any(
            fields.holds(holder, is_pii, limit) for holder, is_pii, limit in _holders(event, rules)
        ) or (bool(extras) and fields.holds(extras, rules.is_pii))

    def protect(
        self,
        workspace: str,
        event: dict[str, Any],
        primary: str | None,
        *,
        has_pii_fields: bool = True,
    ) -> dict[str, Any]:
        """Mask free-text PII and encrypt PII fields in place; the lake's extra columns
        (hashed ids, PII flags).
        ``has_pii_fields=False`` (what :meth:`needs_key` said) skips looking for fields."""
        flags: set[str] = set()
        encrypting = self.config.encrypt_pii and primary is not None and has_pii_fields
        if self.config.pii_in_text != "keep":
            properties = event.get("properties")
            if isinstance(properties, dict) and properties:
                # PII fields about to be encrypted are left whole; any other text is scanned
                skip = self._skip(properties) if encrypting else frozenset()
                cleaned, found = scan(properties, self.config.pii_in_text, skip)
                event["properties"] = cleaned
                flags |= found
        if encrypting and primary is not None:

            def encrypt(value: Any) -> str:
                return self.cipher.encrypt(workspace, primary, value)

            for holder, is_pii, limit in _holders(event, self.rules):
                fields.replace_in_place(holder, is_pii, encrypt, limit)
            extras = _extras(event)  # never scanned as free text: walked at any depth
            if extras:
                fields.replace_in_place(extras, self.rules.is_pii, encrypt)
                event.update(extras)
        columns: dict[str, Any] = {
            "user_hash": self._hash(workspace, "user_id", event.get("userId")),
            "anonymous_hash": self._hash(workspace, "anonymous_id", event.get("anonymousId")),
        }
        if flags and self.config.pii_in_text == "flag":
            columns["pii_flags"] = ",".join(sorted(flags))
        return columns

    def _hash(
        self, workspace: str, id_type: str, value: Any, *, unlinked: bool = False
    ) -> str | None:
        """The id's keyed hash (remembered: the same people send event after event);
        ``unlinked``: the hash a pseudonymised row holds in its place
        (:meth:`~auie.privacy.crypto.Pseudonymizer.unlinked`)."""
        if not isinstance(value, str) or not value:
            return None
        key = (workspace, id_type, value, unlinked)
        cache = self._pseudonyms
        found = cache.get(key)
        if found is None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            hashed = self.pseudonyms.unlinked if unlinked else self.pseudonyms.pseudonym
            found = cache[key] = hashed(workspace, f"{id_type}:{value}")
        return found

    def _skip(self, properties: Mapping[str, Any]) -> frozenset[str]:
        """The PII field names of ``properties`` (top level): the free-text scan leaves them
        alone (they are encrypted whole, not masked)."""
        if not self.rules.properties:
            return frozenset()
        return fields.names(properties, self.rules.is_pii_property, fields.PROPERTIES_DEPTH)

    # -- after identity resolution ---------------------------------------------------------

    def allows_analytics(self, current: Mapping[str, Any] | None) -> bool:
        return consent.allowed(
            current or {}, "analytics", require_explicit=self.config.require_explicit_consent
        )

    def lake_decision(self, workspace: str, row: dict[str, Any], allowed: bool) -> dict[str, Any]:
        """The ``decisions`` row as the lake may hold it, changed in place: keyed hashes of
        its ids beside them (``user_hash``, ``anonymous_hash``). Without ``analytics``
        consent, in either ``without_analytics_consent`` mode, it is pseudonymised as an
        event is: unlinked hashes in ``user_hash``/``anonymous_hash`` and in place of the
        ids, the profile id hashed too (``identities`` would name the person), and its
        ``context`` without Segment's personal context fields (:data:`PERSONAL_CONTEXT`:
        IP, traits, user agent, page, referrer, location, campaign, group, external ids,
        the device's ids and name), its top-level PII fields, nor what the decision service
        joined from the profile (``user``: traits, computed traits, segments, features).
        The row
        is not dropped: it is the decision point's record of what was served (its
        experiment arms, off-policy training and evaluation), which the ``personalization``
        purpose governs."""
        unlinked = not allowed
        user_hash = self._hash(workspace, "user_id", row.get("user_id"), unlinked=unlinked)
        anonymous_hash = self._hash(
            workspace, "anonymous_id", row.get("anonymous_id"), unlinked=unlinked
        )
        row["user_hash"], row["anonymous_hash"] = user_hash, anonymous_hash
        if allowed:
            return row
        row["user_id"], row["anonymous_id"] = user_hash, anonymous_hash
        row["profile_id"] = self._hash(workspace, "profile_id", row.get("profile_id"))
        context = json.loads(row["context"]) if row.get("context") else None
        if isinstance(context, dict):
            context = fields.without(self._personal_context_removed(context), self.rules.is_pii, 0)
            context.pop("user", None)
            row["context"] = as_text(context)
        return row

    @staticmethod
    def _personal_context_removed(context: dict[str, Any]) -> dict[str, Any]:
        """A decision's ``context`` without Segment's personal context fields (in place);
        the caller's own fields (a decision's features) stay."""
        for key in PERSONAL_CONTEXT:
            context.pop(key, None)
        device = context.get("device")
        if isinstance(device, dict):
            for key in PERSONAL_DEVICE:
                device.pop(key, None)
        return context

    @staticmethod
    def _impersonal_context(context: Mapping[str, Any]) -> dict[str, Any]:
        """A pseudonymised event's ``context``: only the fields of :data:`KEPT_CONTEXT`
        (a client may put anything in an event's context, identifiers included); objects
        left empty are left out."""
        kept: dict[str, Any] = {}
        for key, inner in KEPT_CONTEXT.items():
            value = context.get(key)
            if inner is None:
                if _scalar(value):
                    kept[key] = value
            elif isinstance(value, Mapping):
                picked = {k: value[k] for k in sorted(inner) if _scalar(value.get(k))}
                if picked:
                    kept[key] = picked
        return kept

    @staticmethod
    def lake_enrichment(enrichment: Mapping[str, Any], allowed: bool) -> Mapping[str, Any]:
        """The enrichment columns a lake row may hold: without ``analytics`` consent only
        the coarse families of browser, OS and device (no versions, brand or model, page
        or campaign)."""
        if allowed:
            return enrichment
        return {key: value for key, value in enrichment.items() if key in KEPT_ENRICHMENT}

    def lake_event(
        self, workspace: str, event: Mapping[str, Any], columns: dict[str, Any], allowed: bool
    ) -> Mapping[str, Any] | None:
        """The event as the lake may hold it: as is, pseudonymised, or None (not written)."""
        if allowed:
            return event
        if self.config.without_analytics_consent == "drop":
            return None
        masked = copy.deepcopy(dict(event))
        for field, id_type in (
            ("userId", "user_id"),
            ("anonymousId", "anonymous_id"),
            ("previousId", "user_id"),
            ("groupId", "group_id"),
        ):
            if masked.get(field):
                masked[field] = self._hash(workspace, id_type, masked[field], unlinked=True)
        masked.pop("traits", None)
        for key in _extras(masked):  # a client's own top-level fields: anything at all
            del masked[key]
        integrations = masked.get("integrations")
        if isinstance(integrations, dict):  # destination switches; settings may hold ids
            masked["integrations"] = {k: v for k, v in integrations.items() if isinstance(v, bool)}
        if isinstance(masked.get("context"), dict):
            masked["context"] = self._impersonal_context(masked["context"])
        if isinstance(masked.get("properties"), dict):
            properties = self.rules.strip("properties", masked["properties"])
            for key in PAGE_PROPERTIES:
                properties.pop(key, None)
            masked["properties"] = properties
        columns["user_hash"] = masked.get("userId")
        columns["anonymous_hash"] = masked.get("anonymousId")
        return masked
