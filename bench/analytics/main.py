"""The analytics benchmark (issue 4): ``bench/analytics/run`` or ``python -m bench.analytics``.

1. The data set (:mod:`.dataset`: 10 million events of 200,000 people over 90 days,
   written straight into the lake with AUIE's schemas and writer path) is built once under
   ``bench/data/analytics-10m/`` (git-ignored) and reused while its version and
   parameters match.
2. Each analysis runs in a fresh child process (:mod:`.child`) through the function the
   API calls: a cold first run (the data set's files evicted from the page cache, no
   connection or views yet), then ``--repeat`` warm runs; median, min and max, CPU
   seconds, the load average and CPU pressure beside every run, and the peak RSS of the
   process.
3. Goals (each analysis under 2 s) are printed as PASS/FAIL; every figure goes to
   ``bench/results/analytics-<time>.json``. The exit status is 0 unless the benchmark
   itself broke.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.analytics.dataset import DEFAULT_DIR, FUNNEL, build_dataset, manifest
from bench.ingest import profile
from bench.ingest.main import _code_version, _cpu_model, _load_text, _table
from bench.ingest.server import load_average, pressure

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
GOAL_S = 2.0


def analyses(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The analyses timed, as (kind, API request body) over the whole data set."""
    span = {"from": found["from"], "to": found["to"]}
    return {
        "funnel": {
            "kind": "funnel",
            "title": "funnel, 4 steps, 1-day window",
            "request": {
                "steps": [{"event": name} for name in FUNNEL],
                "conversionWindow": 86_400,
                **span,
            },
        },
        "retention": {
            "kind": "retention",
            "title": "retention, weekly cohorts x 8",
            "request": {
                "startEvent": "page",
                "returnEvent": "page",
                "period": "week",
                "periods": 8,
                **span,
            },
        },
        "trend": {
            "kind": "trend",
            "title": "trend, daily, 3 events by country",
            "request": {
                "events": ["page", "Product Viewed", "Order Completed"],
                "measure": "events",
                "interval": "day",
                "breakdown": {"property": "country"},
                **span,
            },
        },
        "trend-people": {
            "kind": "trend",
            "title": "(extra) same trend, people",
            "request": {
                "events": ["page", "Product Viewed", "Order Completed"],
                "measure": "people",
                "interval": "day",
                "breakdown": {"property": "country"},
                **span,
            },
        },
    }


