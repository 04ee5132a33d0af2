"""Off-policy evaluation: what a policy *would* have earned, estimated from what another
policy logged.

The log is :class:`LoggedBandit`: ``n`` rounds, each with up to ``K`` candidate actions
(padded; ``candidates == -1`` marks padding), the candidate the logging policy chose, the
reward it got and the probability it was chosen with (the *propensity* ``p_i``); optionally
the context vector ``x_i`` and each candidate's action vector ``z_ia`` (what the reward
model needs). A *target* policy is given by its action distribution on every logged round,
an ``(n, K)`` array ``π(a|x_i)``; :func:`replay` computes it for any AUIE policy.

With ``w_i = π(a_i|x_i) / p_i`` (optionally clipped at ``clip``) and a reward model
``q̂(x, a)``, the estimators are (Dudík, Langford & Li 2011; Swaminathan & Joachims 2015):

* IPS  ``V = 1/n Σ w_i r_i`` — unbiased, high variance when weights are large;
* SNIPS ``V = Σ w_i r_i / Σ w_i`` — self-normalised: slightly biased, much steadier;
* DM   ``V = 1/n Σ_i Σ_a π(a|x_i) q̂(x_i, a)`` — low variance, biased as the model is;
* DR   ``V = DM + 1/n Σ w_i (r_i − q̂(x_i, a_i))`` — unbiased if either the propensities
  or the model are right.

The default reward model is the hybrid ridge regression every AUIE policy learns with
(:class:`~auie.decide.model.HybridRidge`), fit on the log itself and *cross-fitted*: the
rounds are split into ``folds``; each fold's rewards are predicted by a model fit on the
other folds, so no round's prediction has seen its own reward (Chernozhukov et al. 2018;
Narita et al. 2020). The fit is the exact batch solution of the same ridge problem the
online model solves update by update (:func:`fit_ridge`).

Confidence intervals are percentile bootstraps over rounds: ``rounds`` resamples of the
``n`` rounds with replacement from a generator seeded with ``seed`` (the same resamples for
every policy, so differences between policies get paired intervals); the reward model is
not refit per resample. The effective sample size ``(Σw)² / Σw²`` says how many logged
rounds the estimate is really worth.

Everything is vectorised numpy over rounds; only :func:`replay` walks the log, because a
policy that learns must see the rounds in order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies import Policy

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: The estimators every evaluation reports, in display order.
ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")
_TOLERANCE = 1e-6
_BOOTSTRAP_CHUNK = 4_000_000  # resampled round indices held in memory at once


# -- the logged data ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LoggedBandit:
    """Logged bandit feedback: see the module docstring.

    ``candidates[i, j]`` is the action (an index into ``action_names``) offered as the
    ``j``-th candidate of round ``i``, or -1 when round ``i`` had fewer than ``K``
    candidates; ``chosen[i]`` indexes the round's candidates. ``logging`` is the logging
    policy's whole distribution (optional: only ``propensity`` is needed).
    """

    chosen: IntArray
    reward: Array
    propensity: Array
    candidates: IntArray
    action_names: tuple[str, ...]
    logging: Array | None = None
    x: Array | None = None
    z: Array | None = None

    def __post_init__(self) -> None:
        n = len(self.chosen)
        if self.candidates.ndim != 2 or len(self.candidates) != n:
            raise ValueError("candidates must have shape (n_rounds, n_candidates)")
        if self.reward.shape != (n,) or self.propensity.shape != (n,):
            raise ValueError("reward and propensity must have shape (n_rounds,)")
        k = self.candidates.shape[1]
        if n and (self.chosen.min() < 0 or self.chosen.max() >= k):
            raise ValueError("chosen is out of range")
        if n and (self.candidates[np.arange(n), self.chosen] < 0).any():
            raise ValueError("a chosen candidate is padding")
        if self.candidates.size and self.candidates.max() >= len(self.action_names):
            raise ValueError("a candidate is not in action_names")
        if not np.all((self.propensity > 0) & (self.propensity <= 1 + _TOLERANCE)):
            raise ValueError("propensities must be in (0, 1]")
        if not np.all(np.isfinite(self.reward)):
            raise ValueError("rewards must be finite")
        if self.logging is not None and self.logging.shape != self.candidates.shape:
            raise ValueError("logging must have the shape of candidates")
        if self.x is not None and (self.x.ndim != 2 or len(self.x) != n):
            raise ValueError("x must have shape (n_rounds, context_dim)")
        if self.z is not None and (self.z.ndim != 3 or self.z.shape[:2] != self.candidates.shape):
            raise ValueError("z must have shape (n_rounds, n_candidates, action_dim)")

    @classmethod
    def fixed_actions(
        cls,
        n_actions: int,
        chosen: npt.ArrayLike,
        reward: npt.ArrayLike,
        propensity: npt.ArrayLike,
        *,
        logging: npt.ArrayLike | None = None,
        x: npt.ArrayLike | None = None,
        action_names: Sequence[str] | None = None,
    ) -> LoggedBandit:
        """A log where every round offers the same ``n_actions`` actions, in order."""
        chosen_ = np.asarray(chosen, dtype=np.int64)
        names = (
            tuple(action_names) if action_names is not None else tuple(map(str, range(n_actions)))
        )
        return cls(
            chosen=chosen_,
            reward=np.asarray(reward, dtype=np.float64),
            propensity=np.asarray(propensity, dtype=np.float64),
            candidates=np.tile(np.arange(n_actions, dtype=np.int64), (len(chosen_), 1)),
            action_names=names,
            logging=None if logging is None else np.asarray(logging, dtype=np.float64),
            x=None if x is None else np.asarray(x, dtype=np.float64),
        )

    @property
    def n(self) -> int:
        return len(self.chosen)

    @property
    def n_candidates(self) -> int:
        return int(self.candidates.shape[1])

    @property
    def mask(self) -> BoolArray:
        """Real (not padding) candidates."""
        return self.candidates >= 0

    @property
    def chosen_action(self) -> IntArray:
        """The action (index into ``action_names``) chosen in each round."""
        return self.candidates[np.arange(self.n), self.chosen]

    def take(self, rows: npt.ArrayLike) -> LoggedBandit:
        """The rounds ``rows`` (repeats allowed: a bootstrap resample is a ``take``)."""
        index = np.asarray(rows, dtype=np.int64)
        return LoggedBandit(
            chosen=self.chosen[index],
            reward=self.reward[index],
            propensity=self.propensity[index],
            candidates=self.candidates[index],
            action_names=self.action_names,
            logging=None if self.logging is None else self.logging[index],
            x=None if self.x is None else self.x[index],
            z=None if self.z is None else self.z[index],
        )


def check_target(log: LoggedBandit, target: npt.ArrayLike) -> Array:
    """A target policy's ``(n, K)`` distribution, checked: probabilities that sum to 1 over
    each round's real candidates."""
    dist = np.asarray(target, dtype=np.float64)
    if dist.shape != log.candidates.shape:
        raise ValueError(f"target must have shape {log.candidates.shape}, got {dist.shape}")
    if not np.all(np.isfinite(dist)) or (dist < 0).any():
        raise ValueError("target probabilities must be finite and non-negative")
    if (dist[~log.mask] > 0).any():
        raise ValueError("target gives probability to padding")
    if log.n and not np.allclose(dist.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("target probabilities of a round must sum to 1")
    return dist


# -- estimators ---------------------------------------------------------------------------


def importance_weights(
    log: LoggedBandit, target: npt.ArrayLike, *, clip: float | None = None
) -> Array:
    """``w_i = π(a_i|x_i) / p_i``, capped at ``clip`` when given."""
    dist = check_target(log, target)
    weights = dist[np.arange(log.n), log.chosen] / log.propensity
    if clip is not None:
        if clip <= 0:
            raise ValueError("clip must be positive")
        weights = np.minimum(weights, clip)
    return np.asarray(weights, dtype=np.float64)


def effective_sample_size(weights: npt.ArrayLike) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²`` (``n`` when every weight is equal)."""
    w = np.asarray(weights, dtype=np.float64)
    squares = float(np.dot(w, w))
    return float(w.sum() ** 2 / squares) if squares > 0 else 0.0


def ips(log: LoggedBandit, target: npt.ArrayLike, *, clip: float | None = None) -> float:
    """Inverse propensity scoring (IPW)."""
    return float(np.mean(importance_weights(log, target, clip=clip) * log.reward))


def snips(log: LoggedBandit, target: npt.ArrayLike, *, clip: float | None = None) -> float:
    """Self-normalised IPS (SNIPW); 0 when the target never agrees with the log."""
    weights = importance_weights(log, target, clip=clip)
    total = float(weights.sum())
    return float(np.dot(weights, log.reward) / total) if total > 0 else 0.0


def dm(log: LoggedBandit, target: npt.ArrayLike, q_hat: npt.ArrayLike) -> float:
    """Direct method with reward predictions ``q_hat`` (shape ``(n, K)``)."""
    dist = check_target(log, target)
    return float(np.mean(np.einsum("nk,nk->n", dist, _check_q(log, q_hat))))


def dr(
    log: LoggedBandit,
    target: npt.ArrayLike,
    q_hat: npt.ArrayLike,
    *,
    clip: float | None = None,
) -> float:
    """Doubly robust: the direct method corrected by importance-weighted residuals."""
    return float(
        np.mean(_round_terms(log, check_target(log, target), _check_q(log, q_hat), clip)[3])
    )


def _check_q(log: LoggedBandit, q_hat: npt.ArrayLike) -> Array:
    q = np.asarray(q_hat, dtype=np.float64)
    if q.shape != log.candidates.shape:
        raise ValueError(f"reward predictions must have shape {log.candidates.shape}")
    return q


def _round_terms(
    log: LoggedBandit, dist: Array, q: Array, clip: float | None
) -> tuple[Array, Array, Array, Array]:
    """Per-round ``w``, ``w·r``, DM term and DR term (every estimator is a mean of these,
    SNIPS a ratio of two means)."""
    rows = np.arange(log.n)
    weights = dist[rows, log.chosen] / log.propensity
    if clip is not None:
        weights = np.minimum(weights, clip)
    direct = np.einsum("nk,nk->n", dist, q)
    doubly = direct + weights * (log.reward - q[rows, log.chosen])
    return weights, weights * log.reward, direct, doubly


# -- the reward model ---------------------------------------------------------------------


def _inputs(log: LoggedBandit) -> tuple[Array, Array]:
    x = log.x if log.x is not None else np.ones((log.n, 1))
    z = log.z if log.z is not None else np.zeros((*log.candidates.shape, 0))
    return x, z


def fit_ridge(
    log: LoggedBandit,
    rows: npt.ArrayLike | None = None,
    *,
    weights: npt.ArrayLike | None = None,
    l2: float = 1.0,
) -> HybridRidge:
    """The hybrid ridge model of :mod:`auie.decide.model`, fit on ``rows`` of the log at once
    (``weights``: per-round weights for the whole log, as ``update(weight=...)`` takes them;
    integer weights are repeated rounds).

    The result is the model an online :meth:`HybridRidge.update` of every row would reach
    (ridge regression does not depend on the order of its data), built directly from the
    sufficient statistics: per action ``A_a = λI + Σ x xᵀ``, ``b_a = Σ r x``,
    ``B_a = Σ x zᵀ``; shared ``A₀ = λI + Σ z zᵀ − Σ_a B_aᵀ A_a⁻¹ B_a``,
    ``b₀ = Σ r z − Σ_a B_aᵀ A_a⁻¹ b_a``. Without ``x`` the per-action part is a mean.
    """
    x_all, z_all = _inputs(log)
    index = np.arange(log.n) if rows is None else np.asarray(rows, dtype=np.int64)
    w = np.ones(len(index))
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)[index]
        index, w = index[w > 0], w[w > 0]
    d, k = x_all.shape[1], z_all.shape[2]
    x = x_all[index]
    z = z_all[index, log.chosen[index]]
    r = log.reward[index]
    wx, wz, wr = x * w[:, None], z * w[:, None], r * w
    actions = log.chosen_action[index]
    arms, slot = np.unique(actions, return_inverse=True)
    m = len(arms)
    a_mat = np.repeat(np.eye(d)[None] * l2, m, axis=0)
    b_vec = np.zeros((m, d))
    b_mat = np.zeros((m, d, k))
    order = np.argsort(slot, kind="stable")
    bounds = np.searchsorted(slot[order], np.arange(m + 1))
    for i in range(m):
        members = order[bounds[i] : bounds[i + 1]]
        xa = x[members].T
        a_mat[i] += xa @ wx[members]
        b_vec[i] = xa @ wr[members]
        b_mat[i] = xa @ wz[members]
    a_inv: Array = np.asarray(np.linalg.inv(a_mat) if m else a_mat, dtype=np.float64)
    a0 = np.eye(k) * l2 + z.T @ wz
    b0 = z.T @ wr
    if k and m:
        shared = np.matmul(b_mat.transpose(0, 2, 1), a_inv)  # B_aᵀ A_a⁻¹
        a0 -= np.einsum("mke,mel->kl", shared, b_mat)
        b0 -= np.einsum("mke,me->k", shared, b_vec)
    model = HybridRidge(d, k, l2)
    model.index = {log.action_names[a]: i for i, a in enumerate(arms)}
    model.a_inv, model.b_vec, model.b_mat = a_inv, b_vec, b_mat
    model.pulls = np.bincount(slot, minlength=m).astype(np.float64)  # rounds, not weight
    model.a0, model.b0 = a0, b0
    model.a0_inv = np.asarray(np.linalg.inv(a0), dtype=np.float64) if k else np.eye(0)
    model.updates = len(index)
    return model


def predict_rewards(
    model: HybridRidge, log: LoggedBandit, *, x: Array | None = None, z: Array | None = None
) -> Array:
    """The model's mean reward for every candidate of every round, ``(n, K)`` — what
    :meth:`HybridRidge.predict` gives round by round, computed at once. ``x``/``z`` replace
    the log's vectors (feature importance permutes them)."""
    x_log, z_log = _inputs(log)
    x = x_log if x is None else x
    z = z_log if z is None else z
    m = len(model.index)
    mask = log.mask
    q = np.zeros(log.candidates.shape)
    beta = model.a0_inv @ model.b0 if model.k else np.zeros(0)
    if model.k:
        q += z @ beta
    if m:
        residual = model.b_vec[:m] - (model.b_mat[:m] @ beta if model.k else 0.0)
        theta = np.einsum("mij,mj->mi", model.a_inv[:m], residual)
        slot_of = np.array([model.index.get(name, -1) for name in log.action_names], np.int64)
        slots = np.where(mask, slot_of[np.where(mask, log.candidates, 0)], -1)
        per_arm = x @ theta.T  # (n, m): x_i·θ_a for every arm
        rows, cols = np.nonzero(slots >= 0)
        q[rows, cols] += per_arm[rows, slots[rows, cols]]
    q[~mask] = 0.0
    return q


def cross_fit_rewards(
    log: LoggedBandit, *, folds: int = 3, l2: float = 1.0, seed: int = 0
) -> Array:
    """Reward predictions ``(n, K)`` where each round's come from a ridge model fit on the
    other folds (``folds = 1``: one model fit on everything, in-sample)."""
    if folds < 1:
        raise ValueError("folds must be >= 1")
    if folds == 1 or log.n < folds:
        return predict_rewards(fit_ridge(log, l2=l2), log)
    fold = np.random.default_rng(seed).permutation(log.n) % folds
    q = np.zeros(log.candidates.shape)
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        model = fit_ridge(log, np.flatnonzero(fold != f), l2=l2)
        q[test] = predict_rewards(model, log.take(test))
    return q


# -- bootstrap ----------------------------------------------------------------------------


def bootstrap_means(columns: npt.ArrayLike, *, rounds: int, seed: int) -> Array:
    """Means of each column of ``columns`` (shape ``(n, c)``) over ``rounds`` resamples of
    its rows with replacement: ``(rounds, c)``. The resamples depend only on ``n``, ``rounds``
    and ``seed``, so columns evaluated in separate calls are paired."""
    data = np.asarray(columns, dtype=np.float64)
    n = data.shape[0]
    out = np.empty((rounds, data.shape[1]))
    if n == 0:
        out.fill(np.nan)
        return out
    rng = np.random.default_rng(seed)
    step = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, rounds, step):
        size = min(step, rounds - start)
        picks = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)
        out[start : start + size] = counts @ data / n
    return out


