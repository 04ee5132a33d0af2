"""Request bodies: size limits, gzip without inflating bombs, JSON decoding."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from auie.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from auie.jsontext import BOM, utf8_problem

_ACCEPTED_TYPES = frozenset({"", "application/json", "text/plain"})
_GZIP = frozenset({"gzip", "x-gzip"})
_decoder = msgspec.json.Decoder()


def check_content_type(content_type: str | None) -> None:
    """JSON may arrive as application/json or text/plain (browser beacons), UTF-8 only."""
    if not content_type:
        return
    media, _, params = content_type.partition(";")
    if media.strip().lower() not in _ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media.strip()!r} is not accepted; send application/json or text/plain"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType(
                "only the UTF-8 charset is accepted", code="unsupported_charset"
            )


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding; never produce more than ``limit`` bytes (a gzip bomb is refused)."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in _GZIP:
        raise UnsupportedMediaType(
            f"Content-Encoding {coding!r} is not accepted; use gzip or none",
            code="unsupported_encoding",
        )
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"body is not valid gzip: {exc}", code="invalid_gzip") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body is larger than {limit} bytes")
    if not inflater.eof:
        raise InvalidRequest("gzip body is truncated", code="invalid_gzip")
    return data


def decode_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a precise ``invalid_json`` error. A leading UTF-8 byte
    order mark is ignored, as RFC 8259 allows and the rest of the API does."""
    text = body.removeprefix(BOM)
    if not text.strip():
        raise InvalidRequest("request body is empty", code="invalid_json")
    try:
        value = _decoder.decode(text)
    except UnicodeDecodeError:
        raise InvalidRequest(  # the offset in the body as sent, BOM included
            utf8_problem(body) or "body is not UTF-8 text", code="invalid_json"
        ) from None
    except msgspec.DecodeError as exc:
        reason = str(exc)
        lone = "surrogate" in reason or ("truncated" in reason and b"\\ud" in text.lower())
        if lone:  # msgspec's words for "\ud800" alone (at a string's end: "truncated")
            reason += "; a \\ud800-\\udfff escape must be one half of a pair (valid Unicode)"
        raise InvalidRequest(f"body is not valid JSON: {reason}", code="invalid_json") from None
    except msgspec.ValidationError as exc:
        raise InvalidRequest(
            f"body has an unrepresentable value: {exc}", code="invalid_json"
        ) from None
    except RecursionError:
        raise InvalidRequest("body JSON is nested too deeply", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRequest("body must be a JSON object", code="invalid_json")
    return value
