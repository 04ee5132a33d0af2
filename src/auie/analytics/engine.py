"""The query engine interface: SQL over one workspace's lake tables and marts.

Every query sees only its workspace: the lake tables (``events``, ``identities``,
``profiles``, ``dead_letters``) as of their current snapshots, and the marts the
transformation built. Untrusted SQL (``POST /v1/sql``) may only be one ``SELECT``; every
query has a row limit, a timeout and a memory limit, and may have a limit on the size of
its rows as JSON (:func:`json_bytes`).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    #: More rows existed than the row limit, or the byte limit, allowed.
    truncated: bool = False
    seconds: float = 0.0

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class QueryEngine(ABC):
    """SQL over a workspace's lake and marts."""

    @abstractmethod
    def query(
        self,
        workspace: str,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        timeout: float | None = None,
        untrusted: bool = False,
        pseudonymous: bool = False,
        max_bytes: int | None = None,
    ) -> QueryResult:
        """Run one query; ``untrusted`` SQL must be a single read-only SELECT that reads the
        workspace's tables by name; ``pseudonymous`` queries see keyed hashes instead of
        identifiers (callers without ``pii:read``); ``max_bytes``: keep only the first rows
        whose :func:`json_bytes` add up to at most this (``truncated`` if rows were left
        out), fetching no more than that needs."""

    @abstractmethod
    def tables(
        self, workspace: str, *, pseudonymous: bool = False
    ) -> dict[str, list[tuple[str, str]]]:
        """Every table and mart the workspace's queries can read, with column types."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


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


def json_bytes(row: Sequence[Any]) -> int:
    """The size of a row in a JSON reply: UTF-8 bytes of the compact JSON array of its
    :func:`jsonable` values (the separating comma of the rows not counted)."""
    text = json.dumps([jsonable(v) for v in row], separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", "surrogatepass"))
