"""Reproduce the Open Bandit Pipeline's published numbers with AUIE's estimators.

The data and the production prior come straight from the obp wheel (``scripts/fetch-obp``;
obp itself is never installed or imported). What obp does is re-implemented here step by
step, following its source (obp 0.4.1 = 0.5.7 for every step used):

* ``OpenBanditDataset.load_raw_data`` — ``read_csv(index_col=0)``, ``sort_values("timestamp")``,
  positions dense-ranked from 0, ``click`` as reward, ``propensity_score`` as pscore;
* ``BernoulliTS(is_zozotown_prior=True, campaign="all", random_state=12345)
  .compute_batch_action_dist(n_sim)`` — ``n_sim`` times: draw one Beta(α, β) sample per
  item from ``RandomState(12345)``, rank, take the top 3; count per (item, position);
* ``sample_bootstrap_bandit_feedback(random_state=b)`` —
  ``RandomState(b).choice(arange(n), size=n, replace=True)``;
* ``calc_on_policy_policy_value_estimate("bts", "all")`` — the mean click of the bts log;
* relative estimation error ``|V̂ − V| / V``.

The estimators themselves are AUIE's (:mod:`auie.decide.ope`): a round is one logged
impression, its 80 candidates are the items, and the target distribution is the
BernoulliTS distribution of the impression's position.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import yaml

from auie.decide.ope import LoggedBandit, ips, snips
from helpers import REPO

FETCH = REPO / "scripts" / "fetch-obp"
RANDOM_STATE = 12345


@pytest.fixture(scope="module")
def wheel() -> Iterator[zipfile.ZipFile]:
    done = subprocess.run([str(FETCH)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode == 75:
        pytest.skip(f"cannot download the obp wheel, the registry is unreachable: {done.stderr}")
    assert done.returncode == 0, done.stderr
    path = REPO / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(path) as archive:
        yield archive


@dataclass
class Obd:
    """One campaign of the Open Bandit Dataset sample, as ``OpenBanditDataset`` loads it."""

    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray


def load(wheel: zipfile.ZipFile, behavior_policy: str) -> Obd:
    raw = wheel.read(f"obp/dataset/obd/{behavior_policy}/all/all.csv")
    data = pd.read_csv(io.BytesIO(raw), index_col=0)
    data = data.sort_values("timestamp")
    position = (data["position"].rank(method="dense").to_numpy() - 1).astype(int)
    return Obd(
        action=data["item_id"].to_numpy(),
        position=position,
        reward=data["click"].to_numpy().astype(float),
        pscore=data["propensity_score"].to_numpy(),
    )


def bernoulli_ts_action_dist(
    alpha: np.ndarray, beta: np.ndarray, len_list: int, n_sim: int, random_state: int
) -> np.ndarray:
    """obp's ``BernoulliTS.compute_batch_action_dist`` (before any update), vectorised:
    ``RandomState.beta`` broadcast over ``(chunk, n_actions)`` draws the same numbers, in
    the same order, as ``n_sim`` calls with one draw per action."""
    rng = np.random.RandomState(random_state)
    counts = np.zeros((len(alpha), len_list))
    done = 0
    while done < n_sim:
        size = min(50_000, n_sim - done)
        draws = rng.beta(alpha, beta, size=(size, len(alpha)))
        top = np.argsort(draws, axis=1)[:, ::-1][:, :len_list]
        for pos in range(len_list):
            counts[:, pos] += np.bincount(top[:, pos], minlength=len(alpha))
        done += size
    return counts / n_sim


def bernoulli_ts_action_dist_loop(
    alpha: np.ndarray, beta: np.ndarray, len_list: int, n_sim: int, random_state: int
) -> np.ndarray:
    """obp's loop, verbatim in spirit: one ``select_action`` per simulation."""
    rng = np.random.RandomState(random_state)
    counts = np.zeros((len(alpha), len_list))
    for _ in range(n_sim):
        selected = rng.beta(a=alpha, b=beta).argsort()[::-1][:len_list]
        for pos in range(len_list):
            counts[selected[pos], pos] += 1
    return counts / n_sim


