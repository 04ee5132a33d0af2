"""The contract every policy keeps (:mod:`auie.decide.policies.base`), checked on each type.

Seeded reproducibility, a save/restore round trip in the middle of a stream, probabilities
that sum to 1, excluded actions never chosen (hypothesis), the exploration floor, 50+
actions, learning from context × action interactions alone (and carrying it over to actions
never seen), and feature hashing of high-cardinality values with bounded memory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auie.decide.config import DEFAULT_POLICY, DecisionPointConfig
from auie.decide.features import Featurized, Featurizer
from auie.decide.policies import Policy, load_policy, make_policy
from auie.errors import InvalidRequest

KINDS = ["linucb", "thompson", "squarecb", "epsilon_greedy", "baseline", "vw", "neural"]
LEARNERS = [k for k in KINDS if k != "baseline"]
#: Vowpal Wabbit's learning tests use ε-greedy with VW's default learning rate (the
#: default arguments, Azure Personalizer's, learn at -l 0.001: far too slowly for a test).
VW_LEARNING = {"type": "vw", "args": "--cb_explore_adf --epsilon 0.05 -q ::"}
CONTEXT_DIM = 32
ACTION_DIM = 16


def _needs_vw(kind: str) -> None:
    if kind == "vw":
        pytest.importorskip("vowpalwabbit", reason="the optional extra vw is not installed")
    if kind == "neural":
        pytest.importorskip("torch", reason="the optional extra train is not installed")


def policy(
    kind: str,
    *,
    seed: int = 7,
    floor: float = 0.0,
    learning: bool = False,
    context_dim: int = CONTEXT_DIM,
    action_dim: int = ACTION_DIM,
) -> Policy:
    _needs_vw(kind)
    config: dict[str, Any] = {"type": kind}
    if kind == "vw" and learning:
        config = dict(VW_LEARNING)
    if kind == "baseline":
        config["action"] = "a1"
    config["exploration_floor"] = floor
    return make_policy(config, context_dim=context_dim, action_dim=action_dim, seed=seed)


@dataclass
class World:
    """Contexts (a device, a plan, a number) and actions with a kind and a price."""

    featurizer: Featurizer
    rng: np.random.Generator
    actions: list[tuple[str, dict[str, Any]]]

    def context(self) -> dict[str, Any]:
        return {
            "device": ["mobile", "desktop", "tablet"][int(self.rng.integers(3))],
            "plan": "pro" if self.rng.random() < 0.3 else "free",
            "visits": float(self.rng.integers(0, 20)),
        }

    def decision(self) -> Featurized:
        return self.featurizer(self.context(), self.actions)

    def reward(self, decision: Featurized, index: int) -> float:
        return float(self.rng.random() < 0.2 + 0.1 * (index % 3))


def world(seed: int = 0, actions: int = 5) -> World:
    return World(
        Featurizer(CONTEXT_DIM, ACTION_DIM),
        np.random.default_rng(seed),
        [
            (f"a{i}", {"kind": ["video", "banner"][i % 2], "price": float(i)})
            for i in range(actions)
        ],
    )


def play(p: Policy, w: World, rounds: int, excluded: set[str] | None = None) -> Iterator[Any]:
    """Choose and learn for ``rounds`` decisions; yields (probabilities, index) each round."""
    for _ in range(rounds):
        decision = w.decision()
        choice = p.choose(decision, excluded or set())
        yield choice.probabilities, choice.index
        p.update(decision, choice.index, w.reward(decision, choice.index), choice.probability)


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_and_data_give_the_same_choices(kind: str) -> None:
    first = list(play(policy(kind, seed=11, floor=0.01), world(3), 120))
    second = list(play(policy(kind, seed=11, floor=0.01), world(3), 120))
    assert [i for _, i in first] == [i for _, i in second]
    for (p1, _), (p2, _) in zip(first, second, strict=True):
        assert np.array_equal(p1, p2)


@pytest.mark.parametrize("kind", ["thompson", "squarecb", "epsilon_greedy"])
def test_another_seed_draws_otherwise(kind: str) -> None:
    first = [i for _, i in play(policy(kind, seed=1, floor=0.05), world(3), 150)]
    second = [i for _, i in play(policy(kind, seed=2, floor=0.05), world(3), 150)]
    assert first != second


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_restore_mid_stream_continue_identically(kind: str) -> None:
    original = policy(kind, seed=5, floor=0.02)
    w = world(8)
    list(play(original, w, 80))
    restored = load_policy(original.save())
    assert type(restored) is type(original)
    assert restored.steps == original.steps == 80
    state = w.rng.bit_generator.state
    ahead = list(play(original, w, 80))
    w.rng.bit_generator.state = state
    again = list(play(restored, w, 80))
    assert [i for _, i in ahead] == [i for _, i in again]
    for (p1, _), (p2, _) in zip(ahead, again, strict=True):
        assert np.array_equal(p1, p2)
    # and a second round trip of the restored policy is still the same policy
    assert load_policy(restored.save()).save() == restored.save() or kind == "vw"


@pytest.mark.parametrize("kind", KINDS)
def test_probabilities_sum_to_one_and_the_drawn_action_is_possible(kind: str) -> None:
    for probabilities, index in play(policy(kind, floor=0.001), world(4), 150):
        assert probabilities.shape == (5,)
        assert np.all(probabilities >= 0)
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)
        assert probabilities[index] > 0


@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_excluded_actions_are_never_chosen(kind: str, data: st.DataObject) -> None:
    count = data.draw(st.integers(2, 12), label="actions")
    excluded = data.draw(
        st.sets(st.sampled_from([f"a{i}" for i in range(count)]), max_size=count - 1),
        label="excluded",
    )
    floor = data.draw(st.sampled_from([0.0, 0.01, 0.2]), label="floor")
    p = policy(kind, seed=data.draw(st.integers(0, 2**31), label="seed"), floor=floor)
    w = world(data.draw(st.integers(0, 1000), label="world"), actions=count)
    for probabilities, index in play(p, w, 30, excluded):
        assert w.actions[index][0] not in excluded
        for i, (action_id, _) in enumerate(w.actions):
            if action_id in excluded:
                assert probabilities[i] == 0.0
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-9)


def test_excluding_every_action_is_an_error() -> None:
    p = policy("linucb")
    decision = world().decision()
    with pytest.raises(ValueError, match="excluded"):
        p.choose(decision, {a for a, _ in world().actions})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("floor", [0.01, 0.05])
def test_the_exploration_floor_is_respected(kind: str, floor: float) -> None:
    p = policy(kind, floor=floor)
    for probabilities, _ in play(p, world(2, actions=8), 200, {"a3"}):
        allowed = np.array([i != 3 for i in range(8)])
        assert np.all(probabilities[allowed] >= floor - 1e-12)
        assert probabilities[3] == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_a_floor_larger_than_a_uniform_share_gives_the_uniform_distribution(kind: str) -> None:
    p = policy(kind, floor=0.4)
    for probabilities, _ in play(p, world(2, actions=5), 20):
        assert probabilities == pytest.approx(np.full(5, 0.2))


@pytest.mark.parametrize("kind", KINDS)
def test_sixty_actions_are_supported(kind: str) -> None:
    p = policy(kind, floor=0.001)
    w = world(6, actions=60)
    chosen = set()
    for probabilities, index in play(p, w, 300, {"a0", "a59"}):
        assert probabilities.shape == (60,)
        assert probabilities.sum() == pytest.approx(1.0)
        chosen.add(index)
    assert not chosen & {0, 59}
    if kind != "baseline":
        assert len(chosen) > 1


def _interaction_world(seed: int) -> tuple[Featurizer, np.random.Generator]:
    return Featurizer(CONTEXT_DIM, ACTION_DIM), np.random.default_rng(seed)


def _right(device: str, kind: str) -> bool:
    return (device == "mobile") == (kind == "video")


@pytest.mark.parametrize("kind", LEARNERS)
def test_a_context_by_action_interaction_alone_is_learned_and_carries_over(kind: str) -> None:
    """Reward 0.9 when the device matches the action's kind (video on mobile, banner on
    desktop), else 0.1: every action and every device is worth 0.5 on average, so only the
    device × kind interaction carries the signal. Afterwards the policy's scores must rank
    the right kind first among two actions it has never seen."""
    featurizer, rng = _interaction_world(1)
    p = policy(kind, seed=3, learning=True)
    trained = [(f"t{i}", {"kind": "video" if i % 2 else "banner"}) for i in range(4)]
    late = []
    for t in range(1500):
        device = "mobile" if rng.random() < 0.5 else "desktop"
        decision = featurizer({"device": device}, trained)
        choice = p.choose(decision)
        good = _right(device, trained[choice.index][1]["kind"])
        reward = float(rng.random() < (0.9 if good else 0.1))
        p.update(decision, choice.index, reward, choice.probability)
        if t >= 1200:
            late.append(good)
    assert np.mean(late) > 0.8, f"{kind} picked the right kind {np.mean(late):.2f} of the time"
    fresh = [("new-video", {"kind": "video"}), ("new-banner", {"kind": "banner"})]
    for device, best in (("mobile", 0), ("desktop", 1)):
        scores = p.scores(featurizer({"device": device}, fresh))  # expected reward, no draws
        assert scores[best] > scores[1 - best], f"{kind} on {device}: {scores}"


@pytest.mark.parametrize("kind", LEARNERS)
def test_high_cardinality_values_are_hashed_in_bounded_memory(kind: str) -> None:
    """Every decision carries a never-seen-before user id (and a page among thousands);
    only the frequent device carries the signal. The vocabulary stays within its capacity,
    the saved state stops growing, and the device is still learned."""
    featurizer = Featurizer(16, 0)
    p = policy(kind, seed=2, learning=True, context_dim=16, action_dim=0)
    rng = np.random.default_rng(9)
    actions: list[tuple[str, dict[str, Any]]] = [("x", {}), ("y", {})]
    sizes = {}
    late = []
    for t in range(3000):
        device = "mobile" if rng.random() < 0.5 else "desktop"
        context = {"user": f"u-{t}", "page": f"p-{rng.integers(5000)}", "device": device}
        decision = featurizer(context, actions)
        choice = p.choose(decision)
        good = (device == "mobile") == (choice.index == 0)
        p.update(decision, choice.index, float(rng.random() < (0.8 if good else 0.2)), 1.0)
        if t >= 2500:
            late.append(good)
        if t + 1 in (1000, 3000):
            sizes[t + 1] = len(p.save())
        if t + 1 == 1500:  # a round trip without an action vector, mid-stream
            p = load_policy(p.save())
    assert len(featurizer.context.vocab) <= featurizer.context._capacity
    if kind == "vw":
        assert sizes[3000] < 64 * 2**18  # VW hashes into 2^18 weights
    else:
        assert sizes[3000] <= sizes[1000] * 1.1 + 1024
    assert np.mean(late) > 0.7, f"{kind}: {np.mean(late):.2f}"


@pytest.mark.parametrize("kind", ["linucb", "thompson", "squarecb", "epsilon_greedy"])
@pytest.mark.parametrize("broken", ["widths", "one mean"])
def test_a_model_that_gives_nan_is_refused_not_trusted(
    kind: str, broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Means or confidence widths that are not numbers (a broken model) fail the decision
    instead of being read as no uncertainty, or skipped, wherever the NaN is."""
    p, w = policy(kind), world(4)
    list(play(p, w, 20))
    predict = p.model.predict  # type: ignore[attr-defined]

    def nan_widths(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        means, widths = predict(*args, **kwargs)
        if broken == "widths":
            return means, np.full_like(widths, np.nan)
        means = means.copy()
        means[-1] = np.nan  # last: max() of a list keeps the first of equal or NaN values
        return means, widths

    monkeypatch.setattr(p.model, "predict", nan_widths)  # type: ignore[attr-defined]
    if kind in ("squarecb", "epsilon_greedy") and broken == "widths":
        p.choose(w.decision(), set())  # these use the means alone
        return
    with pytest.raises(ValueError, match="not numbers"):
        p.choose(w.decision(), set())


def test_the_default_policy_is_one_of_the_kinds() -> None:
    assert DecisionPointConfig().policy == DEFAULT_POLICY
    assert DEFAULT_POLICY["type"] in KINDS


def test_feature_less_actions_need_no_action_vector() -> None:
    config = DecisionPointConfig.model_validate({"actions": [{"id": "a"}, {"id": "b"}]})
    assert config.action_dim == 0
    featurizer = Featurizer(config.features.context_dim, config.action_dim)
    decision = featurizer({"device": "mobile"}, [("a", {}), ("b", {})])
    assert decision.z.shape == (2, 0)
    p = make_policy(DEFAULT_POLICY, context_dim=64, action_dim=0)
    choice = p.choose(decision)
    p.update(decision, choice.index, 1.0, choice.probability)


def test_vw_text_escapes_names() -> None:
    pytest.importorskip("vowpalwabbit")
    from auie.decide.policies.vw import escape

    p = policy("vw")
    decision = Featurizer(CONTEXT_DIM, ACTION_DIM)(
        {"device": "mo bile|x", "a:b": 2.5, "n": 1},
        [("id with space", {"color": "red:1"}), ("b", {})],
    )
    shared = p._shared(decision)  # type: ignore[attr-defined]
    assert shared == "shared |s device=mo%20bile%7Cx a%3Ab:2.5 n"
    assert p._action(decision, 0) == "|a id=id%20with%20space color=red%3A1"  # type: ignore[attr-defined]
    assert escape("100%") == "100%25"
    p.update(decision, 0, 1.0, 0.5)


@pytest.mark.parametrize(
    "args", ["--epsilon 0.1", "--cb_explore_adf -f /tmp/model", "--cb_explore_adf --bogus"]
)
def test_vw_refuses_bad_arguments(args: str) -> None:
    pytest.importorskip("vowpalwabbit")
    with pytest.raises(InvalidRequest):
        make_policy({"type": "vw", "args": args}, context_dim=8)


def test_vw_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vowpalwabbit", None)
    monkeypatch.delitem(sys.modules, "auie.decide.policies.vw", raising=False)
    with pytest.raises(InvalidRequest, match=r"auie\[vw\]"):
        make_policy({"type": "vw"}, context_dim=8)


def test_neural_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "auie.decide.policies.neural", raising=False)
    with pytest.raises(InvalidRequest, match=r"auie\[train\]"):
        make_policy({"type": "neural"}, context_dim=8)


