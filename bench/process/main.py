"""The processing benchmark (issue 3): ``bench/process/run`` or ``python -m bench.process``.

Scenarios:

* ``throughput``: a realistic stream (:mod:`.stream`) written straight into the event
  log of a fresh data directory, then the processor from log to lake + profiles in a
  child process (:mod:`.throughput`), ``--repeat`` times from a copy of the same
  directory; the median is reported. One more run under py-spy splits the time by stage
  (:mod:`.stages`); it is not part of the median.
* ``freshness``: a real ``auie serve`` fed a steady rate from a separate process; the
  time from the collector's 200 to the event being returned by a lake query
  (:mod:`.freshness`), p50 and p99 of the sampled events.

Goals are printed as PASS/FAIL; the exit status is 0 unless the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import auie
from auie.config import Settings
from auie.process.supervisor import group_size
from bench.ingest import profile
from bench.ingest.main import _cpu_model, _load_text, _table
from bench.ingest.server import load_average
from bench.process import freshness, stages, throughput

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
ALL_SCENARIOS = ("throughput", "freshness")

GOAL_EVENTS_PER_S = 30_000
GOAL_FRESH_P99_S = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/process/run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--events", type=int, default=200_000, help="events in the log [200000]")
    parser.add_argument("--people", type=int, default=30_000, help="visitors [30000]")
    parser.add_argument(
        "--consent-share",
        type=float,
        default=0.0,
        help="share of visitors whose web events state consent (a consent manager) [0]",
    )
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs [3]")
    parser.add_argument(
        "--workers",
        type=int,
        default=group_size(Settings()),
        help=f"processor processes (process.workers) [{group_size(Settings())}: one per CPU]",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy run (stage split)"
    )
    parser.add_argument("--rate", type=float, default=5_000, help="freshness events/s [5000]")
    parser.add_argument("--duration", type=float, default=20.0, help="freshness measured s [20]")
    parser.add_argument("--warmup", type=float, default=5.0, help="freshness warm-up s [5]")
    parser.add_argument("--interval", type=float, default=0.1, help="s between lake polls [0.1]")
    parser.add_argument("--drain", type=float, default=30.0, help="s to wait for stragglers [30]")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)} [all]",
    )
    parser.add_argument(
        "--compare",
        metavar="SETTING=VALUE",
        default=None,
        help="also run each throughput repeat with this setting (e.g. process.node_cache=0),"
        " alternating with the default, and report both medians and their ratio",
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        default=None,
        help="also run each throughput repeat with the code of this commit (a temporary git"
        " worktree), alternating with the working tree's, and report both medians and their"
        " ratio (not with --compare)",
    )
    parser.add_argument(
        "--profile-store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the profile store of the throughput runs: the data directory's SQLite file"
        " (the default) or a fresh database per run on the local PostgreSQL [sqlite]",
    )
    parser.add_argument("--seed", type=int, default=None, help="stream seed [random]")
    parser.add_argument("--output", type=Path, default=None, help="JSON result file")
    parser.add_argument("--keep-data", action="store_true", help="keep the data directories")
    return parser


def _git(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def _code_version() -> dict[str, Any]:
    """The commit measured, and files of src/ that differ from it (the runs use the working
    tree)."""

    def git(*args: str) -> str:
        done = _git(*args)
        return done.stdout if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "src").splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "src_changes": [line[3:] for line in changed],
    }


def _setting(assignment: str) -> dict[str, str]:
    """``section.key=value`` as a dotted setting (checked by the children's settings)."""
    name, sep, value = assignment.partition("=")
    if not sep or "." not in name.strip():
        raise SystemExit(f"--compare wants SECTION.KEY=VALUE, not {assignment!r}")
    return {name.strip(): value.strip()}


def _worktree(ref: str, where: Path) -> tuple[Path, str]:
    """A detached git worktree of ``ref`` at ``where``, and the commit it is."""
    done = _git("worktree", "add", "--detach", str(where), ref)
    if done.returncode != 0:
        raise SystemExit(f"--baseline {ref}: {done.stderr.strip()}")
    return where, _git("rev-parse", "--short", "HEAD", cwd=where).stdout.strip()


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    medians = {k: _median([float(r[k]) for r in runs]) for k in keys}
    medians["load1"] = _median([r["load"][0] for r in runs])
    return medians


def _median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.result: dict[str, Any] = {"runs": {}, "medians": {}}

    def throughput(self) -> None:
        args = self.args
        root = Path(tempfile.mkdtemp(prefix="auie-bench-process-"))
        try:
            template = root / "template"
            print(f"writing {args.events:,} events of {args.people:,} visitors ...", flush=True)
            stream = throughput.prepare(
                template,
                seed=self.seed,
                events=args.events,
                people=args.people,
                consent=args.consent_share,
            )
            print(
                f"  {stream['event_bytes']:.0f} bytes per event in the log, "
                f"written in {stream['fill_s']:.1f} s",
                flush=True,
            )
            self.result["stream"] = stream
            runs, baseline = [], []
            compare = _setting(args.compare) if args.compare else None
            code = _worktree(args.baseline, root / "baseline") if args.baseline else None
            if code is not None:
                self.result["baseline"] = code[1]
            postgres = args.profile_store == "postgres"
            for rep in range(args.repeat):
                if compare is not None or code is not None:
                    run = throughput.run(
                        template,
                        root / f"run-{rep}-compare",
                        stream["workspace"],
                        members=args.workers,
                        settings=compare,
                        postgres=postgres,
                        code=code[0] if code is not None else None,
                    )
                    baseline.append(run)
                    label = f"with {args.compare}" if compare else f"code of {args.baseline}"
                    print(f"  {label}, run {rep + 1}: {_brief(run)}", flush=True)
                run = throughput.run(
                    template,
                    root / f"run-{rep}",
                    stream["workspace"],
                    members=args.workers,
                    postgres=postgres,
                )
                runs.append(run)
                print(f"  throughput run {rep + 1}: {_brief(run)}", flush=True)
            self.result["runs"]["throughput"] = runs
            self.result["medians"]["throughput"] = _medians(runs)
            if baseline:
                self.result["runs"]["compare"] = baseline
                self.result["medians"]["compare"] = _medians(baseline)
            if not args.no_profile:
                self._profile(template, root, stream["workspace"])
        finally:
            if args.baseline:
                _git("worktree", "remove", "--force", str(root / "baseline"))
            if args.keep_data:
                print(f"data kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)

    def _profile(self, template: Path, root: Path, workspace: str) -> None:
        if profile.py_spy() is None:
            print("  no py-spy: no stage split (.venv/bin/pip install py-spy)", flush=True)
            return
        out = RESULTS / f"process-profile-{self.stamp}.txt"
        run = throughput.run(
            template, root / "run-profile", workspace, members=self.args.workers, profile_to=out
        )
        print(f"  profiled run (py-spy): {_brief(run)}", flush=True)
        if not out.exists():
            print("  py-spy wrote no profile", flush=True)
            return
        self.result["profile"] = {
            "run": run,
            "file": str(out.relative_to(REPO)),
            "stages": stages.split(out),
            "top": profile.summarize(out),
        }

    def freshness(self) -> None:
        args = self.args
        print(
            f"freshness at {args.rate:,.0f} events/s: {args.warmup:g} s warm-up + "
            f"{args.duration:g} s measured ...",
            flush=True,
        )
        run = freshness.measure(
            rate=args.rate,
            seconds=args.duration,
            warmup=args.warmup,
            interval=args.interval,
            drain=args.drain,
            workers=args.workers,
            keep=args.keep_data,
        )
        self.result["runs"]["freshness"] = [run]
        print(
            f"  p50 {run['p50_s']:.2f} s, p99 {run['p99_s']:.2f} s, max {run['max_s']:.2f} s "
            f"of {run['samples']} samples ({run['unseen']} never seen); "
            f"{run['accepted_per_s']:,.0f} events/s accepted, processor CPU "
            f"{run['processor_cpu']:.0%}, load {run['load'][0]:.2f}",
            flush=True,
        )

    def run(self) -> dict[str, Any]:
        args = self.args
        chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = set(chosen) - set(ALL_SCENARIOS)
        if unknown:
            raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
        RESULTS.mkdir(parents=True, exist_ok=True)
        load_before = load_average()
        started = time.time()
        print(f"load average before: {_load_text(load_before)}; {os.cpu_count()} CPUs", flush=True)
        if "throughput" in chosen:
            self.throughput()
        if "freshness" in chosen:
            self.freshness()
        self.result.update(
            benchmark="process",
            started=self.stamp,
            elapsed_s=time.time() - started,
            command=" ".join(["bench/process/run", *sys.argv[1:]]),
            settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            seed=self.seed,
            machine={
                "auie": str(Path(auie.__file__).parent),
                "cpus": os.cpu_count(),
                "cpu": _cpu_model(),
                "python": sys.version.split()[0],
                "code": _code_version(),
                "load_before": load_before,
                "load_after": load_average(),
            },
        )
        self.result["goals"] = _goals(args, self.result)
        return self.result


def _goals(args: argparse.Namespace, result: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    medians = result["medians"].get("throughput")
    if medians is not None:
        value = medians["events_per_s"]
        count = len(result["runs"]["throughput"])
        exact = all(
            r["lake_events"] == r["events"] == result["stream"]["events"]
            for r in result["runs"]["throughput"]
        )
        goals.append(
            {
                "goal": f">= {GOAL_EVENTS_PER_S:,} events/s from log to lake + profiles",
                "measured": f"{value:,.0f} events/s (median of {count})",
                "pass": value >= GOAL_EVENTS_PER_S and exact,
            }
        )
    fresh = result["runs"].get("freshness")
    if fresh:
        run = fresh[0]
        clean = run["feeder"]["errors"] == 0 and run["feeder"]["unfinished"] == 0
        goals.append(
            {
                "goal": f"p99 freshness < {GOAL_FRESH_P99_S:g} s at {args.rate:,.0f} events/s",
                "measured": (
                    f"p99 {run['p99_s']:.2f} s (p50 {run['p50_s']:.2f} s) at "
                    f"{run['accepted_per_s']:,.0f} events/s, {run['samples']} samples"
                ),
                "pass": run["p99_s"] < GOAL_FRESH_P99_S
                and run["accepted_per_s"] >= 0.98 * args.rate
                and run["samples"] > 0
                and clean,
            }
        )
    return goals


def _brief(run: dict[str, Any]) -> str:
    return (
        f"{run['members']} processor(s): "
        f"{run['events_per_s']:,.0f} events/s ({run['events']:,} in {run['seconds']:.1f} s), "
        f"{run['events_per_cpu_s']:,.0f} events per CPU-s, CPU {run['cpu_s']:.1f} s "
        f"(main thread {run['main_cpu_s']:.1f} s), peak RSS {run['peak_rss_mib']:.0f} MiB, "
        f"{run['lake_commits']} lake commits, lake rows {run['lake_events']:,}, "
        f"profile store {run['profile_store']}, node cache {run['node_cache']:,} "
        f"({run['node_cache_hits']:,} hits, {run['node_cache_misses']:,} misses), "
        f"load {run['load'][0]:.2f}"
    )


def _fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def render(result: dict[str, Any]) -> str:
    out = []
    runs = result["runs"].get("throughput")
    if runs:
        headers = [
            "throughput",
            "events/s",
            "events/CPU-s",
            "seconds",
            "CPU s (main)",
            "peak RSS MiB",
            "commits",
            "load 1m",
            "CPU psi",
        ]
        rows = []
        labelled = [(f"run {i + 1}", run, False) for i, run in enumerate(runs)]
        labelled.append(("median", result["medians"]["throughput"], True))
        others = result["runs"].get("compare")
        if others:
            labelled += [(f"compare {i + 1}", run, False) for i, run in enumerate(others)]
            labelled.append(("compare median", result["medians"]["compare"], True))
        for label, run, is_median in labelled:
            rows.append(
                [
                    label,
                    _fmt(run["events_per_s"]),
                    _fmt(run["events_per_cpu_s"]),
                    _fmt(run["seconds"], 1),
                    f"{run['cpu_s']:.1f} ({run['main_cpu_s']:.1f})",
                    _fmt(run["peak_rss_mib"]),
                    _fmt(run["lake_commits"]),
                    f"{run['load1']:.2f}" if is_median else f"{run['load'][0]:.2f}",
                    f"{run['cpu_pressure']:.0f}%",
                ]
            )
        out.append(_table(headers, rows))
        if others:
            mine, theirs = result["medians"]["throughput"], result["medians"]["compare"]
            settings = result["settings"]
            what = (
                f"with {settings['compare']}"
                if settings["compare"]
                else f"the code of {settings['baseline']} ({result.get('baseline')})"
            )
            out.append(
                f"compare = {what}, alternating with the runs: "
                f"events/s {mine['events_per_s'] / theirs['events_per_s']:.2f}x, "
                f"events per CPU-s {mine['events_per_cpu_s'] / theirs['events_per_cpu_s']:.2f}x"
                " (medians, runs / compare)"
            )
        stream = result["stream"]
        last = runs[-1]
        out.append(
            f"stream: {stream['events']:,} events of {stream['people']:,} visitors"
            f" ({stream.get('consent_share', 0):.0%} stating consent), "
            f"{stream['event_bytes']:.0f} bytes each; lake rows {last['lake_events']:,}, "
            f"{last['profiles']:,} profiles of {last['identifiers']:,} identifiers, "
            f"{last['lake_identities']:,} identity rows"
        )
    prof = result.get("profile")
    if prof:
        out.append("")
        out.append(stages.render(prof["stages"]))
        out.append(f"  (profiled run: {prof['run']['events_per_s']:,.0f} events/s; {prof['file']})")
    fresh = result["runs"].get("freshness")
    if fresh:
        run = fresh[0]
        out.append("")
        headers = ["freshness", "p50 s", "p90 s", "p99 s", "max s", "samples", "unseen"]
        headers += ["events/s", "server CPU", "processor CPU", "poll s", "load 1m"]
        row = [
            f"{run['rate']:,.0f} events/s",
            _fmt(run["p50_s"], 2),
            _fmt(run["p90_s"], 2),
            _fmt(run["p99_s"], 2),
            _fmt(run["max_s"], 2),
            str(run["samples"]),
            str(run["unseen"]),
            _fmt(run["accepted_per_s"]),
            f"{run['server_cpu']:.0%}",
            f"{run['processor_cpu']:.0%}",
            _fmt(run["mean_poll_s"], 3),
            f"{run['load'][0]:.2f}",
        ]
        out.append(_table(headers, [row]))
    if result["goals"]:
        out.append("")
        for goal in result["goals"]:
            verdict = "PASS" if goal["pass"] else "FAIL"
            out.append(f"{verdict}  {goal['goal']}: measured {goal['measured']}")
    machine = result["machine"]
    code = machine["code"]
    dirty = len(code["src_changes"])
    out.append("")
    out.append(
        f"machine: {machine['cpus']} x {machine['cpu']}, Python {machine['python']}, "
        f"load before {_load_text(machine['load_before'])}, "
        f"after {_load_text(machine['load_after'])}; took {result['elapsed_s']:.0f} s"
    )
    out.append(
        f"code: commit {code['commit']}"
        + (f" + uncommitted changes in {dirty} file(s) of src/" if dirty else ", clean src/")
        + f"; auie imported from {machine['auie']}"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.compare and args.baseline:
        raise SystemExit("--compare and --baseline: one at a time")
    os.chdir(REPO)  # the child processes import bench.*
    runner = Runner(args)
    result = runner.run()
    output = args.output or RESULTS / f"process-{runner.stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    print(render(result))
    print(f"\nresults: {output}")
    return 0
