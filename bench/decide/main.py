"""The decision benchmark (issue 5): ``bench/decide/run`` or ``python -m bench.decide``.

AUIE's policies beside Vowpal Wabbit on the same streams, in one run:

* ``synthetic``: 10 actions, 20 Gaussian features, Bernoulli(sigmoid(w_a·x + b_a)) rewards
  pre-drawn per seed (:mod:`.streams`); expected reward / optimal for AUIE's default policy,
  its four learning policies, VW ``--squarecb``, VW ε = 0.05 and Personalizer's defaults;
* ``digits``: scikit-learn's ``load_digits`` as a bandit (0/1 reward), one pass per shuffle,
  AUIE's default against VW greedy and VW SquareCB;
* ``speed``: in-process featurize + choose + update per second and decision latency
  (:mod:`.speed`), AUIE's default policy, VW through the same policy API, raw VW;
* ``http``: ``POST /v1/decide`` latency at a fixed rate against a real ``auie serve``,
  open loop from a separate process (:mod:`.http`).

The learning runs (synthetic, digits) go to ``--jobs`` worker processes; their scores do
not depend on timing. The timed parts run afterwards, one at a time. Every timing is
printed with the 1-minute load average and the CPU pressure stall beside it. Results go to
``bench/results/decide-<time>.json``. The exit status is 0 unless the benchmark broke.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
PARTS = ("synthetic", "digits", "speed", "http")

GOAL_PER_S = 20_000
GOAL_P99_US = 1_000.0
GOAL_HTTP_P99_MS = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/decide/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--rounds", type=int, default=100_000, help="synthetic rounds [100000]")
    parser.add_argument("--seeds", type=int, default=3, help="synthetic seeds [3]")
    parser.add_argument("--shuffles", type=int, default=10, help="digits shuffles [10]")
    parser.add_argument("--jobs", type=int, default=2, help="learning worker processes [2]")
    parser.add_argument("--speed-rounds", type=int, default=20_000, help="timed AUIE rounds")
    parser.add_argument("--vw-speed-rounds", type=int, default=5_000, help="timed VW rounds")
    parser.add_argument("--repeats", type=int, default=3, help="speed repeats [3]")
    parser.add_argument("--rate", type=float, default=1000.0, help="HTTP requests/s [1000]")
    parser.add_argument("--duration", type=float, default=60.0, help="HTTP measured s [60]")
    parser.add_argument("--warmup", type=float, default=5.0, help="HTTP warm-up s [5]")
    parser.add_argument("--users", type=int, default=2000, help="distinct HTTP userIds [2000]")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few minutes: 20k rounds, 3 shuffles, shorter timings, 15 s of HTTP",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")
    return parser


def load_1m() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_pressure() -> float:
    """% of the last 10 s some task waited for a CPU (-1 where unavailable)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(first.split()[1].partition("=")[2])
    except (OSError, IndexError, ValueError):
        return -1.0


def _machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--", "src/auie/decide", "bench/decide"],
            check=False,
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout.strip()
    )
    from importlib.metadata import version

    import numpy

    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit + ("+dirty" if dirty else ""),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "vowpalwabbit": version("vowpalwabbit"),
        "cpus": os.cpu_count(),
        "load_1m": load_1m(),
        "cpu_pressure_10s": cpu_pressure(),
    }


# -- learning ---------------------------------------------------------------------------------


def _learning(args: argparse.Namespace, parts: set[str]) -> dict[str, list[dict[str, Any]]]:
    from bench.decide.learners import DIGITS, SYNTHETIC
    from bench.decide.streams import run_digits, run_synthetic

    tasks: list[tuple[str, Any, tuple[Any, ...]]] = []
    if "synthetic" in parts:
        # VW first: the slowest tasks start early and the pool drains evenly
        for learner in sorted(SYNTHETIC, key=lambda learner: not learner.vw):
            for seed in range(args.seeds):
                tasks.append(("synthetic", run_synthetic, (learner.name, seed, args.rounds)))
    if "digits" in parts:
        for learner in DIGITS:
            for shuffle in range(args.shuffles):
                tasks.append(("digits", run_digits, (learner.name, shuffle)))
    out: dict[str, list[dict[str, Any]]] = {"synthetic": [], "digits": []}
    if not tasks:
        return out
    env_threads = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    os.environ.update({k: v for k, v in env_threads.items() if k not in os.environ})
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(fn, *params): part for part, fn, params in tasks}
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            out[futures[future]].append(result)
            score = result.get("ratio", result.get("reward"))
            key = f"seed {result['seed']}" if "seed" in result else f"shuffle {result['shuffle']}"
            print(
                f"  [{done}/{len(tasks)}] {futures[future]:9s} {result['learner']:22s} {key:10s}"
                f" {score:.4f}  ({result['wall_s']:.0f} s, load {result['load_1m']:.2f})",
                flush=True,
            )
    print(f"  learning done in {time.perf_counter() - started:.0f} s", flush=True)
    return out


