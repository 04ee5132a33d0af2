"""What the pseudonymised SQL views cost a caller without ``pii:read``:
``.venv/bin/python -m bench.analytics.pseudonymous``.

Builds an in-memory DuckDB table of the process benchmark's realistic stream (its events'
``traits``, ``properties`` and ``extra`` as the lake stores them: JSON text) and times a
query that reads the three JSON columns of every row through:

* ``raw`` — the table itself (what a caller with ``pii:read`` reads), the floor;
* ``view`` — :func:`auie.analytics.pseudonymous.view_sql` with the default rules: a native
  case-insensitive search picks the rows that may hold a PII field, only those go to the
  Python remover;
* ``merge patch`` — the baseline: the view's earlier expression, one native JSON merge
  patch of the top-level names per row (case-sensitive, top level only: it missed
  ``"EMAIL"`` and ``traits.contact.email``).

The three alternate, in turn first; prints the median milliseconds of each and the ratios,
and writes them to ``bench/results/pseudonymous-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from auie.analytics import pseudonymous
from auie.config import PrivacyConfig
from auie.lake.rows import TOP_LEVEL_FIELDS, as_text
from auie.privacy.crypto import Pseudonymizer
from bench.process.stream import Stream

_COLUMNS = ("traits", "properties", "extra")
_QUERY = "SELECT sum(length(traits)), sum(length(properties)), sum(length(extra)) FROM ({})"


def build(connection: duckdb.DuckDBPyConnection, events: int, people: int, seed: int) -> float:
    """The ``events`` table; returns the share of rows whose traits hold a PII field."""
    decode = msgspec.json.Decoder().decode
    rows: list[tuple[str | None, ...]] = []
    with_pii = 0
    for record in Stream(seed, events, people).records("ws", "src"):
        event: dict[str, Any] = decode(record.value)
        extra = {k: v for k, v in event.items() if k not in TOP_LEVEL_FIELDS}
        with_pii += "email" in (event.get("traits") or {})
        rows.append(
            (as_text(event.get("traits")), as_text(event.get("properties")), as_text(extra or None))
        )
    table = pa.table({c: [row[i] for row in rows] for i, c in enumerate(_COLUMNS)})
    connection.register("built", table)
    connection.execute("CREATE TABLE events AS SELECT * FROM built")
    connection.unregister("built")
    return with_pii / events


def merge_patch_sql(names: tuple[str, ...]) -> str:
    """The baseline: the views' expression before the remover (a top-level merge patch)."""
    patch = "'" + json.dumps(dict.fromkeys(names)).replace("'", "''") + "'"
    parts = [
        f"CASE WHEN {c} IS NULL THEN NULL ELSE json_merge_patch({c}, {patch})::VARCHAR END AS {c}"
        for c in _COLUMNS
    ]
    return "SELECT " + ", ".join(parts) + " FROM events"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    config = PrivacyConfig()
    rules = pseudonymous.PiiRules.of(config)
    connection = duckdb.connect(":memory:", config={"threads": args.threads})
    pseudonymous.register(connection, "ws", Pseudonymizer(b"k" * 32).pseudonym, rules)
    started = time.perf_counter()
    share = build(connection, args.events, args.people, args.seed)
    print(
        f"{args.events:,} events built in {time.perf_counter() - started:.0f} s;"
        f" {share:.1%} hold a PII trait"
    )
    queries = {
        "raw": _QUERY.format("SELECT traits, properties, extra FROM events"),
        "view": _QUERY.format(pseudonymous.view_sql("events", _COLUMNS, rules)),
        "merge patch": _QUERY.format(merge_patch_sql(config.pii_fields)),
    }
    answers = {name: connection.execute(sql).fetchone() for name, sql in queries.items()}
    times: dict[str, list[float]] = {name: [] for name in queries}
    names = list(queries)
    for turn in range(args.repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            started = time.perf_counter()
            connection.execute(queries[name]).fetchone()
            times[name].append((time.perf_counter() - started) * 1000)
    medians = {name: statistics.median(ms) for name, ms in times.items()}
    for name, ms in times.items():
        print(
            f"{name:<12} median {medians[name]:8.1f} ms  (runs {min(ms):.1f}–{max(ms):.1f})"
            f"  {args.events / medians[name] * 1000:,.0f} rows/s"
        )
    print(
        f"view / merge patch: {medians['view'] / medians['merge patch']:.2f}x the time;"
        f" view / raw: {medians['view'] / medians['raw']:.2f}x"
    )
    print(f"characters kept (traits, properties, extra): {answers}")
    out = Path("bench/results") / f"pseudonymous-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": vars(args), "share_with_pii": share, "ms": times, "medians": medians}, indent=1
        )
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
