"""Off-policy estimators on simulated logs whose target-policy value is known exactly.

The world: a person is one of six context cells (device × plan, with known shares); four
actions; the click probability of an action is additive in the device and the plan (so a
per-action linear model on one-hot contexts is well specified). A logging policy with known
propensities picks actions; the target policy's value is computed analytically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from auie.decide.features import Featurizer
from auie.decide.model import HybridRidge
from auie.decide.ope import (
    LoggedBandit,
    LoggedRound,
    bootstrap_means,
    check_target,
    cross_fit_rewards,
    dm,
    dr,
    effective_sample_size,
    evaluate,
    fit_ridge,
    importance_weights,
    ips,
    logged_bandit,
    percentile_interval,
    predict_rewards,
    replay,
    snips,
)
from auie.decide.policies import make_policy

CELL_SHARE = np.array([0.25, 0.15, 0.2, 0.1, 0.2, 0.1])  # device 0..2 × plan 0..1
DEVICE = np.array([0, 0, 1, 1, 2, 2])
PLAN = np.array([0, 1, 0, 1, 0, 1])
BASE = np.array([0.10, 0.20, 0.15, 0.05])
DEVICE_EFFECT = np.array([[0.0, 0.3, 0.1], [0.0, -0.1, 0.2], [0.0, 0.0, 0.0], [0.0, 0.2, 0.6]])
PLAN_EFFECT = np.array([[0.0, 0.1], [0.0, 0.3], [0.0, -0.1], [0.0, 0.1]])
#: Click probability of each action (column) in each cell (row).
CLICK = (BASE[None, :] + DEVICE_EFFECT.T[DEVICE] + PLAN_EFFECT.T[PLAN]).clip(0.01, 0.99)
#: The logging policy: every action has at least 10%, and it leans on action 0.
LOGGING = np.array(
    [
        [0.55, 0.15, 0.15, 0.15],
        [0.40, 0.30, 0.10, 0.20],
        [0.25, 0.25, 0.25, 0.25],
        [0.10, 0.40, 0.10, 0.40],
        [0.70, 0.10, 0.10, 0.10],
        [0.30, 0.30, 0.30, 0.10],
    ]
)
#: The target policy: mostly the best action of each cell.
TARGET = np.full((6, 4), 0.05)
TARGET[np.arange(6), CLICK.argmax(axis=1)] = 0.85
TRUE_VALUE = float(CELL_SHARE @ (TARGET * CLICK).sum(axis=1))


@dataclass
class Simulated:
    log: LoggedBandit
    target: np.ndarray
    cells: np.ndarray

    @property
    def oracle(self) -> np.ndarray:
        """The true expected reward of every candidate of every round."""
        return CLICK[self.cells]


def simulate(n: int, seed: int) -> Simulated:
    rng = np.random.default_rng(seed)
    cells = rng.choice(6, size=n, p=CELL_SHARE)
    u = rng.random(n)[:, None]
    chosen = (u > np.cumsum(LOGGING[cells], axis=1)).sum(axis=1)
    reward = (rng.random(n) < CLICK[cells, chosen]).astype(float)
    x = np.zeros((n, 6))
    x[:, 0] = 1.0
    x[np.arange(n), 1 + DEVICE[cells]] = 1.0
    x[np.arange(n), 4 + PLAN[cells]] = 1.0
    log = LoggedBandit.fixed_actions(
        4,
        chosen,
        reward,
        LOGGING[cells, chosen],
        logging=LOGGING[cells],
        x=x[:, [0, 2, 3, 5]],  # bias + device 1, device 2 + plan 1: a full-rank one-hot
    )
    return Simulated(log, TARGET[cells], cells)


def test_true_value_is_what_the_target_earns() -> None:
    """A huge on-policy Monte Carlo agrees with the analytic value."""
    rng = np.random.default_rng(99)
    cells = rng.choice(6, size=2_000_000, p=CELL_SHARE)
    u = rng.random(len(cells))[:, None]
    actions = (u > np.cumsum(TARGET[cells], axis=1)).sum(axis=1)
    rewards = rng.random(len(cells)) < CLICK[cells, actions]
    assert rewards.mean() == pytest.approx(TRUE_VALUE, abs=0.002)


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_error_shrinks_with_the_number_of_rounds(estimator: str) -> None:
    errors = {}
    for n in (1000, 16000):
        found = []
        for seed in range(20):
            sim = simulate(n, seed)
            if estimator == "ips":
                value = ips(sim.log, sim.target)
            elif estimator == "snips":
                value = snips(sim.log, sim.target)
            else:
                value = dr(sim.log, sim.target, cross_fit_rewards(sim.log, seed=seed))
            found.append(abs(value - TRUE_VALUE))
        errors[n] = float(np.mean(found))
    # 16 times the data: about a quarter of the error (√16), certainly under half.
    assert errors[16000] < 0.5 * errors[1000]
    assert errors[16000] < 0.01


def test_intervals_cover_the_truth_in_most_seeds() -> None:
    covered = dict.fromkeys(("ips", "snips", "dm", "dr"), 0)
    seeds = 20
    for seed in range(seeds):
        sim = simulate(3000, 1000 + seed)
        report = evaluate(sim.log, {"target": sim.target}, rounds=300, dm_refits=80, seed=seed)
        for name, estimate in report.policies["target"].estimates.items():
            assert estimate.lower is not None
            assert estimate.upper is not None
            assert estimate.lower <= estimate.value <= estimate.upper
            covered[name] += estimate.lower <= TRUE_VALUE <= estimate.upper
    # DM's interval refits the reward model on each resample: its error is the model's.
    for name in ("ips", "snips", "dm", "dr"):
        assert covered[name] >= 0.8 * seeds, covered


def test_dm_is_exact_with_the_true_model() -> None:
    sim = simulate(5000, 7)
    conditional = float(np.mean((sim.target * sim.oracle).sum(axis=1)))
    assert dm(sim.log, sim.target, sim.oracle) == pytest.approx(conditional, abs=1e-12)
    # ... which is the true value up to which contexts happened to be drawn.
    assert conditional == pytest.approx(TRUE_VALUE, abs=0.01)
    # DR with the true model is still unbiased and steadier than IPS.
    assert dr(sim.log, sim.target, sim.oracle) == pytest.approx(TRUE_VALUE, abs=0.02)


def test_dm_with_the_well_specified_ridge_model() -> None:
    errors = []
    for seed in range(10):
        sim = simulate(20000, 300 + seed)
        q_hat = cross_fit_rewards(sim.log, folds=3, seed=seed)
        # The ridge model recovers the click probabilities of every cell closely...
        assert np.abs(q_hat - sim.oracle).max() < 0.06
        errors.append(dm(sim.log, sim.target, q_hat) - TRUE_VALUE)
    # ... so DM is nearly exact: tiny error, no systematic bias.
    assert np.abs(errors).max() < 0.012
    assert abs(np.mean(errors)) < 0.004


def test_logging_policy_on_its_own_log() -> None:
    sim = simulate(2000, 5)
    log = sim.log
    assert log.logging is not None
    weights = importance_weights(log, log.logging)
    assert np.allclose(weights, 1.0)
    assert effective_sample_size(weights) == pytest.approx(log.n)
    assert ips(log, log.logging) == pytest.approx(log.reward.mean())
    assert snips(log, log.logging) == pytest.approx(log.reward.mean())
    q_hat = cross_fit_rewards(log)
    assert dr(log, log.logging, q_hat) == pytest.approx(log.reward.mean(), abs=0.01)


def test_effective_sample_size_and_clipping() -> None:
    assert effective_sample_size([1.0, 1.0, 1.0, 1.0]) == pytest.approx(4)
    assert effective_sample_size([4.0, 0.0, 0.0, 0.0]) == pytest.approx(1)
    assert effective_sample_size([0.0, 0.0]) == 0
    sim = simulate(2000, 11)
    raw = importance_weights(sim.log, sim.target)
    clipped = importance_weights(sim.log, sim.target, clip=2.0)
    assert raw.max() > 2.0
    assert clipped.max() == pytest.approx(2.0)
    assert np.array_equal(clipped, np.minimum(raw, 2.0))
    assert ips(sim.log, sim.target, clip=2.0) < ips(sim.log, sim.target)
    report = evaluate(sim.log, {"t": sim.target}, clip=2.0, rounds=0)
    assert report.policies["t"].max_weight == pytest.approx(2.0)
    assert report.policies["t"].ess > effective_sample_size(raw)
    with pytest.raises(ValueError, match="clip"):
        importance_weights(sim.log, sim.target, clip=0)


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    sim = simulate(1500, 21)
    q_hat = cross_fit_rewards(sim.log)
    first = evaluate(sim.log, {"t": sim.target}, q_hat=q_hat, rounds=300, seed=4)
    again = evaluate(sim.log, {"t": sim.target}, q_hat=q_hat, rounds=300, seed=4)
    other = evaluate(sim.log, {"t": sim.target}, q_hat=q_hat, rounds=300, seed=5)
    assert first.policies["t"].estimates == again.policies["t"].estimates
    assert first.policies["t"].estimates["ips"] != other.policies["t"].estimates["ips"]
    # Point estimates do not depend on the bootstrap.
    assert first.policies["t"].estimates["dr"].value == other.policies["t"].estimates["dr"].value
    columns = np.column_stack([sim.log.reward, sim.log.propensity])
    replicates = bootstrap_means(columns, rounds=50, seed=1)
    assert np.array_equal(replicates, bootstrap_means(columns, rounds=50, seed=1))
    # Resamples depend on (n, rounds, seed) only: one column alone gets the same ones.
    assert np.array_equal(replicates[:, :1], bootstrap_means(columns[:, :1], rounds=50, seed=1))
    low, high = percentile_interval(replicates[:, 0], 0.9)
    assert np.mean(replicates[:, 0] < low) == pytest.approx(0.05, abs=0.03)
    assert low < sim.log.reward.mean() < high


def test_paired_comparison_finds_the_better_policy() -> None:
    sim = simulate(6000, 2)
    cells = sim.cells
    worst = np.full((6, 4), 0.02)
    worst[np.arange(6), CLICK.argmin(axis=1)] = 0.94
    report = evaluate(
        sim.log,
        {"good": sim.target, "bad": worst[cells]},
        baseline="bad",
        rounds=400,
        dm_refits=50,
        seed=1,
    )
    good = report.comparisons["good"]
    assert good.baseline == "bad"
    assert good.verdict == "better"
    assert good.better
    truth = TRUE_VALUE - float(CELL_SHARE @ (worst * CLICK).sum(axis=1))
    difference = good.differences["dr"]
    assert difference.lower is not None
    assert difference.upper is not None
    assert difference.lower <= truth <= difference.upper
    reverse = evaluate(
        sim.log, {"good": sim.target, "bad": worst[cells]}, baseline="good", rounds=200, dm_refits=0
    )
    assert reverse.comparisons["bad"].verdict == "worse"
    same = evaluate(
        sim.log, {"a": sim.target, "b": sim.target}, baseline="a", rounds=100, dm_refits=20
    )
    assert same.comparisons["b"].verdict == "inconclusive"
    assert same.comparisons["b"].differences["dr"].value == 0


def test_fit_ridge_is_the_online_model() -> None:
    """The batch fit equals HybridRidge updated round by round (shared part included)."""
    rng = np.random.default_rng(1)
    n, width, d, k = 300, 4, 5, 3
    candidates = np.array([rng.permutation(6)[:width] for _ in range(n)])
    x = rng.normal(size=(n, d))
    z = rng.normal(size=(n, width, k))
    chosen = rng.integers(0, width, n)
    reward = rng.normal(size=n)
    log = LoggedBandit(chosen, reward, np.full(n, 0.25), candidates, tuple("abcdef"), x=x, z=z)
    online = HybridRidge(d, k, 1.0)
    for i in range(n):
        online.update(log.action_names[candidates[i, chosen[i]]], x[i], z[i, chosen[i]], reward[i])
    batch = fit_ridge(log)
    predicted = predict_rewards(batch, log)
    for i in range(0, n, 7):
        ids = tuple(log.action_names[c] for c in candidates[i])
        means, widths = online.predict(ids, x[i], z[i])
        batch_means, batch_widths = batch.predict(ids, x[i], z[i])
        assert np.allclose(means, batch_means, atol=1e-9)
        assert np.allclose(widths, batch_widths, atol=1e-9)
        assert np.allclose(predicted[i], means, atol=1e-9)
    # Actions never logged get the shared part only (here: zero without action features).
    only_a = log.take(np.flatnonzero(log.chosen_action == 0))
    model = fit_ridge(only_a)
    assert list(model.index) == ["a"]


def test_replay_is_progressive_validation() -> None:
    """Round i is judged by a policy trained on rounds before i only."""
    featurize = Featurizer(context_dim=8, action_dim=8)
    rng = np.random.default_rng(3)
    rounds = []
    for _ in range(60):
        device = "mobile" if rng.random() < 0.5 else "desktop"
        decision = featurize({"device": device}, [("a", {}), ("b", {}), ("c", {})])
        rounds.append(
            LoggedRound(decision, np.full(3, 1 / 3), int(rng.integers(3)), float(rng.random()))
        )
    rounds[10] = LoggedRound(rounds[10].decision, np.full(3, 1 / 3), 0, 1.0, frozenset({"b"}))

    def policy() -> object:
        return make_policy({"type": "epsilon_greedy", "epsilon": 0.3}, context_dim=8, action_dim=8)

    learned = replay(policy(), rounds)  # type: ignore[arg-type]
    assert learned.shape == (60, 3)
    assert np.allclose(learned.sum(axis=1), 1.0)
    assert learned[10, 1] == 0  # excluded actions get nothing
    changed = [*rounds[:-1], LoggedRound(rounds[-1].decision, np.full(3, 1 / 3), 2, 99.0)]
    assert np.array_equal(replay(policy(), changed), learned)  # type: ignore[arg-type]
    changed_early = [*rounds[:30], LoggedRound(rounds[30].decision, np.full(3, 1 / 3), 2, 99.0)]
    changed_early += rounds[31:]
    differs = replay(policy(), changed_early)  # type: ignore[arg-type]
    assert np.array_equal(differs[:31], learned[:31])
    assert not np.array_equal(differs[31:], learned[31:])
    # Frozen: an untrained ε-greedy ties everywhere (random greedy pick, ε spread), and
    # the logged rewards do not matter.
    frozen = replay(policy(), rounds, learn=False)  # type: ignore[arg-type]
    others = np.delete(frozen, 10, axis=0)
    assert np.allclose(np.sort(others, axis=1), [0.1, 0.1, 0.8])
    assert np.array_equal(replay(policy(), changed_early, learn=False), frozen)  # type: ignore[arg-type]

    log = logged_bandit(rounds)
    assert log.n == 60
    assert log.action_names == ("a", "b", "c")
    assert log.x is not None
    assert log.x.shape == (60, 8)
    check_target(log, learned)


def test_logged_bandit_validation() -> None:
    ok = {
        "chosen": np.array([0, 1]),
        "reward": np.array([1.0, 0.0]),
        "propensity": np.array([0.5, 0.5]),
        "candidates": np.array([[0, 1], [0, 1]]),
        "action_names": ("a", "b"),
    }
    LoggedBandit(**ok)  # type: ignore[arg-type]
    for change, message in [
        ({"propensity": np.array([0.0, 0.5])}, "propensities"),
        ({"chosen": np.array([0, 2])}, "chosen"),
        ({"candidates": np.array([[0, 1], [0, -1]])}, "padding"),
        ({"reward": np.array([np.nan, 0.0])}, "finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            LoggedBandit(**{**ok, **change})  # type: ignore[arg-type]
    log = LoggedBandit(**ok)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sum to 1"):
        check_target(log, [[0.5, 0.2], [0.5, 0.5]])
    with pytest.raises(ValueError, match="shape"):
        check_target(log, [[1.0], [1.0]])
