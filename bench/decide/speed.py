"""In-process throughput and latency through the public policy API.

One round = featurize a JSON context (``{"f0": x0, …}`` with 20 numbers, 10 feature-less
actions), ``choose``, ``update`` — what the decision service does per decision and reward,
without HTTP and the event log. Decision latency = featurize + choose, timed per call with
``perf_counter_ns``. Each learner first learns ``warmup`` rounds (untimed), then ``rounds``
rounds are timed; the whole is repeated and the median repeat reported.

Throughput is given by wall clock and by the process's CPU time (``process_time``): on a
shared machine the wall-clock figure also counts the time other processes held the CPU,
the CPU-time figure does not. ``vw-raw`` is Vowpal Wabbit's own Python API with the ADF text
built straight from the numbers (no AUIE featurizer or policy wrapper): VW's floor from
Python.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import vowpalwabbit

from bench.decide.learners import BY_NAME, VW_SQUARECB
from bench.decide.streams import ACTIONS, synthetic


def _load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _percentiles(values_ns: list[int]) -> dict[str, float]:
    array = np.asarray(values_ns, dtype=np.float64) / 1000.0
    return {
        "p50_us": float(np.percentile(array, 50)),
        "p99_us": float(np.percentile(array, 99)),
        "p999_us": float(np.percentile(array, 99.9)),
        "max_us": float(array.max()),
    }


def _policy_repeat(name: str, rounds: int, warmup: int, seed: int) -> dict[str, Any]:
    stream = synthetic(seed, warmup + rounds)
    actions = [f"a{i}" for i in range(ACTIONS)]
    candidates: list[tuple[str, dict[str, Any]]] = [(a, {}) for a in actions]
    featurizer, policy = BY_NAME[name].build(actions, seed)
    contexts = stream.contexts()
    rewards = stream.rewards.tolist()
    for t in range(warmup):
        decision = featurizer(contexts[t], candidates)
        choice = policy.choose(decision)
        policy.update(decision, choice.index, rewards[t][choice.index], choice.probability)
    latencies: list[int] = []
    clock = time.perf_counter_ns
    load_before = _load()
    wall, cpu = time.perf_counter(), time.process_time()
    for t in range(warmup, warmup + rounds):
        start = clock()
        decision = featurizer(contexts[t], candidates)
        choice = policy.choose(decision)
        latencies.append(clock() - start)
        policy.update(decision, choice.index, rewards[t][choice.index], choice.probability)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "per_s_wall": rounds / wall,
        "per_s_cpu": rounds / cpu,
        **_percentiles(latencies),
        "load_1m": (load_before + _load()) / 2,
    }


def _vw_raw_repeat(rounds: int, warmup: int, seed: int) -> dict[str, Any]:
    stream = synthetic(seed, warmup + rounds)
    workspace = vowpalwabbit.Workspace(arg_list=[*VW_SQUARECB.split(), "--quiet"])
    rows = stream.x.tolist()
    rewards = stream.rewards.tolist()
    rng = np.random.default_rng(seed)
    action_lines = [f"|a id=a{i}" for i in range(ACTIONS)]
    latencies: list[int] = []
    clock = time.perf_counter_ns
    load_before = _load()
    wall = cpu = 0.0
    for t in range(warmup + rounds):
        if t == warmup:
            wall, cpu = time.perf_counter(), time.process_time()
        start = clock()
        shared = "shared |s " + " ".join(f"f{j}:{v!r}" for j, v in enumerate(rows[t]))
        probabilities = workspace.predict([shared, *action_lines])
        cumulative = np.cumsum(probabilities)
        index = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1])), ACTIONS - 1)
        if t >= warmup:
            latencies.append(clock() - start)
        lines = [shared, *action_lines]
        lines[1 + index] = f"0:{-rewards[t][index]!r}:{probabilities[index]!r} {lines[1 + index]}"
        workspace.learn(lines)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    workspace.finish()
    return {
        "per_s_wall": rounds / wall,
        "per_s_cpu": rounds / cpu,
        **_percentiles(latencies),
        "load_1m": (load_before + _load()) / 2,
    }


def measure(
    names: list[str], *, rounds: int, vw_rounds: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """Every learner's repeats and the median of each figure."""
    out: dict[str, Any] = {}
    for name in [*names, "vw-raw"]:
        vw = name == "vw-raw" or BY_NAME[name].vw
        n = vw_rounds if vw else rounds
        runs = []
        for repeat in range(repeats):
            if name == "vw-raw":
                runs.append(_vw_raw_repeat(n, warmup, 100 + repeat))
            else:
                runs.append(_policy_repeat(name, n, warmup, 100 + repeat))
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        out[name] = {"rounds": n, "repeats": runs, "median": median}
        print(
            f"  in-process {name:22s} {median['per_s_wall']:9,.0f}/s wall "
            f"{median['per_s_cpu']:9,.0f}/s cpu  p50 {median['p50_us']:7.1f} µs  "
            f"p99 {median['p99_us']:7.1f} µs  load {median['load_1m']:.2f}",
            flush=True,
        )
    return out
