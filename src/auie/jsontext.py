"""Standard JSON text, as every AUIE input must be: UTF-8, finite numbers, no lone
surrogate. Python's ``json`` accepts ``NaN``, ``Infinity`` and ``1e400`` (read as infinity)
and reads ``"\\ud800"`` into a string nothing can encode; :func:`loads` refuses them, and
:func:`utf8_problem` says where a byte string stops being UTF-8. The API's JSON routes
(:mod:`auie.api.routing`), the collector (:mod:`auie.collect.body`) and the CLI's file
readers share them, so each input is held to one rule with one wording.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NotStandardJSON(ValueError):
    """Standard JSON it is not: a number that is no finite float, or a lone surrogate."""


def _constant(name: str) -> float:
    raise NotStandardJSON(f"{name} is not a JSON number; numbers must be finite")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStandardJSON(f"{text[:40]} is beyond the range of finite numbers")
    return value


#: A UTF-8 byte order mark: RFC 8259 lets a reader ignore it, and AUIE's readers do.
BOM = b"\xef\xbb\xbf"
#: Digits of the longest integer read (Python refuses to convert longer ones itself, with a
#: ValueError that would surface as "error parsing the body").
MAX_INT_DIGITS = 4300


def _int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise NotStandardJSON(
            f"an integer of {digits} digits is beyond the {MAX_INT_DIGITS} digits read"
        )
    return int(text)


def loads(body: bytes | str) -> Any:
    """``json.loads`` refusing non-finite numbers (:class:`NotStandardJSON`) and lone
    surrogates (``"\\ud800"`` alone: no store can encode it, and it would fail later).
    Bytes must be UTF-8 (a leading BOM is ignored; :class:`UnicodeDecodeError` otherwise):
    ``json.loads`` would also read UTF-16 and UTF-32, where the escapes look different."""
    if isinstance(body, bytes):
        text = body.removeprefix(BOM).decode("utf-8")  # UTF-8 holds no lone surrogate
        suspect = "\\ud" in text or "\\uD" in text
    else:
        text = body
        suspect = "\\ud" in text or "\\uD" in text or lone_surrogate(text) is not None
    value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    if suspect:  # only then can a parsed string hold one: walk the value
        _check_surrogates(value, "")
    return value


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in ``text`` (which UTF-8 cannot hold: it
    comes from JSON's ``"\\ud800"`` or an undecodable command-line byte), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _check_surrogates(value: Any, where: str) -> None:
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                _check_text(key, f"{at}.{key}" if at else key, key=True)
                stack.append((inner, f"{at}.{key}" if at else key))
        elif isinstance(item, list):
            stack.extend((inner, f"{at}.{i}" if at else str(i)) for i, inner in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, at)


def _check_text(text: str, where: str, *, key: bool = False) -> None:
    at = lone_surrogate(text)
    if at is not None:
        shown = where.encode("utf-8", "backslashreplace").decode()[:200] or "body"
        raise NotStandardJSON(
            f"{shown}: the {'key' if key else 'text'} has a lone surrogate"
            f" (U+{ord(text[at]):04X}) at character {at}; JSON text must be"
            " valid Unicode (an escaped surrogate needs its pair)"
        )


def utf8_problem(body: bytes) -> str | None:
    """Where ``body`` stops being UTF-8, in words (its byte offset in the whole body, which
    the JSON decoder's own message does not give), or None when it is UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"body is not UTF-8 text: byte 0x{body[exc.start]:02x} at offset {exc.start}:"
            f" {exc.reason}"
        )
    return None
