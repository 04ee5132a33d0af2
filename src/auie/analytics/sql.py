"""``POST /v1/sql`` and ``auie analytics sql``: one untrusted SELECT, its rows as JSON."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from typing import TYPE_CHECKING, Any

from auie.analytics.models import SqlOut
from auie.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from auie.runtime import Runtime


def run_sql(
    runtime: Runtime,
    workspace: str,
    query: str,
    limit: int | None = None,
    *,
    pseudonymous: bool = False,
) -> SqlOut:
    """Run untrusted SQL on the workspace's tables with the row limit and timeout of
    ``[analytics]``; refused or failing statements raise :class:`InvalidRequest` (400).
    ``pseudonymous``: identifiers appear as keyed hashes (callers without ``pii:read``)."""
    config = runtime.settings.analytics
    try:
        result = runtime.analytics.query(
            workspace,
            query,
            limit=limit or config.sql_row_limit,
            timeout=config.query_timeout_seconds,
            untrusted=True,
            pseudonymous=pseudonymous,
        )
    except NotFound as exc:  # an unknown table is the query's fault, not a missing resource
        raise InvalidRequest(exc.message, code=exc.code) from None
    return SqlOut(
        columns=result.columns,
        rows=[[jsonable(value) for value in row] for row in result.rows],
        truncated=result.truncated,
    )


def jsonable(value: Any) -> Any:  # noqa: PLR0911 (one branch per type)
    """A DuckDB value as JSON: times in ISO-8601, intervals in seconds, decimals as numbers,
    non-finite numbers as strings, bytes in base64, lists, maps and structs recursively."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return str(value)
