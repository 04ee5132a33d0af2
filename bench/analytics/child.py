"""One analysis, timed in a process of its own: ``python -m bench.analytics.child SPEC``.

The child opens the data directory as ``auie serve`` would (``Runtime(Settings(...))``)
and calls the analysis through the function the API route calls
(``funnels(Scope.of(runtime, workspace), FunnelsIn)``, and so on): the first call is the
*cold* run (a fresh process: no DuckDB connection or views yet, and, unless told
otherwise, the data set's files evicted from the OS page cache first), then ``repeat``
warm runs. Beside each run: wall and CPU seconds (all threads), the 1-minute load average
and the CPU pressure stall; at the end the process's peak RSS. With ``explain`` it also
writes DuckDB's ``EXPLAIN ANALYZE`` of the analysis's SQL. The figures go to stdout as
one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auie.analytics.engine import QueryEngine, QueryResult
from auie.analytics.funnels import funnels
from auie.analytics.models import FunnelsIn, RetentionIn, TrendsIn
from auie.analytics.persons import Scope
from auie.analytics.retention import retention
from auie.analytics.trends import trends
from auie.config import load_settings
from auie.runtime import Runtime
from bench.ingest.server import load_average, pressure

Analysis = Callable[[Scope, Any], Any]
KINDS: dict[str, tuple[Analysis, type[Any]]] = {
    "funnel": (funnels, FunnelsIn),
    "retention": (retention, RetentionIn),
    "trend": (trends, TrendsIn),
}


def evict(directory: Path) -> int:
    """Drop the files under ``directory`` from the OS page cache (only these files:
    ``posix_fadvise(DONTNEED)``); returns the bytes concerned."""
    total = 0
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += path.stat().st_size
        finally:
            os.close(fd)
    return total


def summary(kind: str, result: Any) -> dict[str, Any]:
    """A few figures of the answer, to show it is meaningful."""
    if kind == "funnel":
        return {
            "steps": [
                {"event": s.event, "count": s.count, "rate": s.conversion_rate,
                 "median_s": s.median_seconds_to_convert}
                for s in result.steps
            ]
        }  # fmt: skip
    if kind == "retention":
        return {
            "cohorts": [
                {"cohort": c.cohort.date().isoformat(), "size": c.size, "rates": c.rates}
                for c in result.cohorts
            ]
        }
    return {
        "buckets": len(result.buckets),
        "series": [
            {"event": s.event, "breakdown": s.breakdown, "other": s.other, "total": s.total}
            for s in result.series
        ],
    }


class _Recorder:
    """Wraps the engine to keep the SQL and parameters of the analysis's queries."""

    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine
        self.queries: list[tuple[str, Any]] = []

    def query(self, workspace: str, sql: str, params: Any = None, **kwargs: Any) -> QueryResult:
        self.queries.append((sql, params))
        return self.engine.query(workspace, sql, params, **kwargs)


def explain(runtime: Runtime, workspace: str, queries: list[tuple[str, Any]]) -> str:
    from auie.analytics.duckdb_engine import DuckDBEngine

    engine = runtime.analytics
    assert isinstance(engine, DuckDBEngine)
    state = engine._refresh(workspace)
    out = []
    for sql, params in queries:
        cursor = state.connection.cursor()
        try:
            cursor.execute("EXPLAIN ANALYZE " + sql, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        out.append(sql)
        out.extend(str(row[-1]) for row in rows)
    return "\n".join(out)


def _run(call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    cpu, started = time.process_time(), time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    return result, {
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "load": load_average(),
        "cpu_pressure": pressure()["cpu"],
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    data_dir = Path(spec["data_dir"])
    evicted = evict(data_dir / "lake") if spec.get("evict", True) else 0
    kind = spec["kind"]
    function, model = KINDS[kind]
    request = model.model_validate(spec["request"])
    opened = time.perf_counter()
    overrides = {"data_dir": str(data_dir), **(spec.get("set") or {})}
    runtime = Runtime(load_settings(overrides, environ={}))
    scope = Scope.of(runtime, spec["workspace"])
    recorder = _Recorder(scope.engine)
    recorded = Scope(recorder, scope.workspace, scope.profiles)  # type: ignore[arg-type]
    open_s = time.perf_counter() - opened
    load_from = load_average()
    result, cold = _run(lambda: function(recorded, request))
    runs = []
    for _ in range(int(spec["repeat"])):
        result, run = _run(lambda: function(scope, request))
        runs.append(run)
    out: dict[str, Any] = {
        "kind": kind,
        "open_s": open_s,
        "evicted_bytes": evicted,
        "load_from": load_from,
        "cold": cold,
        "runs": runs,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "queries": len(recorder.queries),
        "answer": summary(kind, result),
    }
    if spec.get("explain"):
        target = Path(spec["explain"])
        target.write_text(explain(runtime, spec["workspace"], recorder.queries) + "\n")
        out["explain"] = str(target)
    runtime.close()
    return out


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1])), default=str), flush=True)
