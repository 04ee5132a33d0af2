"""The reward model every native policy shares: hybrid linear ridge regression.

Li, Chu, Langford and Schapire's hybrid LinUCB model (WWW 2010, algorithm 2): the reward of
action ``a`` in context ``x`` with action features ``z_a`` is ``z_a·β + x·θ_a`` — a part
shared by all actions (so features of new or rare actions carry knowledge over) and a part
of each action's own. Both are ridge regressions solved exactly online; the model also
gives the width ``s_a`` of the confidence ellipsoid around each prediction, which LinUCB
and Thompson sampling explore with. ``action_dim = 0`` leaves only the per-action part
(disjoint LinUCB), which is what a catalogue of feature-less actions needs.

Arms are stored stacked (``n×d×d`` inverses) so a prediction over every candidate is a few
vectorised operations. Per-action inverses follow Sherman-Morrison (O(d²) per update); the
shared block's k×k inverse is recomputed (k is small). Without the shared part, each arm's
coefficients ``θ_a = A_a⁻¹ b_a`` are kept up to date by ``update``, so a mean is one dot
product; the candidates' arm slots are cached per action list, and a decision over exactly
the known arms in order reads the stacks without copying them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Slots = npt.NDArray[np.intp]
_SLOT_CACHE = 4096


class _ArmSlots:
    """Where a candidate list's actions live in the stacks (cached per action tuple)."""

    __slots__ = ("all_known", "dense", "known", "prefix", "rows", "slots")

    def __init__(self, slots: Slots, arms: int) -> None:
        self.slots = slots
        self.known = slots >= 0
        self.rows = slots[self.known]
        self.all_known = len(self.rows) == len(slots)
        #: The candidates are the first arms, in order: the stacks are sliced, not copied.
        self.prefix = self.all_known and bool(np.array_equal(slots, np.arange(len(slots))))
        #: Most arms are candidates: compute over every arm, then pick (no stack copy).
        self.dense = 2 * len(self.rows) >= arms


def _inverse(matrix: Array) -> Array:
    """The inverse of the shared part's matrix; its pseudo-inverse when rounding made it
    singular (large, nearly collinear action features cancel out in the hybrid update)."""
    try:
        return np.asarray(np.linalg.inv(matrix), dtype=np.float64)
    except np.linalg.LinAlgError:
        return np.asarray(np.linalg.pinv(matrix), dtype=np.float64)


