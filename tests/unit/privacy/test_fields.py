"""PII fields at any depth of a JSON value (``auie.privacy.fields``)."""

from __future__ import annotations

import copy
from typing import Any

from auie.privacy import fields

PII = frozenset({"email", "phone", "address"})


def is_pii(name: str) -> bool:
    return name.lower() in PII


NESTED: dict[str, Any] = {
    "plan": "pro",
    "contact": {"Email": "ada@example.com", "kind": "work", "phone": None},
    "orders": [{"id": 1, "customer": {"phone": "+44 20 7946 0958"}}, 7, "text"],
    "address": {"street": "1 Analytical Way", "city": "London"},
}


def test_holds_finds_a_pii_field_at_any_depth_and_ignores_nulls() -> None:
    assert fields.holds(NESTED, is_pii)
    assert fields.holds({"a": [[{"email": "x"}]]}, is_pii)
    assert not fields.holds({"a": {"phone": None}, "b": [1, "email"]}, is_pii)
    assert not fields.holds({"plan": "pro"}, is_pii)


def test_the_walk_stops_at_the_depth_bound() -> None:
    deep: dict[str, Any] = {"email": "x"}
    for _ in range(fields.MAX_DEPTH + 1):
        deep = {"inner": deep}
    assert not fields.holds(deep, is_pii)
    shallow: dict[str, Any] = {"email": "x"}
    for _ in range(fields.MAX_DEPTH):
        shallow = {"inner": shallow}
    assert fields.holds(shallow, is_pii)


def test_replace_in_place_replaces_whole_values_of_pii_fields_only() -> None:
    value = copy.deepcopy(NESTED)
    fields.replace_in_place(value, is_pii, lambda v: f"enc({v!r})")
    assert value == {
        "plan": "pro",
        "contact": {"Email": "enc('ada@example.com')", "kind": "work", "phone": None},
        "orders": [
            {"id": 1, "customer": {"phone": "enc('+44 20 7946 0958')"}},
            7,
            "text",
        ],
        # the whole object, once: the walk does not go into a PII field
        "address": "enc({'street': '1 Analytical Way', 'city': 'London'})",
    }


def test_without_copies_only_what_changes() -> None:
    original = copy.deepcopy(NESTED)
    kept = fields.without(NESTED, is_pii)
    assert kept == {
        "plan": "pro",
        "contact": {"kind": "work"},
        "orders": [{"id": 1, "customer": {}}, 7, "text"],
    }
    assert original == NESTED  # not changed in place
    clean = {"plan": "pro", "tags": [{"a": 1}]}
    assert fields.without(clean, is_pii) is clean


def test_names_are_as_spelled_at_any_depth() -> None:
    assert fields.names(NESTED, is_pii) == {"Email", "phone", "address"}
    assert fields.names({"plan": "pro"}, is_pii) == frozenset()


def test_limit_zero_looks_at_the_top_level_only() -> None:
    """How an event's properties are read: a product's ``name`` in a nested object is not
    a person's."""
    assert not fields.holds({"products": [{"email": "x"}], "a": {"phone": "1"}}, is_pii, 0)
    assert fields.holds({"email": "x"}, is_pii, 0)
    assert not fields.holds({"email": None}, is_pii, 0)
    assert fields.names(NESTED, is_pii, 0) == {"address"}
    assert fields.without(NESTED, is_pii, 0) == {k: v for k, v in NESTED.items() if k != "address"}
    value = copy.deepcopy(NESTED)
    fields.replace_in_place(value, is_pii, lambda v: "enc", 0)
    assert value == {**NESTED, "address": "enc"}
