"""The ingest benchmark (issue 2): ``bench/ingest/run`` or ``python -m bench.ingest``.

Scenarios, each against its own fresh ``auie serve`` process (temporary data dir, free
port, rate limiting off), with the load from separate processes (:mod:`.loadgen`):

* ``batch``:  closed loop, concurrent clients POSTing 100-event ``/v1/batch`` bodies;
* ``single``: closed loop, concurrent clients POSTing one event to ``/v1/track``;
* ``fixed``:  open loop at a fixed rate of events per second in 100-event batches;
* ``baseline``: in this process, no HTTP: decode the same bodies and append them to a
  ``SQLiteEventLog`` in a tight loop (:mod:`.baseline`).

Every scenario is repeated (``--repeat``) and the median is reported, with the load
average, the server's CPU and peak RSS (VmHWM) next to each figure. Goals are printed as
PASS/FAIL; the exit status is 0 unless the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.ingest import profile
from bench.ingest.baseline import Baseline
from bench.ingest.server import AuieServer, load_average, pressure

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
ALL_SCENARIOS = ("baseline", "batch", "single", "fixed")

GOAL_BATCH_EVENTS = 50_000
GOAL_FIXED_P99_MS = 50.0
GOAL_SINGLE_RPS = 3_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/ingest/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--duration", type=float, default=6.0, help="measured s per run [6]")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured s per run [1.5]")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario [3]")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)} [all]",
    )
    parser.add_argument("--batch-clients", type=int, default=16, help="batch clients [16]")
    parser.add_argument("--batch-size", type=int, default=100, help="events per batch [100]")
    parser.add_argument("--single-clients", type=int, default=32, help="/v1/track clients [32]")
    parser.add_argument("--rate", type=float, default=20_000, help="fixed events/s [20000]")
    parser.add_argument("--procs", type=int, default=2, help="load generator processes [2]")
    parser.add_argument(
        "--baseline-seconds", type=float, default=3.0, help="s per baseline run [3]"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the server with py-spy (perturbs figures)"
    )
    parser.add_argument(
        "--writer",
        choices=["process", "thread"],
        default="process",
        help="the server's eventlog.writer [process, the default of auie serve]",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another server setting, as auie serve --set takes it (repeatable), e.g. "
        "process.scheduler=normal",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")
    parser.add_argument("--keep-data", action="store_true", help="keep the servers' data dirs")
    return parser


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed = random.SystemRandom().randrange(10**9)
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.scenario_info: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, Any] = {}

    # -- load from separate processes -------------------------------------------------

    def _load(
        self, server: AuieServer, name: str, rep: int, spec: dict[str, Any]
    ) -> dict[str, Any]:
        args = self.args
        procs = max(1, args.procs)
        start_at = time.time() + 1.0
        children = []
        outputs_at = []
        for index in range(procs):
            child = dict(spec)
            child.update(
                port=server.port,
                write_key=server.write_key,
                start_at=start_at,
                warmup=args.warmup,
                duration=args.duration,
                seed=self.seed + 1000 * rep + index,
                tag=f"{name[0]}{rep}{index}{random.randrange(36**4):04x}",
            )
            if spec["mode"] == "closed":
                share = spec["clients"] // procs + (index < spec["clients"] % procs)
                child["clients"] = max(1, share)
            else:
                child["rate"] = spec["rate"] / procs
                child["phase"] = index / procs
            child["output"] = str(server.root / f"load-{name}-{rep}-{index}.json")
            process = subprocess.Popen(
                [sys.executable, "-m", "bench.ingest.loadgen"], cwd=REPO, stdin=subprocess.PIPE
            )
            assert process.stdin is not None
            process.stdin.write(json.dumps(child).encode())
            process.stdin.close()
            children.append(process)
            outputs_at.append(Path(child["output"]))

        window_from = start_at + args.warmup
        window_to = window_from + args.duration
        samples: dict[str, Any] = {}
        spy = None
        _sleep_until(window_from)
        cpu_from = server.cpu_seconds()
        commits_from = server.commit_metrics()
        if args.profile and rep == 0:
            out = self.results_dir / f"profile-{name}-{self.stamp}.txt"
            spy = (profile.start(server.pid, args.duration, out), out)
        _sleep_until(window_to)
        cpu_to = server.cpu_seconds()
        commits = {k: v - commits_from[k] for k, v in server.commit_metrics().items()}
        samples["server_cpu"] = (cpu_to[0] - cpu_from[0]) / args.duration
        samples["server_main_cpu"] = (cpu_to[1] - cpu_from[1]) / args.duration
        # The log writer is a child process by default (ADR 13): its CPU, from /metrics.
        samples["writer_cpu"] = commits["writer_cpu_seconds"] / args.duration
        samples["pressure"] = pressure()
        count = commits["commits"] or float("nan")
        samples["commits"] = {
            "commits_per_s": commits["commits"] / args.duration,
            "records_per_commit": commits["committed_records"] / count,
            "mean_commit_ms": 1000 * commits["commit_seconds"] / count,
            "writer_busy": commits["commit_seconds"] / args.duration,
        }
        samples["load"] = load_average()

        outputs = []
        for process, child_output in zip(children, outputs_at, strict=True):
            if process.wait() != 0:
                raise RuntimeError(f"load generator failed (exit {process.returncode})")
            outputs.append(json.loads(child_output.read_text()))
        if spy is not None:
            spy_process, out = spy
            spy_process.wait(timeout=60)
            if out.exists():
                self.profiles[name] = profile.summarize(out)
                self.profiles[name]["file"] = str(out.relative_to(REPO))
            else:
                stderr = spy_process.stderr.read().decode() if spy_process.stderr else ""
                print(f"py-spy wrote no profile: {stderr.strip()}", file=sys.stderr)
        return self._merge(server, outputs, samples)

    def _merge(
        self, server: AuieServer, outputs: list[dict[str, Any]], samples: dict[str, Any]
    ) -> dict[str, Any]:
        window = self.args.duration
        latencies = sorted(x for out in outputs for x in out["latencies_ms"])
        total = {
            key: sum(out[key] for out in outputs)
            for key in (
                "requests_in_window",
                "accepted_in_window",
                "requests_total",
                "accepted_total",
                "duplicates_total",
                "rejected_total",
                "errors",
                "reconnects",
                "unfinished",
                "cpu_s",
            )
        }
        return {
            "requests_per_s": total["requests_in_window"] / window,
            "events_per_s": total["accepted_in_window"] / window,
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "p999_ms": percentile(latencies, 0.999),
            "max_ms": latencies[-1] if latencies else float("nan"),
            "errors": total["errors"],
            "error_samples": [s for out in outputs for s in out["error_samples"]][:5],
            "duplicates": total["duplicates_total"],
            "rejected": total["rejected_total"],
            "unfinished": total["unfinished"],
            "reconnects": total["reconnects"],
            "requests_total": total["requests_total"],
            "accepted_total": total["accepted_total"],
            "server_cpu": samples["server_cpu"],
            "server_main_cpu": samples["server_main_cpu"],
            "writer_cpu": samples["writer_cpu"],
            **samples["commits"],
            "cpu_pressure": samples["pressure"]["cpu"],
            "io_pressure": samples["pressure"]["io"],
            "loadgen_cpu": total["cpu_s"] / window,
            "peak_rss_mib": server.peak_rss_mib(),
            "load": samples["load"],
            "peak_connections": sum(out.get("peak_connections", 0) for out in outputs),
            "max_schedule_lag_ms": max(out.get("max_schedule_lag_ms", 0) for out in outputs),
            "request_body_bytes": outputs[0]["request_body_bytes"],
        }

    def scenario(self, name: str, spec: dict[str, Any]) -> None:
        settings: dict[str, object] = {"eventlog.writer": self.args.writer}
        for item in self.args.settings:
            key, _, value = item.partition("=")
            try:
                settings[key] = json.loads(value)
            except ValueError:  # a bare word: a string
                settings[key] = value
        server = AuieServer(settings, keep=self.args.keep_data)
        try:
            server.start()
            runs: list[dict[str, Any]] = []
            for rep in range(self.args.repeat):
                result = self._load(server, name, rep, spec)
                result["log_events"] = (
                    sum(r["accepted_total"] for r in runs) + result["accepted_total"]
                )
                result["log_mib"] = server.log_mib()
                runs.append(result)
                print(f"  {name} run {rep + 1}: {_brief(result)}", flush=True)
            server.stop()
            stored = server.log_records()
            accepted = sum(r["accepted_total"] for r in runs)
            self.runs[name] = runs
            self.scenario_info[name] = {
                "spec": spec,
                "stored_records": stored,
                "accepted_replies": accepted,
                "durable_check": stored == accepted,
                "log_dir": str(server.root) if self.args.keep_data else None,
            }
        finally:
            server.cleanup()

    # -- baseline ---------------------------------------------------------------------

    def baseline(self) -> None:
        args = self.args
        groups = {"baseline": args.batch_clients, "baseline1": 1}
        logs = {key: Baseline(self.seed + i) for i, key in enumerate(groups)}
        try:
            for rep in range(args.repeat):
                for key, bodies in groups.items():
                    result = logs[key].run(args.baseline_seconds, bodies)
                    result["load"] = load_average()
                    result["cpu_pressure"] = pressure()["cpu"]
                    result["bodies_per_commit"] = bodies
                    self.runs.setdefault(key, []).append(result)
                    print(
                        f"  {key} run {rep + 1}: {result['events_per_s']:,.0f} events/s "
                        f"({bodies} bodies per commit, load {result['load'][0]:.2f})",
                        flush=True,
                    )
        finally:
            for log in logs.values():
                log.close()

    # -- everything -------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        self.results_dir = RESULTS
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = set(chosen) - set(ALL_SCENARIOS)
        if unknown:
            raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
        load_before = load_average()
        started = time.time()
        print(f"load average before: {_load_text(load_before)}; {os.cpu_count()} CPUs", flush=True)
        batch = {"kind": "batch", "path": "/v1/batch", "events_per_request": args.batch_size}
        if "baseline" in chosen:
            self.baseline()
        if "batch" in chosen:
            self.scenario("batch", {**batch, "mode": "closed", "clients": args.batch_clients})
        if "single" in chosen:
            spec = {"kind": "single", "path": "/v1/track", "mode": "closed"}
            self.scenario("single", {**spec, "clients": args.single_clients})
        if "fixed" in chosen:
            rate = args.rate / args.batch_size
            self.scenario("fixed", {**batch, "mode": "open", "rate": rate, "connections": 8})
        return self._report(load_before, time.time() - started)

    def _report(self, load_before: tuple[float, ...], elapsed: float) -> dict[str, Any]:
        med: dict[str, dict[str, float]] = {}
        for name, runs in self.runs.items():
            keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
            med[name] = {k: _median([float(r[k]) for r in runs]) for k in keys}
            med[name]["load1"] = _median([r["load"][0] for r in runs])
        goals = _goals(self.args, med, self.runs)
        ratios = {}
        if "batch" in med and "baseline" in med:
            ratios["batch/baseline"] = (
                med["batch"]["events_per_s"] / med["baseline"]["events_per_s"]
            )
            ratios["batch/baseline1"] = (
                med["batch"]["events_per_s"] / med["baseline1"]["events_per_s"]
            )
        if "single" in med and "baseline" in med:
            ratios["single/baseline"] = (
                med["single"]["events_per_s"] / med["baseline"]["events_per_s"]
            )
        return {
            "benchmark": "ingest",
            "started": self.stamp,
            "elapsed_s": elapsed,
            "command": " ".join(["bench/ingest/run", *sys.argv[1:]]),
            "settings": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(self.args).items()
            },
            "machine": {
                "cpus": os.cpu_count(),
                "cpu": _cpu_model(),
                "python": platform.python_version(),
                "kernel": platform.release(),
                "code": _code_version(),
                "load_before": load_before,
                "load_after": load_average(),
            },
            "runs": self.runs,
            "scenarios": self.scenario_info,
            "medians": med,
            "ratios": ratios,
            "goals": goals,
            "profiles": self.profiles,
        }


def _goals(
    args: argparse.Namespace, med: dict[str, dict[str, float]], runs: dict[str, list[Any]]
) -> list[dict[str, Any]]:
    goals = []

    def clean(name: str) -> bool:
        return all(r["errors"] == 0 and r["unfinished"] == 0 for r in runs[name])

    if "batch" in med:
        value = med["batch"]["events_per_s"]
        goals.append(
            {
                "goal": f">= {GOAL_BATCH_EVENTS:,} events/s accepted durably in batches",
                "measured": f"{value:,.0f} events/s",
                "pass": value >= GOAL_BATCH_EVENTS and clean("batch"),
            }
        )
    if "fixed" in med:
        p99 = med["fixed"]["p99_ms"]
        rate = med["fixed"]["events_per_s"]
        goals.append(
            {
                "goal": f"p99 < {GOAL_FIXED_P99_MS:g} ms at {args.rate:,.0f} events/s",
                "measured": f"p99 {p99:.1f} ms at {rate:,.0f} events/s",
                "pass": p99 < GOAL_FIXED_P99_MS and rate >= 0.98 * args.rate and clean("fixed"),
            }
        )
    if "single" in med:
        value = med["single"]["requests_per_s"]
        goals.append(
            {
                "goal": f">= {GOAL_SINGLE_RPS:,} single-event requests/s",
                "measured": f"{value:,.0f} requests/s",
                "pass": value >= GOAL_SINGLE_RPS and clean("single"),
            }
        )
    return goals


def _brief(r: dict[str, Any]) -> str:
    return (
        f"{r['requests_per_s']:,.0f} req/s, {r['events_per_s']:,.0f} events/s, "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']}, "
        f"server CPU {r['server_cpu']:.0%} (main thread {r['server_main_cpu']:.0%}, "
        f"log writer process {r['writer_cpu']:.0%}), "
        f"load {r['load'][0]:.2f}, CPU pressure {r['cpu_pressure']:.0f}%; "
        f"{r['commits_per_s']:.0f} commits/s of {r['records_per_commit']:.0f} records, "
        f"{r['mean_commit_ms']:.1f} ms each (writer busy {r['writer_busy']:.0%})"
    )


def _load_text(load: tuple[float, ...] | list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.decode().rstrip("\n")


def _code_version() -> dict[str, Any]:
    """The commit measured, and files of src/ that differ from it (the server runs the
    working tree)."""
    changed = _git("status", "--porcelain", "--", "src")
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "src_changes": [line[3:] for line in (changed or "").splitlines()],
    }


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def render(result: dict[str, Any]) -> str:
    runs: dict[str, list[dict[str, Any]]] = result["runs"]
    headers = [
        "scenario",
        "run",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "srv CPU (main) +writer",
        "gen CPU",
        "peak RSS MiB",
        "load 1m",
        "CPU psi",
        "log after",
    ]
    rows = []
    labels = {
        "baseline": "baseline (group commit)",
        "baseline1": "baseline (1 body/commit)",
        "batch": "batch /v1/batch x100",
        "single": "single /v1/track",
        "fixed": "fixed-rate batches",
    }
    for name in ("baseline", "baseline1", "batch", "single", "fixed"):
        if name not in runs:
            continue
        med = result["medians"][name]
        for index, run in enumerate([*runs[name], med]):
            is_median = index == len(runs[name])
            http = "p50_ms" in run
            rows.append(
                [
                    labels[name] if index == 0 else "",
                    "median" if is_median else str(index + 1),
                    _fmt(run["requests_per_s"]) if http else "-",
                    _fmt(run["events_per_s"]),
                    _fmt(run["p50_ms"], 1) if http else "-",
                    _fmt(run["p99_ms"], 1) if http else "-",
                    _fmt(run["max_ms"], 1) if http else "-",
                    _fmt(run["errors"]) if http else "-",
                    (
                        f"{run['server_cpu']:.0%} ({run['server_main_cpu']:.0%})"
                        f" +{run['writer_cpu']:.0%}"
                        if http
                        else f"{run['cpu_s'] / run['seconds']:.0%}"
                    ),
                    f"{run['loadgen_cpu']:.0%}" if http else "-",
                    _fmt(run["peak_rss_mib"], 0) if http else "-",
                    f"{run['load1']:.2f}" if is_median else f"{run['load'][0]:.2f}",
                    f"{run['cpu_pressure']:.0f}%",
                    "" if is_median else f"{run['log_events'] / 1e6:.2f}M ev",
                ]
            )
    out = [_table(headers, rows)]
    out.append(
        "srv CPU: server process, all threads (main thread = event loop) in % of one core, "
        "+ its log writer process; "
        "gen CPU: load generators; CPU psi: % of time some task waited for a CPU (avg10)"
    )
    if result["ratios"]:
        out.append("")
        out += [f"ratio {name}: {value:.2f}" for name, value in result["ratios"].items()]
    if result["scenarios"]:
        out.append("")
        for name, info in result["scenarios"].items():
            status = "OK" if info["durable_check"] else "MISMATCH"
            out.append(
                f"durability check {name}: {info['stored_records']:,} events in the log, "
                f"{info['accepted_replies']:,} acknowledged -> {status}"
            )
    if result["goals"]:
        out.append("")
        for goal in result["goals"]:
            verdict = "PASS" if goal["pass"] else "FAIL"
            out.append(f"{verdict}  {goal['goal']}: measured {goal['measured']}")
    machine = result["machine"]
    out.append("")
    out.append(
        f"machine: {machine['cpus']} x {machine['cpu']}, Python {machine['python']}, "
        f"load before {_load_text(machine['load_before'])}, "
        f"after {_load_text(machine['load_after'])}; took {result['elapsed_s']:.0f} s"
    )
    code = machine["code"]
    dirty = len(code["src_changes"])
    out.append(
        f"code: commit {code['commit']}"
        + (f" + uncommitted changes in {dirty} file(s) of src/" if dirty else ", clean src/")
    )
    for name, summary in result["profiles"].items():
        out.append("")
        out.append(profile.render(name, summary))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # the load generator imports bench.*: run from the repository root
    os.chdir(REPO)
    runner = Runner(args)
    print(
        f"ingest benchmark: {args.repeat} x {args.duration:g} s per scenario "
        f"(+{args.warmup:g} s warm-up), {args.procs} load generator process(es)",
        flush=True,
    )
    result = runner.run()
    output = args.output or RESULTS / f"ingest-{runner.stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    print(render(result))
    print(f"\nresults: {output}")
    return 0