GOALS = ("funnel", "retention", "trend")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/analytics/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--repeat", type=int, default=7, help="warm runs per analysis [7]")
    parser.add_argument(
        "--analyses",
        default="funnel,retention,trend,trend-people",
        help="comma-separated subset of funnel,retention,trend,trend-people [all]",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="data set directory")
    parser.add_argument("--events", type=int, default=10_000_000, help="events [10000000]")
    parser.add_argument("--people", type=int, default=200_000, help="people [200000]")
    parser.add_argument("--days", type=int, default=90, help="days [90]")
    parser.add_argument("--rebuild", action="store_true", help="build the data set again")
    parser.add_argument(
        "--no-evict", action="store_true", help="cold run with the page cache as it is"
    )
    parser.add_argument("--explain", action="store_true", help="write EXPLAIN ANALYZE per analysis")
    parser.add_argument(
        "--profile", action="store_true", help="one more child per analysis under py-spy"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="AUIE setting for the children, e.g. analytics.threads=1",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")
    return parser


def _child(spec: dict[str, Any], spy_to: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.analytics.child", json.dumps(spec)]
    if spy_to is not None:
        binary = profile.py_spy()
        if binary is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        command = [binary, "record", "--rate", "200", "--format", "raw", "--native",
                   "--output", str(spy_to), "--", *command]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, check=False)
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the child failed:\n{done.stderr.decode()[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _stats(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [float(r[key]) for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _settings(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.chdir(REPO)  # the children import bench.*
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    print(f"load average before: {_load_text(load_before)}; {os.cpu_count()} CPUs", flush=True)
    started = time.perf_counter()
    reused = manifest(args.data)
    data = build_dataset(
        args.data, events=args.events, people=args.people, days=args.days, rebuild=args.rebuild
    )
    found = manifest(data)
    assert found is not None
    fresh = reused is None or reused.get("built") != found.get("built")
    print(
        f"data set {'built' if fresh else 'reused'}: {data} — {found['events']:,} events of "
        f"{found['people']:,} people ({found['identified_people']:,} identified), "
        f"{found['sessions']:,} sessions, {found['identities']:,} identity rows, "
        f"{found['data_files']} data files, {found['bytes'] / 2**20:,.0f} MiB"
        + (f"; built in {found['seconds']:.0f} s" if fresh else ""),
        flush=True,
    )
    chosen = [a.strip() for a in args.analyses.split(",") if a.strip()]
    every = analyses(found)
    unknown = set(chosen) - every.keys()
    if unknown:
        raise SystemExit(f"unknown analyses: {', '.join(sorted(unknown))}")
    settings = _settings(args.set)
    results: dict[str, Any] = {}
    for name in chosen:
        analysis = every[name]
        spec = {
            "data_dir": str(data),
            "workspace": found["workspace"],
            "kind": analysis["kind"],
            "request": analysis["request"],
            "repeat": args.repeat,
            "evict": not args.no_evict,
            "set": settings,
        }
        if args.explain:
            spec["explain"] = str(RESULTS / f"analytics-explain-{name}-{stamp}.txt")
        print(f"{analysis['title']} ...", flush=True)
        out = _child(spec)
        out["title"] = analysis["title"]
        out["request"] = analysis["request"]
        out["seconds"] = _stats(out["runs"], "seconds")
        out["cpu_s"] = _stats(out["runs"], "cpu_s")
        out["load1"] = statistics.median(r["load"][0] for r in out["runs"])
        out["cpu_pressure"] = statistics.median(r["cpu_pressure"] for r in out["runs"])
        results[name] = out
        print(f"  {_brief(out)}", flush=True)
        if args.profile:
            target = RESULTS / f"analytics-profile-{name}-{stamp}.txt"
            _child({**spec, "explain": None}, spy_to=target)
            out["profile"] = {"file": str(target.relative_to(REPO)), "top": _top(target)}
            print(f"  py-spy profile: {target.relative_to(REPO)}", flush=True)
    result = {
        "benchmark": "analytics",
        "started": stamp,
        "command": " ".join(["bench/analytics/run", *(argv if argv is not None else sys.argv[1:])]),
        "dataset": found,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "analyses": results,
        "goals": _goals(results, args.repeat),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": sys.version.split()[0],
            "code": _code_version(),
            "load_before": load_before,
            "load_after": load_average(),
            "pressure_after": pressure(),
        },
        "elapsed_s": time.perf_counter() - started,
    }
    output = args.output or RESULTS / f"analytics-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    print(render(result))
    print(f"\nresults: {output}")
    return 0


def _top(path: Path) -> Any:
    try:
        return profile.summarize(path)
    except Exception as exc:
        return f"unreadable: {exc}"


def _brief(out: dict[str, Any]) -> str:
    sec = out["seconds"]
    return (
        f"cold {out['cold']['seconds']:.2f} s (load {out['cold']['load'][0]:.2f}), "
        f"warm median {sec['median']:.2f} s (min {sec['min']:.2f}, max {sec['max']:.2f}, "
        f"load {out['load1']:.2f}), peak RSS {out['peak_rss_mib']:,.0f} MiB"
    )


def _goals(results: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    goals = []
    for name in GOALS:
        out = results.get(name)
        if out is None:
            continue
        median = out["seconds"]["median"]
        goals.append(
            {
                "goal": f"{out['title']}: median of {repeat} warm runs < {GOAL_S:g} s",
                "measured": f"{median:.2f} s (load {out['load1']:.2f})",
                "pass": median < GOAL_S,
            }
        )
        cold = out["cold"]
        goals.append(
            {
                "goal": f"{out['title']}: cold first run < {GOAL_S:g} s",
                "measured": f"{cold['seconds']:.2f} s (load {cold['load'][0]:.2f})",
                "pass": cold["seconds"] < GOAL_S,
            }
        )
    return goals


def render(result: dict[str, Any]) -> str:
    headers = ["analysis", "cold s", "load", "median s", "min s", "max s", "CPU s"]
    headers += ["load 1m", "CPU psi", "peak RSS MiB", "queries"]
    rows = []
    for out in result["analyses"].values():
        sec, cold = out["seconds"], out["cold"]
        rows.append(
            [
                out["title"],
                f"{cold['seconds']:.2f}",
                f"{cold['load'][0]:.2f}",
                f"{sec['median']:.2f}",
                f"{sec['min']:.2f}",
                f"{sec['max']:.2f}",
                f"{out['cpu_s']['median']:.2f}",
                f"{out['load1']:.2f}",
                f"{out['cpu_pressure']:.0f}%",
                f"{out['peak_rss_mib']:,.0f}",
                str(out["queries"]),
            ]
        )
    lines = [_table(headers, rows)]
    lines.append(
        "cold: first run in a fresh process, the data set's files evicted from the page cache; "
        "median/min/max: the warm runs after it; CPU s: all threads, median; load 1m and "
        "CPU psi: medians over the warm runs"
    )
    lines.append("")
    for out in result["analyses"].values():
        lines.append(f"{out['title']}: {_answer(out)}")
    lines.append("")
    for goal in result["goals"]:
        verdict = "PASS" if goal["pass"] else "FAIL"
        lines.append(f"{verdict}  {goal['goal']}: measured {goal['measured']}")
    machine, found = result["machine"], result["dataset"]
    code = machine["code"]
    dirty = len(code["src_changes"])
    lines.append("")
    lines.append(
        f"data set: {found['events']:,} events, {found['people']:,} people, "
        f"{found['from'][:10]} to {found['to'][:10]}, {found['data_files']} files, "
        f"{found['bytes'] / 2**20:,.0f} MiB"
    )
    lines.append(
        f"machine: {machine['cpus']} x {machine['cpu']}, Python {machine['python']}, "
        f"load before {_load_text(machine['load_before'])}, "
        f"after {_load_text(machine['load_after'])}; took {result['elapsed_s']:.0f} s"
    )
    lines.append(
        f"code: commit {code['commit']}"
        + (f" + uncommitted changes in {dirty} file(s) of src/" if dirty else ", clean src/")
    )
    return "\n".join(lines)


def _answer(out: dict[str, Any]) -> str:
    answer = out["answer"]
    if "steps" in answer:
        return " → ".join(
            f"{s['count']:,}" + ("" if s["rate"] is None else f" ({s['rate']:.0%})")
            for s in answer["steps"]
        )
    if "cohorts" in answer:
        first = answer["cohorts"][0]
        rates = ", ".join("-" if r is None else f"{r:.0%}" for r in first["rates"])
        head = f"first ({first['cohort']}, {first['size']:,})"
        return f"{len(answer['cohorts'])} cohorts; {head}: {rates}"
    series = answer["series"]
    top = ", ".join(
        f"{s['breakdown'] or 'other'} {s['total']:,}" for s in series if s["event"] == "page"
    )
    return f"{answer['buckets']} buckets, {len(series)} series; page: {top}"
