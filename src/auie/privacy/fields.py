"""Configured PII fields (``privacy.pii_fields``, ``privacy.pii_properties``) in a JSON value,
at any depth or at the top level only.

A field is PII by its name (the predicate ``is_pii``, case-insensitive in practice), in an
object at any depth up to :data:`MAX_DEPTH` (``limit``), objects inside arrays included:
the ``email`` of ``traits.contact`` as much as a top-level ``email``. A PII field's whole
value is one field (an ``address`` object is encrypted or removed as one); the walk does
not go into it. Null values are no PII. The privacy stage walks the person's traits (and an
event's extra fields) at any depth and an event's ``properties`` at the top level only (a
product's ``name`` in ``properties.products`` is no person's; see
:mod:`auie.process.privacy_gate`). :class:`PiiRules` holds both lists of names and is what
the privacy stage and the pseudonymous SQL views (:mod:`auie.analytics.pseudonymous`) ask,
so both find the same fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from auie.config import PrivacyConfig
    from auie.profiles.state import ComputedTrait

#: Objects and arrays deeper than this are not looked into (as the free-text scan).
MAX_DEPTH = 8
#: How deep PII fields are looked for in ``properties``: the top level only. Nested objects
#: of an event's properties are mostly about things, not the person (a product's ``name``
#: in ``products``, an order's ``address`` of a store); the person's own objects are traits.
PROPERTIES_DEPTH = 0

IsPii = Callable[[str], bool]
#: Where a JSON value sits in an event, for :meth:`PiiRules.strip`: a person's traits (and
#: ``context.traits``) and the extra top-level fields at any depth, ``properties`` at the top
#: level with its own names.
Holder = Literal["traits", "extra", "properties"]
#: Names remembered per rule set before the memo is emptied (a bound, not a tuning knob).
_MEMO_MAX = 100_000


class PiiRules:
    """Which fields are PII: a name of ``fields`` (any case) in traits and extra fields, a
    name of ``properties`` at the top level of an event's properties."""

    def __init__(self, fields: Iterable[str], properties: Iterable[str]) -> None:
        self.fields = frozenset(f.lower() for f in fields)
        self.properties = frozenset(f.lower() for f in properties)
        self._memo: dict[str, bool] = {}
        self._property_memo: dict[str, bool] = {}

    @classmethod
    def of(cls, config: PrivacyConfig) -> PiiRules:
        return cls(config.pii_fields, config.property_pii_fields)

    def __bool__(self) -> bool:
        return bool(self.fields or self.properties)

    def is_pii(self, key: str) -> bool:
        """Whether ``key`` names a PII field of traits or extra fields (remembered)."""
        return _named(self._memo, self.fields, key)

    def is_pii_property(self, key: str) -> bool:
        """Whether ``key`` names a PII field at the top level of properties (remembered)."""
        return _named(self._property_memo, self.properties, key)

    def computed_over(self, computed: Iterable[ComputedTrait]) -> frozenset[str]:
        """The names of the declared computed traits over a PII property: they hold what
        that property held, so they count as PII wherever a PII property does."""
        return frozenset(
            trait.name
            for trait in computed
            if trait.property is not None and self.is_pii_property(trait.property)
        )

    def names_of(self, holder: Holder) -> frozenset[str]:
        """The (lower-case) names that count in ``holder``."""
        return self.properties if holder == "properties" else self.fields

    def strip(self, holder: Holder, value: Any) -> Any:
        """``value`` (decoded JSON found at ``holder``) without its PII fields."""
        if holder == "properties":
            return without(value, self.is_pii_property, PROPERTIES_DEPTH)
        return without(value, self.is_pii)


def _named(memo: dict[str, bool], names: frozenset[str], key: str) -> bool:
    """Whether ``key`` is one of ``names`` in any case, remembered in ``memo``."""
    known = memo.get(key)
    if known is None:
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        known = memo[key] = key.lower() in names
    return known


def _fields(
    value: Any, is_pii: IsPii, limit: int = MAX_DEPTH, depth: int = 0
) -> Iterator[tuple[dict[str, Any], str]]:
    """(object, name) of every PII field with a value in ``value``, at depths up to
    ``limit`` (0: the top level only)."""
    if type(value) is dict:
        for key, inner in value.items():
            if inner is None:
                continue
            if is_pii(key):
                yield value, key
            elif type(inner) in (dict, list) and depth < limit:
                yield from _fields(inner, is_pii, limit, depth + 1)
    elif type(value) is list and depth < limit:
        for inner in value:
            if type(inner) in (dict, list):
                yield from _fields(inner, is_pii, limit, depth + 1)


def holds(value: Any, is_pii: IsPii, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (an object or array) holds a PII field with a value."""
    if limit == 0 and type(value) is dict:  # the top level (an event's properties): no walk
        return any(inner is not None and is_pii(key) for key, inner in value.items())
    return next(_fields(value, is_pii, limit), None) is not None


def names(value: Any, is_pii: IsPii, limit: int = MAX_DEPTH) -> frozenset[str]:
    """The names of the PII fields in ``value`` (as spelled there)."""
    if limit == 0 and type(value) is dict:
        return frozenset(key for key, inner in value.items() if inner is not None and is_pii(key))
    return frozenset(key for _, key in _fields(value, is_pii, limit))


def values(value: Any, is_pii: IsPii) -> list[Any]:
    """The values of the PII fields in ``value`` at any depth (nulls left out)."""
    return [holder[key] for holder, key in _fields(value, is_pii)]


def replace_in_place(
    value: Any, is_pii: IsPii, replace: Callable[[Any], Any], limit: int = MAX_DEPTH
) -> None:
    """Replace the value of every PII field in ``value`` (decoded JSON: dicts and lists,
    changed in place) by ``replace(value)``."""
    for holder, key in list(_fields(value, is_pii, limit)):
        holder[key] = replace(holder[key])


def without(value: Any, is_pii: IsPii, limit: int = MAX_DEPTH, depth: int = 0) -> Any:
    """``value`` without its PII fields (at depths up to ``limit``): a copy of what
    changed, the value itself where nothing did."""
    if type(value) is dict:
        out: dict[str, Any] | None = None
        for key, inner in value.items():
            if is_pii(key):
                if out is None:
                    out = dict(value)
                del out[key]
            elif type(inner) in (dict, list) and depth < limit:
                kept = without(inner, is_pii, limit, depth + 1)
                if kept is not inner:
                    if out is None:
                        out = dict(value)
                    out[key] = kept
        return value if out is None else out
    if type(value) is list and depth < limit:
        items = [without(inner, is_pii, limit, depth + 1) for inner in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