class HybridRidge:
    """See the module docstring."""

    def __init__(self, context_dim: int, action_dim: int = 0, l2: float = 1.0) -> None:
        self.d = context_dim
        self.k = action_dim
        self.l2 = l2
        self.index: dict[str, int] = {}
        #: Every arm's ``A⁻¹``, over the leading ``w × w`` slots only (``w`` its width):
        #: beyond them it is ``I/λ``. The disjoint model keeps ``w`` = ``active``, so the
        #: blocks it reads and updates are contiguous (a slice of the full ``d × d`` stack
        #: was strided, and twice as slow); :attr:`a_inv` gives the full stack.
        self._inv = np.empty((0, 0, 0) if action_dim == 0 else (0, context_dim, context_dim))
        self.b_mat = np.empty((0, context_dim, action_dim))
        self.b_vec = np.empty((0, context_dim))
        self.pulls = np.empty(0)
        self.a0 = np.eye(action_dim) * l2
        self.a0_inv = np.eye(action_dim) / l2
        self.b0 = np.zeros(action_dim)
        self.updates = 0
        #: Context slots ``[0, active)`` are the only ones any update has touched: beyond
        #: them every arm's ``A⁻¹`` is ``I/λ`` (no cross terms) and ``θ`` is 0, so the
        #: disjoint model reads and updates the leading ``active × active`` blocks only.
        self.active = 0
        self._theta = np.empty((0, context_dim))
        self._theta_of: Array | None = None
        self._slot_cache: dict[tuple[str, ...], _ArmSlots] = {}
        self._slot_owner: dict[str, int] | None = None
        self._slot_count = 0

    @property
    def a_inv(self) -> Array:
        """Every arm's full ``d × d`` inverse (a new array when the stack is compact)."""
        return self._inv if self._inv.shape[1] == self.d else self._embedded(self.d)

    @a_inv.setter
    def a_inv(self, value: Array) -> None:
        self._inv = np.asarray(value, dtype=np.float64)

    def _widen(self, h: int) -> Array:
        """The stack, re-embedded to cover slots ``[0, h)`` when it is narrower (a feature
        seen for the first time; the ``θ`` rows stay valid)."""
        inv = self._inv
        if h > inv.shape[1]:
            valid = self._theta_of is inv
            self._inv = inv = self._embedded(h)
            if valid:
                self._theta_of = inv
        return inv

    def _embedded(self, size: int) -> Array:
        """The stack in the top-left corner of ``size × size`` blocks of ``I/λ``."""
        inv = self._inv
        width = inv.shape[1]
        out = np.repeat((np.eye(size) / self.l2)[None], len(inv), axis=0)
        out[:, :width, :width] = inv
        return out

    def _compact(self) -> None:
        """Narrow a full stack (restored, or set from outside) to the active slots."""
        inv = self._inv
        if not self.k and self.active < inv.shape[1]:
            valid = self._theta_of is inv
            h = self.active
            self._inv = np.ascontiguousarray(inv[:, :h, :h])
            if valid:
                self._theta_of = self._inv

    @property
    def actions(self) -> list[str]:
        return sorted(self.index, key=self.index.__getitem__)

    def _arm(self, action: str) -> int:
        slot = self.index.get(action)
        if slot is None:
            slot = self.index[action] = len(self.index)
            if slot >= len(self.pulls):
                grow = max(4, len(self.pulls))
                inv = self._inv
                valid = self._theta_of is inv and len(self._theta) == len(inv)
                width = inv.shape[1]
                self._inv = np.concatenate(
                    [inv, np.repeat(np.eye(width)[None] / self.l2, grow, axis=0)]
                )
                self.b_mat = np.concatenate([self.b_mat, np.zeros((grow, self.d, self.k))])
                self.b_vec = np.concatenate([self.b_vec, np.zeros((grow, self.d))])
                self.pulls = np.concatenate([self.pulls, np.zeros(grow)])
                if valid:  # new arms have b = 0, so θ = 0
                    self._theta = np.concatenate([self._theta, np.zeros((grow, self.d))])
                    self._theta_of = self._inv
        return slot

    def _slots(self, actions: tuple[str, ...]) -> _ArmSlots:
        if self._slot_owner is not self.index or self._slot_count != len(self.index):
            self._slot_cache.clear()
            self._slot_owner = self.index
            self._slot_count = len(self.index)
        found = self._slot_cache.get(actions)
        if found is None:
            index = self.index
            slots = np.array([index.get(a, -1) for a in actions], dtype=np.intp)
            found = _ArmSlots(slots, len(index))
            if len(self._slot_cache) >= _SLOT_CACHE:
                self._slot_cache.clear()
            self._slot_cache[actions] = found
        return found

    def _thetas(self) -> Array:
        """Per-arm coefficients ``A_a⁻¹ b_a`` (only without the shared part), recomputed
        when the stacks were replaced (growth, or set from outside as ``fit_ridge`` does)."""
        inv = self._inv
        if self._theta_of is not inv or len(self._theta) != len(inv):
            if self.index and not self.active:  # stacks set from outside: assume all slots
                self.active = self.d
            theta = np.zeros((len(inv), self.d))
            h = self.d if self.k else self.active
            inv = self._widen(h)
            for i in range(min(len(self.index), len(inv))):
                theta[i, :h] = inv[i, :h, :h] @ self.b_vec[i, :h]  # as ``update`` does
            self._theta = theta
            self._theta_of = inv
        return self._theta

    def _extent(self, x: Array, extent: int = -1) -> int:
        """``active`` widened to cover the non-zero slots of ``x`` (``extent``, when the
        caller knows it: ``x`` is zero from that slot on)."""
        h = self.active
        if extent >= 0:
            return max(h, extent)
        if h < self.d and np.count_nonzero(x[h:]):  # count_nonzero: a third of any()'s cost
            h = int(np.flatnonzero(x)[-1]) + 1
        return h

    def means(self, actions: tuple[str, ...], x: Array, z: Array) -> Array:
        """Mean reward of each action (what :meth:`predict` gives first), faster."""
        if self.k:
            return self.predict(actions, x, z)[0]
        found = self._slots(actions)
        theta = self._thetas()
        if found.prefix:
            return np.asarray(theta[: len(actions)] @ x, dtype=np.float64)
        if found.dense and found.all_known:
            return np.asarray((theta[: len(self.index)] @ x)[found.slots], dtype=np.float64)
        means = np.zeros(len(actions))
        if len(found.rows):
            means[found.known] = theta[found.rows] @ x
        return means

    def predict(
        self, actions: tuple[str, ...], x: Array, z: Array, extent: int = -1, *, clamp: bool = True
    ) -> tuple[Array, Array]:
        """Mean reward and confidence width ``s_a`` (a variance) of each action.

        Actions never updated have the prior: mean ``z·β``, width from the prior only.
        ``clamp=False``: widths that rounding made slightly negative are left so (for a
        caller that clamps them itself).
        """
        found = self._slots(actions)
        if not self.k:
            return self._predict_disjoint(found, x, extent, clamp)
        known = found.known
        means = np.zeros(len(actions))
        widths = np.full(len(actions), float(x @ x) / self.l2)
        beta = self.a0_inv @ self.b0
        means += z @ beta
        if len(found.rows):
            rows = found.rows
            a_inv = self.a_inv[rows]
            b_mat = self.b_mat[rows]
            u = a_inv @ x  # (m, d)
            theta = np.einsum("mij,mj->mi", a_inv, self.b_vec[rows] - b_mat @ beta)
            gap = z[known] - np.einsum("mdk,md->mk", b_mat, u)
            means[known] += theta @ x
            widths[known] = np.einsum("mk,kl,ml->m", gap, self.a0_inv, gap) + u @ x
        if not found.all_known:
            unknown = ~known
            zu = z[unknown]
            widths[unknown] += np.einsum("mk,kl,ml->m", zu, self.a0_inv, zu)
        return means, np.maximum(widths, 0.0)

    def _predict_disjoint(
        self, found: _ArmSlots, x: Array, extent: int = -1, clamp: bool = True
    ) -> tuple[Array, Array]:
        """:meth:`predict` without the shared part: one linear model per arm, over the
        ``active`` leading slots (the rest of ``A⁻¹`` is ``I/λ``: ``tail``)."""
        theta = self._thetas()
        h = self.active
        xh = x[:h]
        beyond = extent > h if extent >= 0 else h < self.d and np.count_nonzero(x[h:])
        tail = float(x[h:] @ x[h:]) / self.l2 if beyond else 0.0
        inv = self._inv
        if found.prefix or (found.dense and found.all_known):
            m = len(found.slots) if found.prefix else len(self.index)
            means = theta[:m, :h] @ xh
            if inv.shape[1] == h:  # compact: every arm's block in one matrix-vector product
                widths = (inv[:m].reshape(m * h, h) @ xh).reshape(m, h) @ xh
            else:
                widths = (inv[:m, :h, :h] @ xh) @ xh
            if tail:
                widths += tail
            if not found.prefix:
                means, widths = means[found.slots], widths[found.slots]
            return means, np.maximum(widths, 0.0, out=widths) if clamp else widths
        means = np.zeros(len(found.slots))
        widths = np.full(len(found.slots), float(x @ x) / self.l2)
        if len(found.rows):
            rows = found.rows
            means[found.known] = theta[rows, :h] @ xh
            widths[found.known] = (inv[rows, :h, :h] @ xh) @ xh + tail
        return means, np.maximum(widths, 0.0)

    def update(
        self,
        action: str,
        x: Array,
        z_row: Array,
        reward: float,
        weight: float = 1.0,
        *,
        extent: int = -1,
    ) -> None:
        """Add one observation (optionally importance-weighted)."""
        i = self.index.get(action)
        if i is None:
            i = self._arm(action)
        root = 1.0 if weight == 1.0 else math.sqrt(weight)
        wx = x if weight == 1.0 else x * root
        if not self.k:
            theta = self._thetas()
            h = self.active = self._extent(x, extent)
            block = self._widen(h)[i, :h, :h]
            xh = wx[:h]
            u = block @ xh
            v = u / (1.0 + float(xh @ u))
            block -= u[:, None] * v  # Sherman-Morrison
            if reward:
                self.b_vec[i] += (weight * reward) * x
            self.pulls[i] += 1
            # Recursive least squares: with v = A'⁻¹·√w·x, θ' = A'⁻¹b' = θ + √w·v·(r − x·θ)
            # (one product and one update instead of A'⁻¹ times b').
            row = theta[i, :h]
            row += v * (root * reward - float(xh @ row))  # xh·θ = √w·(x·θ)
            self.updates += 1
            return
        self.active = self.d
        a_inv = self.a_inv[i]
        shared = self.b_mat[i].T @ a_inv
        self.a0 += shared @ self.b_mat[i]
        self.b0 += shared @ self.b_vec[i]
        u = a_inv @ wx
        a_inv -= np.outer(u, u / (1.0 + wx @ u))
        self.b_vec[i] += weight * reward * x
        self.pulls[i] += 1
        if self.k:
            wz = z_row * root
            self.b_mat[i] += np.outer(wx, wz)
            shared = self.b_mat[i].T @ a_inv
            self.a0 += np.outer(wz, wz) - shared @ self.b_mat[i]
            self.b0 += weight * reward * z_row - shared @ self.b_vec[i]
            self.a0_inv = _inverse(self.a0)
        self.updates += 1

    # -- persistence -----------------------------------------------------------------------

    def arrays(self) -> dict[str, Array]:
        n = len(self.index)
        return {
            "a0": self.a0,
            "b0": self.b0,
            "a_inv": self.a_inv[:n],
            "b_mat": self.b_mat[:n],
            "b_vec": self.b_vec[:n],
            "pulls": self.pulls[:n],
            **({} if self.k else {"theta": self._thetas()[:n]}),
        }

    def meta(self) -> dict[str, Any]:
        return {
            "d": self.d,
            "k": self.k,
            "l2": self.l2,
            "actions": self.actions,
            "updates": self.updates,
            "active": self.active,
        }

    @classmethod
    def restore(cls, meta: dict[str, Any], arrays: dict[str, Array]) -> HybridRidge:
        model = cls(int(meta["d"]), int(meta["k"]), float(meta["l2"]))
        model.index = {name: i for i, name in enumerate(meta["actions"])}
        model.a0 = np.array(arrays["a0"], dtype=np.float64).reshape(model.k, model.k)
        model.b0 = np.array(arrays["b0"], dtype=np.float64)
        model.a0_inv = _inverse(model.a0) if model.k else np.eye(0)
        # One row per action, stated (not -1: with d or k 0 the row count is ambiguous).
        n = len(model.index)
        model.a_inv = np.array(arrays["a_inv"], dtype=np.float64).reshape(n, model.d, model.d)
        model.b_mat = np.array(arrays["b_mat"], dtype=np.float64).reshape(n, model.d, model.k)
        model.b_vec = np.array(arrays["b_vec"], dtype=np.float64).reshape(n, model.d)
        model.pulls = np.array(arrays["pulls"], dtype=np.float64)
        model.updates = int(meta["updates"])
        model.active = int(meta.get("active", model.d))
        if "theta" in arrays:  # exactly what the saved model had computed
            model._theta = np.array(arrays["theta"], dtype=np.float64).reshape(n, model.d)
            model._theta_of = model._inv
        model._compact()
        return model
