"""A neural reward model: a small MLP over context × action features (PyTorch, on CPU).

Needs the optional extra ``train`` (``pip install 'auie[train]'``); :func:`auie.decide.
policies.policy_class` imports this module only when a policy of type ``neural`` is built or
restored, so a server imports torch only once it serves such a policy.

Each candidate's input row is the context vector ``x``, the action's row ``z`` (its own
features and their interactions with the context) and a one-hot of the action's identity
(``action_slots`` slots, first come first served, then a stable hash; none for an action
never learned while slots are free), the same
:class:`~auie.decide.features.Featurized` vectors the linear policies see. Values beyond
±1 are squashed logarithmically (indicators stay 1). The network predicts the reward
(standardised by the mean and spread of the first batch it is fit on); unlike the linear
models it can learn rewards that are not additive in the features, such as an XOR of two.

The policy is greedy on the predictions with ε-uniform exploration (``epsilon``) or, with
``temperature`` > 0, a softmax of the predictions; then the exploration floor. Every
allowed action thus has a known positive probability, which off-policy evaluation needs.

Learning: :meth:`fit` (offline training) runs ``epochs`` passes of Adam over the logged
decisions in minibatches of ``batch_size``; :meth:`update` (online) takes one Adam step on
the new decision together with a minibatch drawn from a buffer of the latest ``buffer``
decisions, so one reward does not undo what the batch taught. The saved state holds the
network's and the optimiser's state dicts (``torch.save`` bytes, restored with
``weights_only=True``), the action slots, the buffer and the training generator.

Example::

    >>> from auie.decide.features import Featurizer
    >>> from auie.decide.policies import make_policy
    >>> featurize = Featurizer(context_dim=8, action_dim=0)
    >>> policy = make_policy({"type": "neural", "epsilon": 0.1}, context_dim=8, seed=3)
    >>> decision = featurize({"device": "mobile"}, [("a", {}), ("b", {})])
    >>> choice = policy.choose(decision)
    >>> policy.update(decision, choice.index, reward=1.0, propensity=choice.probability)
    >>> round(float(choice.probabilities.sum()), 6)
    1.0
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Example, Policy, greedy

# The networks are tiny: intra-op threads cost more than they bring, and a server's other
# threads need the cores.
torch.set_num_threads(1)

Rows = npt.NDArray[np.float32]


def _mlp(inputs: int, hidden: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    modules.append(nn.Linear(width, 1))
    return nn.Sequential(*modules)


def _squash(values: Rows) -> Rows:
    """Identity on [-1, 1], logarithmic beyond (large numbers would swamp the network)."""
    size = np.abs(values)
    return np.where(size > 1, np.sign(values) * (1 + np.log(np.maximum(size, 1))), values).astype(
        np.float32
    )


class NeuralReward(Policy):
    kind = "neural"

    def __init__(
        self,
        model: HybridRidge,
        *,
        hidden: int = 64,
        layers: int = 2,
        lr: float = 0.005,
        weight_decay: float = 1e-5,
        epochs: int = 30,
        batch_size: int = 64,
        buffer: int = 256,
        epsilon: float = 0.05,
        temperature: float = 0.0,
        action_slots: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if not 0 <= epsilon <= 1:
            raise ValueError("epsilon must be in [0, 1]")
        if not (temperature >= 0 and lr > 0 and weight_decay >= 0):  # also refuses NaN
            raise ValueError("temperature and weight_decay must be >= 0, lr > 0")
        if min(hidden, layers, epochs, batch_size, buffer, action_slots) < 1:
            raise ValueError("hidden, layers, epochs, batch_size, buffer, action_slots >= 1")
        if hidden > 4096 or layers > 8 or action_slots > 4096 or buffer > 100_000:
            raise ValueError("at most 4096 hidden units, 8 layers, 4096 slots, 100000 buffered")
        if epochs > 1000 or batch_size > 65_536:  # time and memory of fit
            raise ValueError("at most 1000 epochs and batches of 65536")
        self.hidden, self.layers, self.lr, self.weight_decay = hidden, layers, lr, weight_decay
        self.epochs, self.batch_size, self.buffer = epochs, batch_size, buffer
        self.epsilon, self.temperature, self.action_slots = epsilon, temperature, action_slots
        self.inputs = model.d + model.k + action_slots
        self.slots: dict[str, int] = {}
        self.reward_mean, self.reward_scale = 0.0, 1.0
        self._fitted = False
        self._train_rng = np.random.default_rng([self.seed, 1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _mlp(self.inputs, hidden, layers)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self._rows = np.zeros((buffer, self.inputs), np.float32)
        self._targets = np.zeros(buffer, np.float32)
        self._weights = np.zeros(buffer, np.float32)
        self._filled = 0
        self._next = 0

    # -- features -------------------------------------------------------------------------

    def _slot(self, action: str, learning: bool) -> int | None:
        """The action's identity slot; None for an action never learned while slots are
        free (it is judged by its features alone)."""
        found = self.slots.get(action)
        if found is not None:
            return found
        if len(self.slots) < self.action_slots:
            if not learning:
                return None
            found = self.slots[action] = len(self.slots)
            return found
        return zlib.crc32(action.encode()) % self.action_slots

    def rows(self, decision: Featurized, learning: bool = False) -> Rows:
        """One input row per candidate."""
        ids = decision.action_ids
        d, k = self.model.d, self.model.k
        rows = np.zeros((len(ids), self.inputs), np.float32)
        rows[:, :d] = decision.x
        if k:
            rows[:, d : d + k] = decision.z
        rows = _squash(rows)
        for i, action in enumerate(ids):
            slot = self._slot(action, learning)
            if slot is not None:
                rows[i, d + k + slot] = 1.0
        return rows

    def _predict(self, rows: Rows) -> Array:
        with torch.no_grad():
            out = self.net(torch.from_numpy(rows)).squeeze(-1).double().numpy()
        return np.asarray(out * self.reward_scale + self.reward_mean, dtype=np.float64)

    def scores(self, decision: Featurized) -> Array:
        return self._predict(self.rows(decision))

    # -- choosing -------------------------------------------------------------------------

    def _best(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> int | None:
        if self.epsilon or self.temperature:
            return None
        return greedy(self.scores(decision), allowed, self.rng)

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        means = self.scores(decision)
        if self.temperature > 0:
            logits = np.where(allowed, means / (self.temperature * self.reward_scale), -np.inf)
            p = np.exp(logits - logits.max())
            return np.asarray(p / p.sum(), dtype=np.float64)
        p = allowed * (self.epsilon / max(1, int(allowed.sum())))
        p[greedy(means, allowed, self.rng)] += 1.0 - self.epsilon
        return np.asarray(p, dtype=np.float64)

    # -- learning -------------------------------------------------------------------------

    def _step(self, rows: Rows, targets: npt.NDArray[np.float32], weights: Any) -> None:
        x = torch.from_numpy(np.ascontiguousarray(rows))
        y = torch.from_numpy((targets - self.reward_mean) / self.reward_scale).float()
        w = torch.from_numpy(np.asarray(weights, dtype=np.float32))
        loss = (w * (self.net(x).squeeze(-1) - y) ** 2).sum() / w.sum().clamp(min=1e-12)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def _remember(self, row: Rows, target: float, weight: float) -> None:
        self._rows[self._next] = row
        self._targets[self._next] = target
        self._weights[self._next] = weight
        self._next = (self._next + 1) % self.buffer
        self._filled = min(self._filled + 1, self.buffer)

    def _learn(
        self, decision: Featurized, index: int, reward: float, weight: float, propensity: float
    ) -> None:
        row = self.rows(decision, learning=True)[index]
        self._remember(row, reward, weight)
        picks = self._train_rng.integers(0, self._filled, min(self._filled, self.batch_size) - 1)
        picks = np.concatenate([[(self._next - 1) % self.buffer], picks]).astype(np.int64)
        self._step(self._rows[picks], self._targets[picks], self._weights[picks])

    def fit(self, examples: Sequence[Example]) -> None:
        """``epochs`` passes of minibatch Adam over the examples (see the module docstring)."""
        if not examples:
            return
        rows = np.stack([self.rows(d, learning=True)[i] for d, i, _, _ in examples])
        targets = np.array([r for _, _, r, _ in examples], np.float32)
        weights = np.ones(len(examples), np.float32)
        if not self._fitted:
            spread = float(targets.std())
            self.reward_mean = float(targets.mean())
            self.reward_scale = spread if spread > 1e-9 else 1.0
            self._fitted = True
        for _ in range(self.epochs):
            order = self._train_rng.permutation(len(examples))
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                self._step(rows[batch], targets[batch], weights[batch])
        for row, target in zip(rows[-self.buffer :], targets[-self.buffer :], strict=True):
            self._remember(row, float(target), 1.0)
        self.steps += len(examples)

    # -- persistence ----------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "layers": self.layers,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "buffer": self.buffer,
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "action_slots": self.action_slots,
        }

    def _state_arrays(self) -> dict[str, Any]:
        weights = io.BytesIO()
        state = {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}
        torch.save(state, weights)
        meta = {
            "slots": self.slots,
            "reward": [self.reward_mean, self.reward_scale],
            "fitted": self._fitted,
            "filled": self._filled,
            "next": self._next,
            "train_rng": self._train_rng.bit_generator.state,
        }
        return {
            "neural_weights": np.frombuffer(weights.getvalue(), np.uint8),
            "neural_meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
            "neural_rows": self._rows[: self._filled],
            "neural_targets": self._targets[: self._filled],
            "neural_weights_buffer": self._weights[: self._filled],
        }

    def _restore_state(self, arrays: dict[str, Any]) -> None:
        saved = torch.load(io.BytesIO(bytes(arrays["neural_weights"])), weights_only=True)
        self.net.load_state_dict(saved["net"])
        self.optimizer.load_state_dict(saved["optimizer"])
        meta = json.loads(bytes(arrays["neural_meta"]).decode())
        self.slots = {str(k): int(v) for k, v in meta["slots"].items()}
        self.reward_mean, self.reward_scale = (float(v) for v in meta["reward"])
        self._fitted = bool(meta["fitted"])
        self._filled, self._next = int(meta["filled"]), int(meta["next"])
        self._train_rng.bit_generator.state = meta["train_rng"]
        self._rows[: self._filled] = arrays["neural_rows"]
        self._targets[: self._filled] = arrays["neural_targets"]
        self._weights[: self._filled] = arrays["neural_weights_buffer"]
