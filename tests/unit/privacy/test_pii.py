"""PII in free text (:func:`auie.privacy.pii.scan`): the result is the same whether a
string is seen for the first time or again (strings found clean are remembered)."""

from __future__ import annotations

from typing import Any

import pytest

from auie.privacy import pii
from auie.privacy.pii import scan

VALUES: dict[str, Any] = {
    "note": "call +1 415 555 0100 or mail ada@example.com",
    "path": "/products/sku-01234",
    "card": "4111 1111 1111 1111",
    "order": "order 2024-05-01 #12345678901234",
    "nested": {"deep": ["ada@example.com", "plain", 3, None, True, 2.5]},
    "email": "secret@example.com",
}


@pytest.mark.parametrize("mode", ["mask", "flag"])
def test_a_second_scan_gives_the_first_result(mode: str) -> None:
    pii._clean.clear()
    first = scan(VALUES, mode, frozenset({"email"}))
    assert pii._clean  # clean strings were remembered ...
    assert not any("@" in text for text in pii._clean)  # ... and only those
    assert scan(VALUES, mode, frozenset({"email"})) == first


def test_masking_and_flags() -> None:
    pii._clean.clear()
    for _ in range(2):
        masked, found = scan(VALUES, "mask", frozenset({"email"}))
        assert found == {"email", "phone", "card"}
        assert masked["note"] == "call [phone] or mail [email]"
        assert masked["card"] == "[card]"
        assert masked["path"] == "/products/sku-01234"
        assert masked["order"] == VALUES["order"]
        assert masked["nested"] == {"deep": ["[email]", "plain", 3, None, True, 2.5]}
        assert masked["email"] == "secret@example.com"  # a PII field: encrypted, not masked
        flagged, kinds = scan(VALUES, "flag")
        assert flagged == VALUES
        assert kinds == {"email", "phone", "card"}


def test_the_input_is_never_changed_and_clean_values_come_back_as_they_are() -> None:
    pii._clean.clear()
    before = {"note": "mail ada@example.com", "deep": [{"x": "plain"}, "bob@example.com"]}
    copy = {"note": "mail ada@example.com", "deep": [{"x": "plain"}, "bob@example.com"]}
    masked, found = scan(before, "mask")
    assert found == {"email"}
    assert masked == {"note": "mail [email]", "deep": [{"x": "plain"}, "[email]"]}
    assert before == copy  # masking copies what it changes
    assert masked["deep"][0] is before["deep"][0]  # and only that
    clean = {"a": ["x", {"b": "y", "n": 3}], "c": None}
    for _ in range(2):  # first seen, then remembered
        same, kinds = scan(clean, "mask")
        assert same is clean
        assert kinds == set()


def test_the_remembered_strings_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    pii._clean.clear()
    monkeypatch.setattr(pii, "_CLEAN_MAX", 3)
    for index in range(10):
        assert scan(f"plain text {index}", "mask") == (f"plain text {index}", set())
    assert len(pii._clean) <= 3
    assert scan("x" * 300, "mask") == ("x" * 300, set())
    assert "x" * 300 not in pii._clean  # long strings are never kept


def test_skipped_keys_are_those_of_the_top_level_object_only() -> None:
    """The privacy stage skips the top-level PII properties it encrypts; a nested field of
    the same name is text like any other."""
    value = {"email": "ada@example.com", "recipient": {"email": "bob@example.com"}}
    masked, found = scan(value, "mask", frozenset({"email"}))
    assert masked == {"email": "ada@example.com", "recipient": {"email": "[email]"}}
    assert found == {"email"}