@pytest.fixture(scope="module")
def prior(wheel: zipfile.ZipFile) -> tuple[np.ndarray, np.ndarray]:
    config = yaml.safe_load(wheel.read("obp/policy/conf/prior_bts.yaml"))["all"]
    return np.asarray(config["alpha"], dtype=float), np.asarray(config["beta"], dtype=float)


def as_logged_bandit(obd: Obd, action_dist: np.ndarray) -> tuple[LoggedBandit, np.ndarray]:
    """AUIE's log and the BernoulliTS target distribution of every impression."""
    n_actions = action_dist.shape[0]
    log = LoggedBandit.fixed_actions(n_actions, obd.action, obd.reward, obd.pscore)
    target = action_dist[:, obd.position].T  # (n, n_actions): the position's distribution
    return log, target


def test_vectorised_action_dist_is_obps_loop(prior: tuple[np.ndarray, np.ndarray]) -> None:
    alpha, beta = prior
    fast = bernoulli_ts_action_dist(alpha, beta, 3, 3000, RANDOM_STATE)
    assert np.array_equal(fast, bernoulli_ts_action_dist_loop(alpha, beta, 3, 3000, RANDOM_STATE))


def test_readme_example(wheel: zipfile.ZipFile, prior: tuple[np.ndarray, np.ndarray]) -> None:
    """The README's "Example with Open Bandit Dataset": IPW of BernoulliTS
    (``n_sim=100000``) on the Random log is 0.004553..., 1.198126... times Random's value."""
    random = load(wheel, "random")
    alpha, beta = prior
    assert len(random.reward) == 10_000
    assert len(alpha) == 80
    action_dist = bernoulli_ts_action_dist(alpha, beta, 3, 100_000, RANDOM_STATE)
    log, target = as_logged_bandit(random, action_dist)
    value = ips(log, target)
    assert f"{value:.6f}" == "0.004553"
    assert f"{value / random.reward.mean():.6f}" == "1.198126"


def test_evaluation_of_ope_examples_obd(
    wheel: zipfile.ZipFile, prior: tuple[np.ndarray, np.ndarray]
) -> None:
    """examples/obd/README.md: ``evaluate_off_policy_estimators.py --n_runs 30
    --base_model logistic_regression --evaluation_policy bts --behavior_policy random
    --campaign all`` prints the relative estimation errors (mean, std over 30 bootstrap
    samples) ipw 0.311082 0.311170 and snipw 0.311795 0.334736. The script's
    ``--n_sim_to_compute_action_dist`` defaults to 1,000,000 (with 100,000 the means are
    0.312235 and 0.312324)."""
    random = load(wheel, "random")
    ground_truth = load(wheel, "bts").reward.mean()
    assert f"{ground_truth:.4f}" == "0.0042"
    alpha, beta = prior
    action_dist = bernoulli_ts_action_dist(alpha, beta, 3, 1_000_000, RANDOM_STATE)
    log, target = as_logged_bandit(random, action_dist)
    n = log.n
    errors: dict[str, list[float]] = {"ipw": [], "snipw": []}
    for b in range(30):
        rows = np.random.RandomState(b).choice(np.arange(n), size=n, replace=True)
        sample, sample_target = log.take(rows), target[rows]
        for name, estimator in (("ipw", ips), ("snipw", snips)):
            value = estimator(sample, sample_target)
            errors[name].append(abs(value - ground_truth) / ground_truth)
    summary = pd.DataFrame(errors).describe().T.round(6)
    assert summary.loc["ipw", "mean"] == 0.311082
    assert summary.loc["ipw", "std"] == 0.311170
    assert summary.loc["snipw", "mean"] == 0.311795
    assert summary.loc["snipw", "std"] == 0.334736
