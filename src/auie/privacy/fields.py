"""Configured PII fields (``privacy.pii_fields``) at any depth of a JSON value.

A field is PII by its name (the predicate ``is_pii``, case-insensitive in practice), in an
object at any depth up to :data:`MAX_DEPTH`, objects inside arrays included: the
``email`` of ``traits.contact`` or of ``properties.customers[0]`` as much as a top-level
``email``. A PII field's whole value is one field (an ``address`` object is encrypted or
removed as one); the walk does not go into it. Null values are no PII.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Objects and arrays deeper than this are not looked into (as the free-text scan).
MAX_DEPTH = 8

IsPii = Callable[[str], bool]


def holds(value: Any, is_pii: IsPii, depth: int = 0) -> bool:
    """Whether ``value`` (an object or array) holds a PII field with a value."""
    if type(value) is dict:
        for key, inner in value.items():
            if inner is None:
                continue
            if is_pii(key):
                return True
            if (
                type(inner) in (dict, list)
                and depth < MAX_DEPTH
                and holds(inner, is_pii, depth + 1)
            ):
                return True
    elif type(value) is list:
        return depth < MAX_DEPTH and any(
            holds(inner, is_pii, depth + 1) for inner in value if type(inner) in (dict, list)
        )
    return False


def names(value: Any, is_pii: IsPii) -> frozenset[str]:
    """The names of the PII fields in ``value`` at any depth (as spelled there)."""
    found: set[str] = set()
    _names(value, is_pii, 0, found)
    return frozenset(found)


def _names(value: Any, is_pii: IsPii, depth: int, found: set[str]) -> None:
    if type(value) is dict:
        for key, inner in value.items():
            if is_pii(key):
                found.add(key)
            elif type(inner) in (dict, list) and depth < MAX_DEPTH:
                _names(inner, is_pii, depth + 1, found)
    elif type(value) is list and depth < MAX_DEPTH:
        for inner in value:
            if type(inner) in (dict, list):
                _names(inner, is_pii, depth + 1, found)


def replace_in_place(
    value: Any, is_pii: IsPii, replace: Callable[[Any], Any], depth: int = 0
) -> None:
    """Replace the value of every PII field in ``value`` (decoded JSON: dicts and lists,
    changed in place) by ``replace(value)``."""
    if type(value) is dict:
        for key, inner in value.items():
            if inner is None:
                continue
            if is_pii(key):
                value[key] = replace(inner)
            elif type(inner) in (dict, list) and depth < MAX_DEPTH:
                replace_in_place(inner, is_pii, replace, depth + 1)
    elif type(value) is list and depth < MAX_DEPTH:
        for inner in value:
            if type(inner) in (dict, list):
                replace_in_place(inner, is_pii, replace, depth + 1)


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