def percentile_interval(samples: npt.ArrayLike, confidence: float) -> tuple[float, float]:
    """The percentile-method interval of bootstrap replicates (NaNs ignored)."""
    values = np.asarray(samples, dtype=np.float64)
    tail = 50.0 * (1.0 - confidence)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def direct_method_refits(
    log: LoggedBandit, targets: Sequence[Array], *, rounds: int, seed: int, l2: float = 1.0
) -> Array:
    """DM of each target on ``rounds`` resamples with the ridge model *refit* on each
    (``(rounds, len(targets))``): unlike IPS or DR, DM's error is mostly the model's, which
    a bootstrap over a fixed model would not see. Resamples come from their own generator
    (``[seed, 1]``), the same for every target, so DM differences are paired."""
    out = np.empty((rounds, len(targets)))
    if log.n == 0:
        out.fill(np.nan)
        return out
    stacked = np.stack(targets)  # (targets, n, K)
    rng = np.random.default_rng([seed, 1])
    for b in range(rounds):
        counts = np.bincount(rng.integers(0, log.n, log.n), minlength=log.n).astype(np.float64)
        q = predict_rewards(fit_ridge(log, weights=counts, l2=l2), log)
        out[b] = np.einsum("tnk,nk->tn", stacked, q) @ counts / log.n
    return out


