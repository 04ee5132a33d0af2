"""``POST /v1/sql`` and ``auie analytics sql``: one untrusted SELECT, its rows as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auie.analytics.engine import jsonable
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
    """Run untrusted SQL on the workspace's tables with the row limit, reply size limit and
    timeout of ``[analytics]``; refused or failing statements raise :class:`InvalidRequest`
    (400).
    ``pseudonymous``: identifiers appear as keyed hashes (callers without ``pii:read``)."""
    config = runtime.settings.analytics
    try:
        result = runtime.analytics.query(
            workspace,
            query,
            limit=limit or config.sql_row_limit,
            max_bytes=config.sql_byte_limit,
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


__all__ = ["jsonable", "run_sql"]
