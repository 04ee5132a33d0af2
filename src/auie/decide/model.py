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
shared block's k×k inverse is recomputed (k is small).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class HybridRidge:
    """See the module docstring."""

    def __init__(self, context_dim: int, action_dim: int = 0, l2: float = 1.0) -> None:
        self.d = context_dim
        self.k = action_dim
        self.l2 = l2
        self.index: dict[str, int] = {}
        self.a_inv = np.empty((0, context_dim, context_dim))
        self.b_mat = np.empty((0, context_dim, action_dim))
        self.b_vec = np.empty((0, context_dim))
        self.pulls = np.empty(0)
        self.a0 = np.eye(action_dim) * l2
        self.a0_inv = np.eye(action_dim) / l2
        self.b0 = np.zeros(action_dim)
        self.updates = 0

    @property
    def actions(self) -> list[str]:
        return sorted(self.index, key=self.index.__getitem__)

    def _arm(self, action: str) -> int:
        slot = self.index.get(action)
        if slot is None:
            slot = self.index[action] = len(self.index)
            if slot >= len(self.pulls):
                grow = max(4, len(self.pulls))
                self.a_inv = np.concatenate(
                    [self.a_inv, np.repeat(np.eye(self.d)[None] / self.l2, grow, axis=0)]
                )
                self.b_mat = np.concatenate([self.b_mat, np.zeros((grow, self.d, self.k))])
                self.b_vec = np.concatenate([self.b_vec, np.zeros((grow, self.d))])
                self.pulls = np.concatenate([self.pulls, np.zeros(grow)])
        return slot

    def predict(self, actions: tuple[str, ...], x: Array, z: Array) -> tuple[Array, Array]:
        """Mean reward and confidence width ``s_a`` (a variance) of each action.

        Actions never updated have the prior: mean ``z·β``, width from the prior only.
        """
        slots = np.array([self.index.get(a, -1) for a in actions], dtype=np.int64)
        known = slots >= 0
        means = np.zeros(len(actions))
        widths = np.full(len(actions), float(x @ x) / self.l2)
        if self.k:
            beta = self.a0_inv @ self.b0
            means += z @ beta
        if known.any():
            rows = slots[known]
            u = self.a_inv[rows] @ x  # (m, d)
            if self.k:
                theta = np.einsum(
                    "mij,mj->mi",
                    self.a_inv[rows],
                    self.b_vec[rows] - self.b_mat[rows] @ beta,
                )
                gap = z[known] - np.einsum("mdk,md->mk", self.b_mat[rows], u)
                means[known] += theta @ x
                widths[known] = np.einsum("mk,kl,ml->m", gap, self.a0_inv, gap) + u @ x
            else:
                means[known] = np.einsum("md,md->m", u, self.b_vec[rows])
                widths[known] = u @ x
        if self.k:
            unknown = ~known
            if unknown.any():
                zu = z[unknown]
                widths[unknown] += np.einsum("mk,kl,ml->m", zu, self.a0_inv, zu)
        return means, np.maximum(widths, 0.0)

    def update(
        self, action: str, x: Array, z_row: Array, reward: float, weight: float = 1.0
    ) -> None:
        """Add one observation (optionally importance-weighted)."""
        i = self._arm(action)
        root = np.sqrt(weight)
        wx = x * root
        a_inv = self.a_inv[i]
        if self.k:
            shared = self.b_mat[i].T @ a_inv
            self.a0 += shared @ self.b_mat[i]
            self.b0 += shared @ self.b_vec[i]
        u = a_inv @ wx
        a_inv -= np.outer(u, u) / (1.0 + wx @ u)
        self.b_vec[i] += weight * reward * x
        self.pulls[i] += 1
        if self.k:
            wz = z_row * root
            self.b_mat[i] += np.outer(wx, wz)
            shared = self.b_mat[i].T @ a_inv
            self.a0 += np.outer(wz, wz) - shared @ self.b_mat[i]
            self.b0 += weight * reward * z_row - shared @ self.b_vec[i]
            self.a0_inv = np.asarray(np.linalg.inv(self.a0), dtype=np.float64)
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
        }

    def meta(self) -> dict[str, Any]:
        return {
            "d": self.d,
            "k": self.k,
            "l2": self.l2,
            "actions": self.actions,
            "updates": self.updates,
        }

    @classmethod
    def restore(cls, meta: dict[str, Any], arrays: dict[str, Array]) -> HybridRidge:
        model = cls(int(meta["d"]), int(meta["k"]), float(meta["l2"]))
        model.index = {name: i for i, name in enumerate(meta["actions"])}
        model.a0 = np.array(arrays["a0"], dtype=np.float64).reshape(model.k, model.k)
        model.b0 = np.array(arrays["b0"], dtype=np.float64)
        model.a0_inv = np.asarray(np.linalg.inv(model.a0) if model.k else np.eye(0), np.float64)
        model.a_inv = np.array(arrays["a_inv"], dtype=np.float64).reshape(-1, model.d, model.d)
        model.b_mat = np.array(arrays["b_mat"], dtype=np.float64).reshape(-1, model.d, model.k)
        model.b_vec = np.array(arrays["b_vec"], dtype=np.float64).reshape(-1, model.d)
        model.pulls = np.array(arrays["pulls"], dtype=np.float64)
        model.updates = int(meta["updates"])
        return model
