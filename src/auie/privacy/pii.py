"""PII found in free text: e-mail addresses, phone numbers and payment card numbers.

``mask`` replaces each finding with a placeholder (``[email]``, ``[phone]``, ``[card]``);
``flag`` keeps the text and reports which kinds were found; ``keep`` does nothing. Card
numbers are only reported when they pass the Luhn check, so order ids and timestamps are
not mistaken for cards.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[ .-]?\(?\d{2,4}\)?){2,5}(?![\w.])")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
_MAX_DEPTH = 8
#: Strings up to this long found free of PII are remembered (at most ``_CLEAN_MAX`` of
#: them): property values repeat (paths, product ids, search terms), and three regular
#: expression passes cost more than a set lookup. Strings with findings are not kept.
_CACHED_LENGTH = 256
_CLEAN_MAX = 50_000
_clean: set[str] = set()
#: What :func:`scan` looks into; any other JSON value is kept as it is.
_CONTAINERS = (str, dict, list, Mapping)
#: JSON's other values, told apart by their exact type before ``isinstance`` (a check
#: against ``Mapping`` goes through its abstract base class, for every number).
_SCALARS = frozenset({int, float, bool, type(None)})


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n *= 2
            n -= 9 if n > 9 else 0
        total += n
    return total % 10 == 0


#: The fewest digits of a card number (so the shortest text the card pattern can match).
_CARD_MIN = 13


def _card(found: set[str], match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if _CARD_MIN <= len(digits) <= 19 and _luhn(digits):
        found.add("card")
        return "[card]"
    return match.group()


def _email(found: set[str], match: re.Match[str]) -> str:
    found.add("email")
    return "[email]"


def _phone(found: set[str], match: re.Match[str]) -> str:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    # A bare run of digits is an id far more often than a phone number.
    shaped = text.startswith("+") or any(c in text for c in " .-()")
    if shaped and 7 <= len(digits) <= 15 and not _DATE.fullmatch(text.strip()):
        found.add("phone")
        return "[phone]"
    return match.group()


def scan_text(text: str, mode: str) -> tuple[str, set[str]]:
    """(text after masking, kinds found) for one string. E-mail addresses and card numbers
    are replaced only where a search found a candidate (most text has none)."""
    found: set[str] = set()
    masked = text
    if "@" in masked and _EMAIL.search(masked) is not None:
        masked = _EMAIL.sub(functools.partial(_email, found), masked)
    if len(masked) >= _CARD_MIN and _CARD.search(masked) is not None:
        masked = _CARD.sub(functools.partial(_card, found), masked)
    masked = _PHONE.sub(functools.partial(_phone, found), masked)  # candidates are common
    return (masked if mode == "mask" else text), found


_NONE: frozenset[str] = frozenset()


def _scan_string(text: str, mode: str) -> tuple[str, frozenset[str] | set[str]]:
    """:func:`scan_text`, skipped for a string already found clean (the findings do not
    depend on the mode, and without findings the text is unchanged)."""
    if text in _clean:
        return text, _NONE
    masked, found = scan_text(text, mode)
    if not found and len(text) <= _CACHED_LENGTH:
        if len(_clean) >= _CLEAN_MAX:
            _clean.clear()
        _clean.add(text)
    return masked, found


def scan(
    value: Any, mode: str, skip: frozenset[str] = frozenset(), depth: int = 0
) -> tuple[Any, set[str]]:
    """Mask or flag PII in every string of a JSON value (keys in ``skip`` of its top-level
    object are left alone; a nested key of the same name is scanned).

    Returns the value itself where nothing in it changed (a mapping or list is copied only
    if a string in it was masked), and a new set of the kinds found."""
    found: set[str] = set()
    return _scan(value, mode, skip, depth, found), found


def _scan(value: Any, mode: str, skip: frozenset[str], depth: int, found: set[str]) -> Any:
    """:func:`scan`, adding the kinds found to ``found``."""
    if mode == "keep" or depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        masked, kinds = _scan_string(value, mode)
        if kinds:
            found |= kinds
        return masked
    if isinstance(value, Mapping | list):
        return _scan_container(value, mode, skip, depth, found)
    return value


def _scan_container(
    value: Mapping[str, Any] | list[Any],
    mode: str,
    skip: frozenset[str],
    depth: int,
    found: set[str],
) -> Any:
    """:func:`_scan` of an object or array: a copy with what changed, if anything did."""
    items: Iterable[tuple[Any, Any]]
    copy: Callable[[Any], Any]
    if isinstance(value, Mapping):
        items, copy = value.items(), dict
    else:
        items, copy = enumerate(value), list
    out: Any = None
    for key, inner in items:
        if key in skip or type(inner) in _SCALARS or not isinstance(inner, _CONTAINERS):
            continue  # numbers, booleans and null hold no text
        changed = _scan(inner, mode, _NONE, depth + 1, found)  # skip: the top level's keys
        if changed is not inner:
            if out is None:
                out = copy(value)
            out[key] = changed
    return value if out is None else out
