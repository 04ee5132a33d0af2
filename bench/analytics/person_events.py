"""A person's recent events (``GET /v1/profiles/{type}/{value}/events``) on the analytics
data set: ``.venv/bin/python -m bench.analytics.person_events``.

For people sampled from the data set's ``identities`` table (each with every user and
anonymous id of their profile, as the API passes them), it times the lake read the API
route makes, :func:`auie.lake.query.person_events` (DuckDB, two passes: ids first, then
the whole rows of the files holding the newest ``limit``), against the baseline in the same
run: the earlier pyiceberg read of every file that may hold the person's ids, whole, then a
sort (:func:`full_scan`, kept here as it was). The two alternate person by person, in
turn first; both must return the same events. Prints p50/p99/max latency and the ratio of
the medians, and writes the figures to ``bench/results/person-events-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table

from auie.config import Settings
from auie.lake.catalog import Lake, open_catalog
from auie.lake.query import (
    _FIELDS,
    _JSON_COLUMNS,
    Belongs,
    _filter,
    _segment_shape,
    person_events,
)
from auie.lake.tables import EVENTS, IDENTITIES
from auie.profiles.identity import IdentityRules, node
from bench.analytics.dataset import DEFAULT_DIR, build_dataset, manifest
from bench.ingest.main import _code_version, _cpu_model, _load_text
from bench.ingest.server import load_average

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"


def full_scan(
    table: Table, users: Sequence[str], anonymous: Sequence[str], limit: int, belongs: Belongs
) -> list[dict[str, Any]]:
    """The baseline: every file that may hold the ids, read whole, then sorted."""
    row_filter = _filter(users, anonymous)
    if row_filter is None:
        return []
    columns = (*_FIELDS, *_JSON_COLUMNS)
    data = table.scan(row_filter=row_filter, selected_fields=columns).to_arrow()
    ids = zip(data["user_id"].to_pylist(), data["anonymous_id"].to_pylist(), strict=True)
    data = data.filter(pa.array([belongs(u, a) for u, a in ids], pa.bool_()))
    data = data.sort_by([("timestamp", "descending"), ("message_id", "ascending")])
    return [_segment_shape(row) for row in data.slice(0, limit).to_pylist()]


def people(lake: Lake, workspace: str, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` profiles of the data set: their user and anonymous ids."""
    data = lake.catalog.load_table((workspace, IDENTITIES)).scan().to_arrow()
    profiles: dict[str, dict[str, list[str]]] = {}
    for kind, value, pid in zip(
        data["id_type"].to_pylist(),
        data["id_value"].to_pylist(),
        data["profile_id"].to_pylist(),
        strict=True,
    ):
        if kind in ("user_id", "anonymous_id"):
            profiles.setdefault(pid, {"user_id": [], "anonymous_id": []})[kind].append(value)
    # An anonymous id moved to a user's profile appears under both: keep the latest owner.
    chosen = random.Random(seed).sample(sorted(profiles), count)
    return [
        {
            "profile": pid,
            "users": profiles[pid]["user_id"],
            "anonymous": profiles[pid]["anonymous_id"],
        }
        for pid in chosen
    ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.analytics.person_events")
    parser.add_argument("--people", type=int, default=40, help="people sampled [40]")
    parser.add_argument("--limit", type=int, default=50, help="events per person [50]")
    parser.add_argument("--seed", type=int, default=7, help="sample seed [7]")
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="data set directory")
    args = parser.parse_args(argv)
    before = load_average()
    data_dir = build_dataset(args.data)
    found = manifest(data_dir)
    assert found is not None
    workspace = found["workspace"]
    lake = Lake(open_catalog(Settings(data_dir=data_dir)))
    table = lake.catalog.load_table((workspace, EVENTS))
    files = len(list(table.scan().plan_files()))
    rules = IdentityRules()
    sample = people(lake, workspace, args.people, args.seed)
    print(
        f"{len(sample)} people of {found['events']:,} events in {files} files, limit {args.limit};"
        f" load before {_load_text(before)}"
    )
    timings: dict[str, list[float]] = {"two passes (DuckDB)": [], "full scan (baseline)": []}
    returned: list[int] = []
    for index, person in enumerate(sample):
        own = {node("user_id", u) for u in person["users"]} | {
            node("anonymous_id", a) for a in person["anonymous"]
        }

        def belongs(user: str | None, anon: str | None, own: set[str] = own) -> bool:
            return rules.owner(user, anon) in own

        order = [("two passes (DuckDB)", person_events), ("full scan (baseline)", full_scan)]
        answers = []
        for name, read in order if index % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            answers.append(read(table, person["users"], person["anonymous"], args.limit, belongs))
            timings[name].append(time.perf_counter() - started)
        if answers[0] != answers[1]:
            raise SystemExit(f"the two reads differ for profile {person['profile']}")
        returned.append(len(answers[0]))
    print(f"{'read':<22}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    result: dict[str, Any] = {}
    for name, values in timings.items():
        p50, p99 = statistics.median(values) * 1000, _percentile(values, 0.99) * 1000
        print(f"{name:<22}{p50:>9.1f}{p99:>9.1f}{max(values) * 1000:>9.1f}")
        result[name] = {"p50_ms": p50, "p99_ms": p99, "max_ms": max(values) * 1000}
    ratio = result["full scan (baseline)"]["p50_ms"] / result["two passes (DuckDB)"]["p50_ms"]
    print(
        f"median speed-up {ratio:.1f}x; events returned per person: median"
        f" {statistics.median(returned):.0f} (limit {args.limit})"
    )
    print(
        f"machine: {_cpu_model()}, load before {_load_text(before)}, after"
        f" {_load_text(load_average())}"
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / f"person-events-{stamp}.json"
    output.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "files": files,
                "results": result,
                "ratio": ratio,
                "code": _code_version(),
            },
            indent=2,
        )
    )
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