# -- a whole evaluation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate and its bootstrap interval (None without bootstrap)."""

    value: float
    lower: float | None = None
    upper: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "value": _finite(self.value),
            "lower": _finite(self.lower),
            "upper": _finite(self.upper),
        }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: undefined values are None."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class PolicyValue:
    """Every estimator's value of one target policy, with diagnostics."""

    name: str
    estimates: dict[str, Interval]
    ess: float
    mean_weight: float
    max_weight: float
    matches: int  # rounds where the target gives the logged action positive probability


@dataclass(frozen=True, slots=True)
class Comparison:
    """``name − baseline`` for every estimator; the verdict follows ``estimator``'s
    interval: ``better`` when it lies above 0, ``worse`` below, else ``inconclusive``."""

    name: str
    baseline: str
    differences: dict[str, Interval]
    estimator: str
    verdict: str

    @property
    def better(self) -> bool:
        return self.verdict == "better"


@dataclass(frozen=True, slots=True)
class OffPolicyReport:
    n: int
    confidence: float
    rounds: int
    clip: float | None
    folds: int
    dm_refits: int  # resamples with a refit model behind DM's interval (0: fixed model)
    policies: dict[str, PolicyValue]
    comparisons: dict[str, Comparison] = field(default_factory=dict)


def _replicates(
    boot: Array | None, direct_reps: Array | None, position: int
) -> dict[str, Array] | None:
    """Bootstrap replicates of every estimator for the target at ``position``."""
    if boot is None:
        return None
    base = 4 * position
    weights, weighted, direct, doubly = (boot[:, base + j] for j in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(weights > 0, weighted / weights, 0.0)
    if direct_reps is not None:
        direct = direct_reps[:, position]
    return {"ips": weighted, "snips": normalised, "dm": direct, "dr": doubly}


def _interval(value: float, samples: Array | None, confidence: float) -> Interval:
    if samples is None:
        return Interval(value)
    low, high = percentile_interval(samples, confidence)
    return Interval(value, low, high)


def _policy_value(
    name: str,
    terms: tuple[Array, Array, Array, Array],
    samples: dict[str, Array] | None,
    confidence: float,
) -> PolicyValue:
    weights, weighted, direct, doubly = terms
    n = len(weights)
    total = float(weights.sum())
    point = {
        "ips": float(weighted.mean()) if n else float("nan"),
        "snips": float(weighted.sum() / total) if total > 0 else 0.0,
        "dm": float(direct.mean()) if n else float("nan"),
        "dr": float(doubly.mean()) if n else float("nan"),
    }
    return PolicyValue(
        name=name,
        estimates={
            e: _interval(point[e], None if samples is None else samples[e], confidence)
            for e in ESTIMATORS
        },
        ess=effective_sample_size(weights),
        mean_weight=float(weights.mean()) if n else float("nan"),
        max_weight=float(weights.max()) if n else float("nan"),
        matches=int((weights > 0).sum()),
    )


def _compare(
    value: PolicyValue,
    baseline: PolicyValue,
    *,
    samples: dict[str, Array] | None,
    baseline_samples: dict[str, Array] | None,
    confidence: float,
    estimator: str,
) -> Comparison:
    diffs = {
        e: _interval(
            value.estimates[e].value - baseline.estimates[e].value,
            None
            if samples is None or baseline_samples is None
            else samples[e] - baseline_samples[e],
            confidence,
        )
        for e in ESTIMATORS
    }
    chosen = diffs[estimator]
    verdict = "inconclusive"
    if chosen.lower is not None and chosen.lower > 0:
        verdict = "better"
    elif chosen.upper is not None and chosen.upper < 0:
        verdict = "worse"
    return Comparison(value.name, baseline.name, diffs, estimator, verdict)


def evaluate(
    log: LoggedBandit,
    targets: Mapping[str, npt.ArrayLike],
    *,
    baseline: str | None = None,
    q_hat: npt.ArrayLike | None = None,
    clip: float | None = None,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    folds: int = 3,
    l2: float = 1.0,
    dm_refits: int = 200,
    verdict_estimator: str = "dr",
) -> OffPolicyReport:
    """IPS, SNIPS, DM and DR of every target with bootstrap intervals, ESS, and each
    target's difference from ``baseline`` (paired: the same resamples for both).

    ``q_hat`` defaults to :func:`cross_fit_rewards` with ``folds`` and ``l2``; DM's
    interval then comes from ``min(rounds, dm_refits)`` resamples with the model refit
    (:func:`direct_method_refits`). With a given ``q_hat`` (or ``dm_refits = 0``) it is the
    fixed-model bootstrap, which ignores the model's own error and is too narrow.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if rounds < 0:
        raise ValueError("rounds must be >= 0")
    if clip is not None and clip <= 0:
        raise ValueError("clip must be positive")
    if baseline is not None and baseline not in targets:
        raise ValueError(f"baseline {baseline!r} is not a target")
    if verdict_estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {verdict_estimator!r}")
    q = cross_fit_rewards(log, folds=folds, l2=l2, seed=seed) if q_hat is None else q_hat
    q = _check_q(log, q)
    names = list(targets)
    dists = {name: check_target(log, targets[name]) for name in names}
    terms = {name: _round_terms(log, dists[name], q, clip) for name in names}
    refits = min(rounds, dm_refits) if q_hat is None and log.n and names else 0
    direct_reps = (
        direct_method_refits(log, [dists[n] for n in names], rounds=refits, seed=seed, l2=l2)
        if refits
        else None
    )
    columns = np.column_stack([t for name in names for t in terms[name]]) if names else None
    boot = (
        bootstrap_means(columns, rounds=rounds, seed=seed)
        if rounds and columns is not None and log.n
        else None
    )

    samples = {
        name: _replicates(boot, direct_reps, position) for position, name in enumerate(names)
    }
    values = {name: _policy_value(name, terms[name], samples[name], confidence) for name in names}
    comparisons: dict[str, Comparison] = {}
    if baseline is not None:
        for name in names:
            if name != baseline:
                comparisons[name] = _compare(
                    values[name],
                    values[baseline],
                    samples=samples[name],
                    baseline_samples=samples[baseline],
                    confidence=confidence,
                    estimator=verdict_estimator,
                )
    return OffPolicyReport(
        n=log.n,
        confidence=confidence,
        rounds=rounds,
        clip=clip,
        folds=folds,
        dm_refits=refits,
        policies=values,
        comparisons=comparisons,
    )


# -- candidate policies on the log ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedRound:
    """One logged decision, featurized, with what the logging policy did and got."""

    decision: Featurized
    probabilities: Array  # the logging policy's, over decision.action_ids
    chosen: int
    reward: float
    excluded: frozenset[str] = frozenset()

    @property
    def propensity(self) -> float:
        return float(self.probabilities[self.chosen])


def logged_bandit(rounds: Sequence[LoggedRound]) -> LoggedBandit:
    """The :class:`LoggedBandit` of featurized rounds (``x``, ``z`` from the featurizer)."""
    names: dict[str, int] = {}
    width = max((len(r.decision.action_ids) for r in rounds), default=0)
    n = len(rounds)
    d = rounds[0].decision.x.shape[0] if rounds else 1
    k = rounds[0].decision.z.shape[1] if rounds else 0
    candidates = np.full((n, width), -1, dtype=np.int64)
    logging = np.zeros((n, width))
    x = np.zeros((n, d))
    z = np.zeros((n, width, k))
    for i, r in enumerate(rounds):
        ids = r.decision.action_ids
        candidates[i, : len(ids)] = [names.setdefault(a, len(names)) for a in ids]
        logging[i, : len(ids)] = r.probabilities
        x[i] = r.decision.x
        if k:
            z[i, : len(ids)] = r.decision.z
    return LoggedBandit(
        chosen=np.array([r.chosen for r in rounds], dtype=np.int64),
        reward=np.array([r.reward for r in rounds], dtype=np.float64),
        propensity=np.array([r.propensity for r in rounds], dtype=np.float64),
        candidates=candidates,
        action_names=tuple(names),
        logging=logging,
        x=x,
        z=z,
    )


def replay(
    policy: Policy,
    rounds: Sequence[LoggedRound],
    *,
    learn: bool = True,
    width: int | None = None,
) -> Array:
    """A policy's action distribution on every logged round, ``(n, K)``.

    Rounds are visited in log order. In each, the policy gives its ``choose``
    probabilities for the round's candidates (excluded actions get 0), from what it has
    learned so far; with ``learn`` it then learns the round's logged action and reward —
    *progressive validation*: round ``i`` is judged by a policy trained on rounds ``< i``
    only, as if it had been serving and had seen the logged outcomes. Without ``learn`` the
    policy is judged as it is (frozen). The policy object is modified; pass a fresh one.
    """
    size = (
        width if width is not None else max((len(r.decision.action_ids) for r in rounds), default=0)
    )
    out = np.zeros((len(rounds), size))
    for i, r in enumerate(rounds):
        choice = policy.choose(r.decision, r.excluded)
        out[i, : len(choice.probabilities)] = choice.probabilities
        if learn:
            policy.update(r.decision, r.chosen, r.reward, r.propensity)
    return out


def report_to_dict(report: OffPolicyReport) -> dict[str, Any]:
    """JSON-ready (camelCase) form of a report."""
    return {
        "rounds": report.n,
        "confidence": report.confidence,
        "bootstrapRounds": report.rounds,
        "clip": report.clip,
        "folds": report.folds,
        "dmRefits": report.dm_refits,
        "policies": [
            {
                "name": p.name,
                "estimates": {e: p.estimates[e].to_dict() for e in ESTIMATORS},
                "ess": _finite(p.ess),
                "meanWeight": _finite(p.mean_weight),
                "maxWeight": _finite(p.max_weight),
                "matches": p.matches,
            }
            for p in report.policies.values()
        ],
        "comparisons": [
            {
                "name": c.name,
                "baseline": c.baseline,
                "differences": {e: c.differences[e].to_dict() for e in ESTIMATORS},
                "estimator": c.estimator,
                "verdict": c.verdict,
                "better": c.better,
            }
            for c in report.comparisons.values()
        ],
    }
