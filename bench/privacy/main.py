"""The privacy benchmark (issue 6): ``bench/privacy/run`` or ``python -m bench.privacy``.

1. The data set (:mod:`.dataset`: 10 million events of 200,000 people over 90 days by
   default, written straight into the lake, the profile store and the event log) is built
   once under ``.cache/bench-privacy/`` and reused.
2. Each run works on a copy of it at the path it was built at (the lake's catalog and
   manifests hold absolute paths): the pristine set is kept beside it, lake files (never
   changed in place) are hard-linked, SQLite files copied. So every run erases a person
   from the same state, one with 90 snapshots of history per table.
3. One person is exported (DSAR), then erased, through the same code as the API and CLI
   (``runtime.privacy.requests``), timed end to end; the erasure's own split
   (``seconds.physical``: gone from every file) and its per-store counts are recorded.
4. After the erasure the lake is queried for the person (must be 0 rows) and the SQLite
   files are searched for their identifiers (must find none).

Next to every figure: the 1-minute load average before and after and the CPU/IO pressure
stall, because this machine is shared. Results go to ``bench/results/privacy-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest.main import _code_version, _cpu_model, _load_text, _table
from bench.ingest.server import load_average, pressure
from bench.privacy.dataset import Builder, Spec, device, email, user, write_spec

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
CACHE = REPO / ".cache" / "bench-privacy"
GOAL_ERASURE_S = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/privacy/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events [10000000]")
    parser.add_argument("--people", type=int, default=200_000, help="people [200000]")
    parser.add_argument("--days", type=int, default=90, help="days of events [90]")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh copy [1]")
    parser.add_argument(
        "--person", type=int, default=None, help="index of the person [the data set's featured]"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the data set again")
    parser.add_argument("--dataset", type=Path, default=None, help="data set directory")
    return parser


def _settings(data_dir: Path) -> Any:
    from auie.config import load_settings

    return load_settings(
        {
            "data_dir": data_dir,
            "lake.maintenance_minutes": 0,
            "analytics.transform_interval_minutes": 0,
        },
        environ={},
    )


def _say(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def ensure_dataset(spec: Spec, directory: Path, rebuild: bool) -> dict[str, Any]:
    marker = directory / "spec.json"
    if marker.exists() and not rebuild:
        info: dict[str, Any] = json.loads(marker.read_text())
        if info["spec"] == spec.to_dict():
            return info
    if directory.exists():
        shutil.rmtree(directory)
    data = directory / "data"
    data.mkdir(parents=True)
    _say(f"building the data set in {directory} (once)")
    info = Builder(_settings(data), spec, _say).build()
    info["bytes"] = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    data.rename(directory / "pristine")
    write_spec(marker, spec, info)
    return {"spec": spec.to_dict(), **info}


def copy_dataset(source: Path, target: Path) -> None:
    """Hard links for the lake's files (never changed in place), copies for the rest."""
    if target.exists():
        shutil.rmtree(target)
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        out = target / relative
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if "warehouse" in relative.parts:
            os.link(path, out)
        else:
            shutil.copy2(path, out)


def _timed_request(runtime: Any, workspace: str, kind: str, person: int) -> dict[str, Any]:
    from auie.privacy.person import Subject

    requests = runtime.privacy.requests
    subject = Subject.of([("user_id", user(person))])
    started = time.perf_counter()
    item = requests.submit(workspace, kind, subject, actor="bench")
    done = requests.run(item.id, actor="bench")
    seconds = time.perf_counter() - started
    if done.status != "done":
        raise RuntimeError(f"{kind} failed: {done.error}")
    return {"seconds": round(seconds, 2), "result": done.result}


