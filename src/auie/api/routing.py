"""Routes whose JSON bodies are standard JSON: no ``NaN``, ``Infinity`` or numbers beyond
the float range, and no lone surrogate (``"\\ud800"`` without its pair: Python reads it
into a string no store, hash or JSON response can encode, so it failed late, with a 500).

Python's ``json`` (which Starlette's ``Request.json`` uses) accepts ``NaN``, ``Infinity``
and ``-Infinity`` and reads ``1e400`` as infinity. Such values pass models typed ``Any``
and break later: a policy parameter stored as ``null``, a context served with NaN and
logged as ``null``. Every JSON router of the API (all but the collector's, which reads
with msgspec, and the form-encoded token endpoint) is built with
``route_class=StrictJSONRoute`` and refuses them with
``400 invalid_request`` before any model sees the body, as msgspec does on the fast paths,
and say so precisely for a body nested too deeply to parse.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from auie.collect.body import utf8_problem


class NotStandardJSON(ValueError):
    """Standard JSON it is not: a number that is no finite float, or a lone surrogate."""


def _constant(name: str) -> float:
    raise NotStandardJSON(f"{name} is not a JSON number; numbers must be finite")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStandardJSON(f"{text[:40]} is beyond the range of finite numbers")
    return value


def loads(body: bytes | str) -> Any:
    """``json.loads`` refusing non-finite numbers (:class:`NotStandardJSON`) and lone
    surrogates (``"\\ud800"`` alone: no store can encode it, and it would fail later)."""
    value = json.loads(body, parse_constant=_constant, parse_float=_float)
    text = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    if b"\\ud" in text.lower():  # only then can a parsed string hold one: walk the value
        _check_surrogates(value, "")
    return value


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
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = where.encode("utf-8", "backslashreplace").decode()[:200] or "body"
        raise NotStandardJSON(
            f"{shown}: the {'key' if key else 'text'} has a lone surrogate"
            f" (U+{ord(text[exc.start]):04X}) at character {exc.start}; JSON text must be"
            " valid Unicode (an escaped surrogate needs its pair)"
        ) from None


class StrictJSONRequest(Request):
    """A request whose :meth:`json` refuses non-finite numbers with a 400."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except NotStandardJSON as exc:
                raise HTTPException(status_code=400, detail=f"body: {exc}") from None
            except UnicodeDecodeError:  # Starlette would say "error parsing the body"
                problem = utf8_problem(await self.body()) or "body is not UTF-8 text"
                raise HTTPException(status_code=400, detail=problem) from None
            except RecursionError:  # Python's parser gives up near a thousand levels
                raise HTTPException(
                    status_code=400, detail="body: the JSON nests too deeply"
                ) from None
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route reading its JSON body with :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
