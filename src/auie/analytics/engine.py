"""The query engine interface: SQL over one workspace's lake tables and marts.

Every query sees only its workspace: the lake tables (``events``, ``identities``,
``profiles``, ``dead_letters``) as of their current snapshots, and the marts the
transformation built. Untrusted SQL (``POST /v1/sql``) may only be one ``SELECT``; every
query has a row limit, a timeout and a memory limit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    #: More rows existed than the limit allowed.
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
    ) -> QueryResult:
        """Run one query; ``untrusted`` SQL must be a single read-only SELECT that reads the
        workspace's tables by name; ``pseudonymous`` queries see keyed hashes instead of
        identifiers (callers without ``pii:read``)."""

    @abstractmethod
    def tables(
        self, workspace: str, *, pseudonymous: bool = False
    ) -> dict[str, list[tuple[str, str]]]:
        """Every table and mart the workspace's queries can read, with column types."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