def test_unknown_policy_types_list_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match="vw"):
        make_policy({"type": "nope"}, context_dim=8)


@pytest.mark.parametrize("action_dim", [0, 8])
def test_the_ridge_model_matches_a_direct_solution(action_dim: int) -> None:
    """Per-action ridge (and the hybrid model) against ``np.linalg.solve`` on the same data,
    while new context slots appear mid-stream (the disjoint model works on the slots used so
    far) and after a save/restore."""
    rng = np.random.default_rng(4)
    featurizer = Featurizer(16, action_dim)
    p = make_policy({"type": "linucb"}, context_dim=16, action_dim=action_dim, seed=1)
    actions = [(f"a{i}", {"kind": f"k{i % 2}"} if action_dim else {}) for i in range(3)]
    seen: dict[int, list[tuple[Any, float]]] = {0: [], 1: [], 2: []}
    for t in range(400):
        width = 2 if t < 100 else 6 if t < 250 else 12  # more names over time
        context = {f"c{j}": float(rng.normal()) for j in range(width)}
        decision = featurizer(context, actions)
        choice = p.choose(decision)
        reward = float(rng.random())
        p.update(decision, choice.index, reward, choice.probability)
        seen[choice.index].append((decision.x, reward))
        if t == 300:
            p = load_policy(p.save())
    decision = featurizer({f"c{j}": float(rng.normal()) for j in range(14)}, actions)
    means, widths = p.model.predict(decision.action_ids, decision.x, decision.z)
    if action_dim:
        assert np.all(np.isfinite(means))
        assert np.all(widths >= 0)
        return
    for i, rows in seen.items():
        if not rows:
            continue
        xs = np.array([x for x, _ in rows])
        a = np.eye(16) + xs.T @ xs
        theta = np.linalg.solve(a, xs.T @ np.array([r for _, r in rows]))
        assert means[i] == pytest.approx(decision.x @ theta, abs=1e-8)
        assert widths[i] == pytest.approx(decision.x @ np.linalg.solve(a, decision.x), abs=1e-8)
