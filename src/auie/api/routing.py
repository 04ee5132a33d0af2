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

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from auie.jsontext import NotStandardJSON, loads, utf8_problem


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