# -- report -----------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _report(result: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    from bench.decide.learners import DIGITS, SYNTHETIC

    lines: list[str] = []
    goals: list[dict[str, Any]] = []
    synthetic = result.get("synthetic") or []
    if synthetic:
        seeds = sorted({r["seed"] for r in synthetic})
        by = {(r["learner"], r["seed"]): r for r in synthetic}
        rows = []
        for learner in SYNTHETIC:
            ratios = [by[(learner.name, s)]["ratio"] for s in seeds if (learner.name, s) in by]
            if not ratios:
                continue
            loads = [by[(learner.name, s)]["load_1m"] for s in seeds if (learner.name, s) in by]
            walls = [by[(learner.name, s)]["wall_s"] for s in seeds if (learner.name, s) in by]
            rows.append(
                [
                    learner.name,
                    *(f"{r:.4f}" for r in ratios),
                    f"{statistics.median(ratios):.4f}",
                    f"{statistics.median(walls):.0f} s",
                    f"{statistics.median(loads):.2f}",
                    learner.describe(),
                ]
            )
        rounds = synthetic[0]["rounds"]
        lines.append(f"Synthetic stream ({rounds:,} rounds): expected reward / optimal policy's")
        lines.append(
            _table(
                ["learner", *(f"seed {s}" for s in seeds), "median", "time", "load", "config"],
                rows,
            )
        )
        default = [by.get(("auie-default", s)) for s in seeds]
        square = [by.get(("vw-squarecb", s)) for s in seeds]
        if all(default) and all(square):
            margins = [
                d["ratio"] - q["ratio"]  # type: ignore[index]
                for d, q in zip(default, square, strict=True)
            ]
            goals.append(
                {
                    "goal": "synthetic: AUIE default >= VW SquareCB on every seed",
                    "value": "margins " + ", ".join(f"{m:+.4f}" for m in margins),
                    "pass": all(m >= 0 for m in margins),
                }
            )
        lines.append("")
    digits = result.get("digits") or []
    if digits:
        rows = []
        for learner in DIGITS:
            rewards = [r["reward"] for r in digits if r["learner"] == learner.name]
            if rewards:
                rows.append(
                    [
                        learner.name,
                        f"{statistics.mean(rewards):.4f}",
                        f"{statistics.stdev(rewards) if len(rewards) > 1 else 0:.4f}",
                        f"{min(rewards):.4f}",
                        f"{max(rewards):.4f}",
                        str(len(rewards)),
                        learner.describe(),
                    ]
                )
        lines.append("Digits as a bandit (one pass, 0/1 reward): average reward over shuffles")
        lines.append(_table(["learner", "mean", "sd", "min", "max", "shuffles", "config"], rows))
        lines.append("")
    speed = result.get("speed")
    if speed:
        rows = []
        for name, entry in speed["learners"].items():
            m = entry["median"]
            rows.append(
                [
                    name,
                    f"{m['per_s_wall']:,.0f}",
                    f"{m['per_s_cpu']:,.0f}",
                    f"{m['p50_us']:.1f}",
                    f"{m['p99_us']:.1f}",
                    f"{m['load_1m']:.2f}",
                ]
            )
        lines.append(
            "In-process decisions+updates (featurize JSON, choose, update), "
            f"median of {speed['repeats']} repeats; latency = featurize + choose; "
            f"CPU pressure {speed['cpu_pressure_10s']:.0f}%"
        )
        lines.append(
            _table(["learner", "per s (wall)", "per s (CPU)", "p50 µs", "p99 µs", "load"], rows)
        )
        auie = speed["learners"]["auie-default"]["median"]
        raw = speed["learners"]["vw-raw"]["median"]
        lines.append(
            f"AUIE default / raw VW: {auie['per_s_wall'] / raw['per_s_wall']:.1f}× (wall), "
            f"{auie['per_s_cpu'] / raw['per_s_cpu']:.1f}× (CPU)"
        )
        lines.append("")
        goals.append(
            {
                "goal": f"in-process >= {GOAL_PER_S:,} decisions+updates/s (CPU time)",
                "value": f"{auie['per_s_cpu']:,.0f}/s CPU, {auie['per_s_wall']:,.0f}/s wall "
                f"(load {auie['load_1m']:.2f})",
                "pass": auie["per_s_cpu"] >= GOAL_PER_S,
            }
        )
        goals.append(
            {
                "goal": f"in-process >= {GOAL_PER_S:,} decisions+updates/s (wall clock)",
                "value": f"{auie['per_s_wall']:,.0f}/s (load {auie['load_1m']:.2f})",
                "pass": auie["per_s_wall"] >= GOAL_PER_S,
            }
        )
        goals.append(
            {
                "goal": "in-process decision p99 < 1 ms",
                "value": f"{auie['p99_us']:.0f} µs (load {auie['load_1m']:.2f})",
                "pass": auie["p99_us"] < GOAL_P99_US,
            }
        )
    http = result.get("http")
    if http:
        lines.append(
            f"HTTP POST /v1/decide, open loop at {http['rate']:,.0f}/s for "
            f"{http['duration_s']:.0f} s against auie serve"
        )
        lines.append(
            _table(
                [
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max answered ms",
                    "unanswered",
                    "errors",
                    "server CPU/req",
                    "load",
                    "psi",
                ],
                [
                    [
                        f"{http['p50_ms']:.2f}",
                        f"{http['p90_ms']:.2f}",
                        f"{http['p99_ms']:.2f}",
                        f"{http['max_answered_ms']:.1f}",
                        str(http["unanswered"]),
                        str(http["errors"]),
                        f"{http['server_cpu_ms_per_request']:.2f} ms",
                        f"{http['load_1m']:.2f}",
                        f"{http.get('cpu_pressure_10s', -1):.0f}%",
                    ]
                ],
            )
        )
        lines.append("")
        goals.append(
            {
                "goal": f"HTTP /v1/decide p99 < {GOAL_HTTP_P99_MS:.0f} ms at {http['rate']:,.0f}/s",
                "value": f"{http['p99_ms']:.2f} ms (load {http['load_1m']:.2f})",
                "pass": http["p99_ms"] < GOAL_HTTP_P99_MS,
            }
        )
    if goals:
        lines.append("Goals")
        lines.append(
            _table(
                ["goal", "figure", "verdict"],
                [[g["goal"], g["value"], _verdict(g["pass"])] for g in goals],
            )
        )
    return "\n".join(lines), goals


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.rounds, args.shuffles = min(args.rounds, 20_000), min(args.shuffles, 3)
        args.speed_rounds, args.vw_speed_rounds = 5_000, 1_500
        args.repeats, args.duration = 2, min(args.duration, 15.0)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    result: dict[str, Any] = {"machine": _machine(), "options": vars(args) | {"output": None}}
    print(
        f"decide benchmark: commit {result['machine']['commit']}, {os.cpu_count()} CPUs, "
        f"load {load_1m():.2f}, CPU pressure {cpu_pressure():.0f}%",
        flush=True,
    )
    started = time.perf_counter()
    learning = _learning(args, parts)
    result.update(learning)
    if "speed" in parts:
        from bench.decide import speed

        print("speed (in-process)", flush=True)
        before = cpu_pressure()
        learners = speed.measure(
            ["auie-default", "vw-squarecb"],
            rounds=args.speed_rounds,
            vw_rounds=args.vw_speed_rounds,
            warmup=2000,
            repeats=args.repeats,
        )
        result["speed"] = {
            "repeats": args.repeats,
            "learners": learners,
            "cpu_pressure_10s": (before + cpu_pressure()) / 2,
        }
    if "http" in parts:
        from bench.decide import http

        print("http", flush=True)
        before = cpu_pressure()
        result["http"] = http.measure(
            rate=args.rate, duration=args.duration, warmup=args.warmup, users=args.users
        )
        result["http"]["cpu_pressure_10s"] = (before + cpu_pressure()) / 2
    result["elapsed_s"] = time.perf_counter() - started
    text, goals = _report(result)
    result["goals"] = goals
    print()
    print(text)
    print(f"\n(total {result['elapsed_s'] / 60:.1f} min)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS / f"decide-{stamp}.json"
    output.write_text(json.dumps(result, indent=1))
    print(f"results: {output}")
    sys.stdout.flush()
    return 0