def _check(runtime: Any, data_dir: Path, workspace: str, person: int) -> dict[str, Any]:
    from pyiceberg.expressions import In, Or

    from auie.privacy.physical import files_containing

    ids = [user(person), device(person, "a"), device(person, "b")]
    table = runtime.lake.refresh(workspace, "events")
    rows = (
        table.scan(
            row_filter=Or(In("user_id", set(ids[:1])), In("anonymous_id", set(ids[1:]))),
            selected_fields=("message_id",),
        )
        .to_arrow()
        .num_rows
    )
    sqlite = [p for p in data_dir.rglob("*.db*") if p.is_file()]
    needles = [i.encode() for i in [*ids, email(person)]]
    return {
        "lakeRowsLeft": rows,
        "sqliteFilesNamingThePerson": [str(p.name) for p in files_containing(sqlite, needles)],
    }


def run_once(dataset: Path, work: Path, workspace: str, person: int) -> dict[str, Any]:
    from auie.runtime import Runtime

    started = time.perf_counter()
    copy_dataset(dataset / "pristine", work)
    copy_seconds = time.perf_counter() - started
    runtime = Runtime(_settings(work))
    try:
        load_before = load_average()
        pressure_before = pressure()
        export = _timed_request(runtime, workspace, "export", person)
        _say(f"export: {export['seconds']} s")
        erasure = _timed_request(runtime, workspace, "erasure", person)
        _say(f"erasure: {erasure['seconds']} s")
        load_after = load_average()
        check = _check(runtime, work, workspace, person)
    finally:
        runtime.close()
    return {
        "copySeconds": round(copy_seconds, 1),
        "export": export,
        "erasure": erasure,
        "check": check,
        "load": {"before": load_before, "after": load_after},
        "pressure": {"before": pressure_before, "after": pressure()},
    }


def render(result: dict[str, Any]) -> str:
    rows = []
    for n, run in enumerate(result["runs"], 1):
        erasure = run["erasure"]["result"]
        lake = erasure["lake"].get("events", {})
        rows.append(
            [
                str(n),
                f"{run['export']['seconds']:.1f}",
                f"{run['erasure']['seconds']:.1f}",
                f"{erasure['seconds']['physical']:.1f}",
                str(lake.get("rows", 0)),
                f"{lake.get('filesRewritten', 0)}/{lake.get('filesDropped', 0)}",
                str(run["check"]["lakeRowsLeft"]),
                _load_text(run["load"]["before"][:1] + run["load"]["after"][:1]),
                f"{run['pressure']['after']['cpu']:.0f}%",
            ]
        )
    table = _table(
        [
            "run",
            "export s",
            "erase s",
            "physical s",
            "lake rows",
            "files rw/drop",
            "left",
            "load 1m b/a",
            "cpu psi",
        ],
        rows,
    )
    steps = []
    for n, run in enumerate(result["runs"], 1):
        split = run["erasure"]["result"]["seconds"]["steps"]
        top = sorted(split.items(), key=lambda item: -item[1])[:6]
        steps.append(f"run {n} erasure steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in top))
    table += "\n\n" + "\n".join(steps)
    median = result["median"]
    verdict = "PASS" if median["erasure"] < GOAL_ERASURE_S else "FAIL"
    return (
        f"{table}\n\nmedian: export {median['export']:.1f} s, erasure {median['erasure']:.1f} s"
        f" — goal < {GOAL_ERASURE_S:.0f} s: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spec = Spec(events=args.events, people=args.people, days=args.days)
    directory = args.dataset or CACHE / f"{spec.events}-{spec.people}-{spec.days}"
    info = ensure_dataset(spec, directory, args.rebuild)
    person = spec.featured % spec.people if args.person is None else args.person
    runs = []
    for n in range(args.repeat):
        _say(f"run {n + 1}/{args.repeat}")
        work = directory / "data"  # where it was built: the paths in the lake point here
        try:
            runs.append(run_once(directory, work, info["workspace"], person))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "privacy",
        "at": datetime.now(UTC).isoformat(),
        "dataset": info,
        "person": person,
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count()},
        "code": _code_version(),
        "runs": runs,
        "median": {
            "export": statistics.median(r["export"]["seconds"] for r in runs),
            "erasure": statistics.median(r["erasure"]["seconds"] for r in runs),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"privacy-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(render(result))
    print(f"\nwritten to {out.relative_to(REPO)}")
    return 0
