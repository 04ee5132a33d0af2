"""The data every learner sees, and one learner's pass over it.

* Synthetic: 10 actions, 20 standard Gaussian features, reward of action ``a`` in context
  ``x`` Bernoulli(sigmoid(w_a·x + b_a)) with ``w_a ~ N(0, I/20)`` and ``b_a ~ N(0, 0.25)``
  (so logits have a standard deviation of about 1). Every action's reward of every round is
  drawn up front from the seed, so all learners face identical data whatever they choose.
  The score is the *expected* reward: the sum over rounds of the chosen action's true
  probability, divided by the optimal policy's (the best action's probability each round).
* Digits: scikit-learn's bundled ``load_digits`` (1,797 8×8 images, no download) as a
  contextual bandit: the context is the image's non-zero pixels scaled to [0, 1], the
  actions are the 10 classes, the reward is 1 if the chosen class is right (0/1 loss);
  one pass over a shuffle of the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.decide.learners import BY_NAME, Learner

ACTIONS = 10
FEATURES = 20
NAMES = [f"f{j}" for j in range(FEATURES)]
#: Digits have 64 pixels: the decision point gets a 128-wide context vector (the default
#: 64 would leave room for only 47 names before hashing).
DIGITS_FEATURES = {"contextDim": 128}


def load_1m() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


@dataclass
class Synthetic:
    seed: int
    x: npt.NDArray[np.float64]  # (rounds, FEATURES)
    probabilities: npt.NDArray[np.float64]  # (rounds, ACTIONS)
    rewards: npt.NDArray[np.float64]  # (rounds, ACTIONS), pre-drawn 0/1

    @property
    def rounds(self) -> int:
        return len(self.x)

    def contexts(self) -> list[dict[str, float]]:
        return [dict(zip(NAMES, row, strict=True)) for row in self.x.tolist()]


def synthetic(seed: int, rounds: int) -> Synthetic:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((ACTIONS, FEATURES)) / np.sqrt(FEATURES)
    b = rng.standard_normal(ACTIONS) * 0.5
    x = rng.standard_normal((rounds, FEATURES))
    probabilities = 1.0 / (1.0 + np.exp(-(x @ w.T + b)))
    rewards = (rng.random((rounds, ACTIONS)) < probabilities).astype(np.float64)
    return Synthetic(seed, x, probabilities, rewards)


def run_synthetic(name: str, seed: int, rounds: int) -> dict[str, Any]:
    """One learner over one seed's stream (runs in a worker process)."""
    learner = BY_NAME[name]
    stream = synthetic(seed, rounds)
    actions = [f"a{i}" for i in range(ACTIONS)]
    candidates: list[tuple[str, dict[str, Any]]] = [(a, {}) for a in actions]
    featurizer, policy = learner.build(actions, seed)
    contexts = stream.contexts()
    chosen = np.empty(rounds, dtype=np.int64)
    started, cpu = time.perf_counter(), time.process_time()
    for t, context in enumerate(contexts):
        decision = featurizer(context, candidates)
        choice = policy.choose(decision)
        chosen[t] = choice.index
        policy.update(decision, choice.index, stream.rewards[t, choice.index], choice.probability)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    expected = stream.probabilities[np.arange(rounds), chosen]
    best = stream.probabilities.max(axis=1)
    blocks = np.array_split(np.arange(rounds), 10)
    return {
        "learner": name,
        "seed": seed,
        "rounds": rounds,
        "ratio": float(expected.sum() / best.sum()),
        "curve": [float(expected[b].sum() / best[b].sum()) for b in blocks if len(b)],
        "realised_reward": float(stream.rewards[np.arange(rounds), chosen].mean()),
        "optimal_mean": float(best.mean()),
        "uniform_ratio": float(stream.probabilities.mean(axis=1).sum() / best.sum()),
        "wall_s": wall,
        "cpu_s": cpu,
        "load_1m": load_1m(),
    }


def digits() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return np.asarray(x, dtype=np.float64) / 16.0, np.asarray(y, dtype=np.int64)


def run_digits(name: str, shuffle: int) -> dict[str, Any]:
    """One learner, one pass over one shuffle of the digits (runs in a worker process)."""
    learner: Learner = BY_NAME[name]
    x, y = digits()
    order = np.random.default_rng(shuffle).permutation(len(y))
    actions = [str(c) for c in range(10)]
    candidates: list[tuple[str, dict[str, Any]]] = [(a, {}) for a in actions]
    digits_learner = Learner(learner.name, learner.policy, learner.vw, DIGITS_FEATURES)
    featurizer, policy = digits_learner.build(actions, shuffle)
    correct = 0
    started = time.perf_counter()
    for t in order:
        row = x[t]
        context = {f"p{j}": float(row[j]) for j in np.flatnonzero(row)}
        decision = featurizer(context, candidates)
        choice = policy.choose(decision)
        reward = float(choice.index == y[t])
        correct += int(reward)
        policy.update(decision, choice.index, reward, choice.probability)
    return {
        "learner": name,
        "shuffle": shuffle,
        "rounds": len(order),
        "reward": correct / len(order),
        "wall_s": time.perf_counter() - started,
        "load_1m": load_1m(),
    }
