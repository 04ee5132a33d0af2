"""Vowpal Wabbit as a policy backend (type ``vw``; optional extra ``pip install 'auie[vw]'``).

The policy drives the ``vowpalwabbit`` wheel in process with ``--cb_explore_adf``: VW's
own learner and explorer (ε-greedy, SquareCB, bagging, …, whatever the arguments say) give
the probabilities; AUIE adds its contract around them (excluded actions never shown, the
exploration floor, draws from the policy's own seeded generator, save/restore).

Every decision becomes VW ADF text: a shared line with the flattened context and one line
per candidate with its features and an action-id feature::

    shared |s device=mobile page.section=sports visits:3.0
    |a id=a color=red price:9.0
    |a id=b

Feature names are the featurizer's flattened names (``page.section=sports``) with ``%``,
``|``, ``:`` and whitespace percent-encoded, so no name can break the line format; values of
1 are left implicit. The namespaces are ``s`` (shared context) and ``a`` (action), so
``-q sa`` crosses context with action features (VW's per-action models) and ``-q ::``
crosses everything. Only the allowed candidates are shown to VW when choosing; learning
shows every candidate with the label ``0:<−reward>:<propensity>`` on the shown one (VW
minimises a cost). An importance ``weight`` other than 1 divides the propensity.

Defaults are Azure Personalizer's: ``--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001
--cb_type mtr -q ::``. ``--quiet`` and ``--random_seed <seed>`` are added; options that read
or write files, or start a daemon, are refused. The state saved by :meth:`Policy.save` is
VW's model file (``--save_resume`` is VW's default, so the optimiser state carries over)
plus the policy's own metadata, in the same ``.npz`` format as every policy.

``scores`` are VW's probabilities without the floor: ``--cb_explore_adf`` exposes no reward
estimates.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import vowpalwabbit

from auie.decide.features import Featurized
from auie.decide.model import HybridRidge
from auie.decide.policies.base import Array, Policy

DEFAULT_ARGS = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
SHARED = "s"
ACTION = "a"
_MODEL = "vw_model"
_REFUSED = {
    "-d",
    "--data",
    "-f",
    "--final_regressor",
    "-i",
    "--initial_regressor",
    "--daemon",
    "--port",
    "-p",
    "--predictions",
    "-r",
    "--raw_predictions",
    "--cache",
    "-c",
    "--cache_file",
    "--readable_model",
    "--invert_hash",
    "--pid_file",
    "--port_file",
    "--passes",
    "--random_seed",
    "--audit_regressor",
    "--output_feature_regularizer_binary",
    "--output_feature_regularizer_text",
    "--feature_mask",
}
_ESCAPES = str.maketrans(
    {"%": "%25", "|": "%7C", ":": "%3A", " ": "%20", "\t": "%09", "\n": "%0A", "\r": "%0D"}
)
_CACHE_LIMIT = 100_000
#: VW allocates 2^bits weights (times its stride) up front: 24 bits is 16M weights, a few
#: hundred MB; 32 would take tens of GB. VW's default is 18.
MAX_BITS = 24


def _bits(tokens: Sequence[str]) -> int:
    """The largest ``-b``/``--bit_precision`` asked for, in any of its spellings (0: none;
    a value that is not a number is left to VW to report)."""
    found = [0]
    for i, token in enumerate(tokens):
        if token in ("-b", "--bit_precision"):
            value = tokens[i + 1] if i + 1 < len(tokens) else ""
        elif token.startswith("--bit_precision="):
            value = token.partition("=")[2]
        elif token.startswith("-b") and not token.startswith("--"):
            value = token[2:].lstrip("=")
        else:
            continue
        if value.isdigit():
            found.append(int(value))
    return max(found)


def escape(name: str) -> str:
    """A feature name VW's text format cannot misread (percent-encoding, injective)."""
    return name.translate(_ESCAPES)


