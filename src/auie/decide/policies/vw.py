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
--cb_type mtr -q ::``. ``--quiet`` and ``--random_seed <seed>`` are added. Only the options
of :data:`_OPTIONS` are taken (explorers, the update rule, features and hashing); every
other one, among them those that read or write files, connect to a server or print, is
refused. The state saved by :meth:`Policy.save` is
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
#: The options a decision point may give VW, and whether each takes a value: its
#: contextual-bandit explorers and learners, the update rule, features and their hashing.
#: Anything else is refused (VW has options that read or write files, connect to a
#: spanning-tree server, print, or stop the process): an allowlist, because a denylist
#: misses the spellings VW also reads (``-f/tmp/x``), and VW gains options in new releases.
_OPTIONS: dict[str, bool] = {
    # contextual bandits with action-dependent features, and their explorers
    "cb_explore_adf": False,
    "cb_type": True,
    "cb_min_cost": True,
    "cb_max_cost": True,
    "epsilon": True,
    "first": True,
    "bag": True,
    "greedify": False,
    "cover": True,
    "psi": True,
    "nounif": False,
    "squarecb": False,
    "gamma_scale": True,
    "gamma_exponent": True,
    "elim": False,
    "mellowness": True,
    "softmax": False,
    "lambda": True,
    "regcb": False,
    "regcbopt": False,
    "rnd": True,
    "rnd_alpha": True,
    "rnd_invlambda": True,
    "synthcover": False,
    "synthcoverpsi": True,
    "synthcoversize": True,
    "epsilon_decay": False,
    # the update rule
    "learning_rate": True,
    "power_t": True,
    "initial_t": True,
    "decay_learning_rate": True,
    "l1": True,
    "l2": True,
    "adaptive": False,
    "normalized": False,
    "invariant": False,
    "sgd": False,
    "adax": False,
    "coin": False,
    "ftrl": False,
    "ftrl_alpha": True,
    "ftrl_beta": True,
    "pistol": False,
    "loss_function": True,
    "quantile_tau": True,
    "link": True,
    "min_prediction": True,
    "max_prediction": True,
    "initial_weight": True,
    # features, interactions, hashing
    "bit_precision": True,
    "quadratic": True,
    "cubic": True,
    "interactions": True,
    "leave_duplicate_interactions": False,
    "ignore": True,
    "ignore_linear": True,
    "keep": True,
    "noconstant": False,
    "ngram": True,
    "skips": True,
    "hash": True,
    "hash_seed": True,
    "sort_features": False,
    "quiet": False,
}
#: Options VW takes several words for (``-q sa sb``, ``--interactions sa sb``).
_LISTS = frozenset(
    {"quadratic", "cubic", "interactions", "ignore", "ignore_linear", "keep", "ngram", "skips"}
)
#: VW's one-letter spellings of allowed options (each takes a value, which may follow
#: at once: ``-qsa``, ``-b18``, ``-l0.5``).
_SHORT = {"l": "learning_rate", "b": "bit_precision", "q": "quadratic"}
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
        if not (value.isascii() and value.isdigit()):  # VW also reads "+25" and " 25"
            raise ValueError(f"vw: --bit_precision takes a number of bits, got {value!r}")
        found.append(int(value))
    return max(found)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _check_options(tokens: Sequence[str]) -> None:
    """Refuse every option that is not in :data:`_OPTIONS` (long) or :data:`_SHORT`, a value
    given to an option that takes none, and a value with no option before it (VW would
    read it as a data file)."""
    refused: list[str] = []
    expecting = False  # the previous token was an option that takes a value
    listing = False  # ... or one that takes several (more words are its values)
    for token in tokens:
        if token.startswith("--"):
            name, equals, _ = token[2:].partition("=")
            takes = _OPTIONS.get(name)
            if takes is None:
                refused.append(f"--{name}")
                takes = True  # whatever follows is the refused option's value, if any
            elif equals and not takes:
                raise ValueError(f"vw: --{name} takes no value: {token!r}")
            expecting = takes and not equals
            listing = name in _LISTS
        elif token.startswith("-") and len(token) > 1 and not _is_number(token):
            if token[1] not in _SHORT:
                refused.append(token[:2])
            expecting = len(token) == 2  # -q sa; -qsa carries its value (as may -f/x)
            listing = _SHORT.get(token[1]) in _LISTS
        elif expecting or listing:
            expecting = False
        else:
            raise ValueError(
                f"vw: {token!r} follows no option that takes a value (VW would read it "
                "as a data file)"
            )
    if refused:
        allowed = ", ".join(f"--{name}" for name in _OPTIONS)
        raise ValueError(
            f"vw: option(s) not allowed: {', '.join(sorted(set(refused)))}; the allowed "
            f"ones are {allowed} and -l, -b, -q"
        )


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
        _check_options(tokens)
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
