"""Configured PII fields (``privacy.pii_fields``) at any depth of a JSON value.

A field is PII by its name (the predicate ``is_pii``, case-insensitive in practice), in an
object at any depth up to :data:`MAX_DEPTH`, objects inside arrays included: the
``email`` of ``traits.contact`` or of ``properties.customers[0]`` as much as a top-level
``email``. A PII field's whole value is one field (an ``address`` object is encrypted or
removed as one); the walk does not go into it. Null values are no PII.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

#: Objects and arrays deeper than this are not looked into (as the free-text scan).
MAX_DEPTH = 8

IsPii = Callable[[str], bool]


def _fields(value: Any, is_pii: IsPii, depth: int = 0) -> Iterator[tuple[dict[str, Any], str]]:
    """(object, name) of every PII field with a value in ``value``, at any depth."""
    if type(value) is dict:
        for key, inner in value.items():
            if inner is None:
                continue
            if is_pii(key):
                yield value, key
            elif type(inner) in (dict, list) and depth < MAX_DEPTH:
                yield from _fields(inner, is_pii, depth + 1)
    elif type(value) is list and depth < MAX_DEPTH:
        for inner in value:
            if type(inner) in (dict, list):
                yield from _fields(inner, is_pii, depth + 1)


def holds(value: Any, is_pii: IsPii) -> bool:
    """Whether ``value`` (an object or array) holds a PII field with a value."""
    return next(_fields(value, is_pii), None) is not None


def names(value: Any, is_pii: IsPii) -> frozenset[str]:
    """The names of the PII fields in ``value`` at any depth (as spelled there)."""
    return frozenset(key for _, key in _fields(value, is_pii))


def values(value: Any, is_pii: IsPii) -> list[Any]:
    """The values of the PII fields in ``value`` at any depth (nulls left out)."""
    return [holder[key] for holder, key in _fields(value, is_pii)]


def replace_in_place(value: Any, is_pii: IsPii, replace: Callable[[Any], Any]) -> None:
    """Replace the value of every PII field in ``value`` (decoded JSON: dicts and lists,
    changed in place) by ``replace(value)``."""
    for holder, key in list(_fields(value, is_pii)):
        holder[key] = replace(holder[key])


def strings(value: Any, depth: int = 0) -> list[str]:
    """The strings in a JSON value: itself, or those of its objects and arrays."""
    if isinstance(value, str):
        return [value]
    if depth >= MAX_DEPTH:
        return []
    if isinstance(value, dict):
        return [text for inner in value.values() for text in strings(inner, depth + 1)]
    if isinstance(value, list):
        return [text for inner in value for text in strings(inner, depth + 1)]
    return []


def without(value: Any, is_pii: IsPii, depth: int = 0) -> Any:
    """``value`` without its PII fields at any depth: a copy of what changed, the value
    itself where nothing did."""
    if type(value) is dict:
        out: dict[str, Any] | None = None
        for key, inner in value.items():
            if is_pii(key):
                if out is None:
                    out = dict(value)
                del out[key]
            elif type(inner) in (dict, list) and depth < MAX_DEPTH:
                kept = without(inner, is_pii, depth + 1)
                if kept is not inner:
                    if out is None:
                        out = dict(value)
                    out[key] = kept
        return value if out is None else out
    if type(value) is list and depth < MAX_DEPTH:
        items = [without(inner, is_pii, depth + 1) for inner in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