class VowpalWabbit(Policy):
    kind = "vw"

    def __init__(self, model: HybridRidge, *, args: str = DEFAULT_ARGS, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        tokens = shlex.split(args)
        if "--cb_explore_adf" not in tokens:
            raise ValueError("vw: the arguments must include --cb_explore_adf")
        refused = sorted({t.split("=", 1)[0] for t in tokens} & _REFUSED)
        if refused:
            raise ValueError(f"vw: option(s) not allowed: {', '.join(refused)}")
        bits = _bits(tokens)
        if bits > MAX_BITS:
            raise ValueError(f"vw: --bit_precision is at most {MAX_BITS}, got {bits}")
        self.args = args
        self._tokens = [t for t in tokens if t != "--quiet"]
        self._names: dict[str, str] = {}
        self.workspace = self._open()

    def _open(self, model_file: Path | None = None) -> vowpalwabbit.Workspace:
        arguments = [*self._tokens, "--quiet", "--random_seed", str(self.seed % 2**32)]
        if model_file is not None:
            arguments += ["--initial_regressor", str(model_file)]
        try:
            return vowpalwabbit.Workspace(arg_list=arguments)
        except Exception as exc:  # VW reports bad options with its own exception types
            raise ValueError(f"vw: {exc}") from None

    # -- ADF text -------------------------------------------------------------------------

    def _features(self, pairs: Sequence[tuple[str, float]]) -> str:
        names = self._names
        out = []
        for name, value in pairs:
            text = names.get(name)
            if text is None:
                text = escape(name)
                if len(names) < _CACHE_LIMIT:
                    names[name] = text
            out.append(text if value == 1.0 else f"{text}:{value!r}")
        return " ".join(out)

    def _shared(self, decision: Featurized) -> str:
        pairs = decision.context_features
        if not pairs and not decision.action_features:  # rebuilt from vectors alone
            pairs = [(f"x{i}", float(decision.x[i])) for i in np.flatnonzero(decision.x[1:]) + 1]
        return f"shared |{SHARED} {self._features(pairs)}"

    def _action(self, decision: Featurized, i: int) -> str:
        own: Sequence[tuple[str, float]]
        if decision.action_features:
            own = decision.action_features[i]
        elif decision.z.shape[1] > 1:
            row = decision.z[i]
            own = [(f"z{j}", float(row[j])) for j in np.flatnonzero(row[1:]) + 1]
        else:
            own = ()
        head = f"|{ACTION} id={escape(decision.action_ids[i])}"
        return f"{head} {self._features(own)}" if own else head

    # -- the policy -----------------------------------------------------------------------

    def _probabilities(self, decision: Featurized, allowed: npt.NDArray[np.bool_]) -> Array:
        shown = np.flatnonzero(allowed)
        lines = [self._shared(decision), *(self._action(decision, int(i)) for i in shown)]
        p = np.zeros(len(decision.action_ids))
        p[shown] = self.workspace.predict(lines)
        return p

    def scores(self, decision: Featurized) -> Array:
        return self._probabilities(decision, np.ones(len(decision.action_ids), dtype=bool))

    def _learn(
        self, decision: Featurized, index: int, reward: float, weight: float, propensity: float
    ) -> None:
        if weight <= 0:
            return
        lines = [self._shared(decision)]
        for i in range(len(decision.action_ids)):
            line = self._action(decision, i)
            if i == index:
                line = f"0:{-reward!r}:{propensity / weight!r} {line}"
            lines.append(line)
        self.workspace.learn(lines)

    def params(self) -> dict[str, Any]:
        return {"args": self.args}

    # -- persistence ----------------------------------------------------------------------

    def _state_arrays(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="auie-vw-") as directory:
            path = Path(directory) / "model.vw"
            self.workspace.save(str(path))
            blob = path.read_bytes()
        return {_MODEL: np.frombuffer(blob, dtype=np.uint8)}

    def _restore_state(self, arrays: dict[str, Any]) -> None:
        blob = np.asarray(arrays[_MODEL], dtype=np.uint8).tobytes()
        with tempfile.TemporaryDirectory(prefix="auie-vw-") as directory:
            path = Path(directory) / "model.vw"
            path.write_bytes(blob)
            workspace = self._open(path)
        self.workspace.finish()
        self.workspace = workspace
