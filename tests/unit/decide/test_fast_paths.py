"""The decision hot path's shortcuts give exactly what the general code gives: a flat
context of numbers vectorised in one pass (and, once its names are known, by one slice)
equals flattening then vectorising; ``draw`` on Python floats picks the index numpy's
cumulative sums and binary search pick; ``greedy`` finds numpy's arg-max."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from auie.decide.features import FeatureSpace, flatten
from auie.decide.policies.base import draw, everything_allowed, greedy

_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**9), 10**9),
    st.floats(-1e7, 1e7),
)
_values = st.one_of(_numbers, st.text(max_size=5), st.booleans(), st.none())


def _general(space: FeatureSpace, mapping: dict[str, Any]) -> tuple[list[Any], np.ndarray]:
    pairs = flatten(mapping)
    return pairs, space.vector(pairs)


@settings(max_examples=300, deadline=None)
@given(
    dim=st.sampled_from([4, 8, 64]),
    contexts=st.lists(st.dictionaries(_names, _values, max_size=12), min_size=1, max_size=6),
)
def test_one_pass_vectorising_equals_flatten_then_vector(
    dim: int, contexts: list[dict[str, Any]]
) -> None:
    fast, slow = FeatureSpace(dim), FeatureSpace(dim)
    for context in contexts * 3:  # again and again: the cached names, then the slice
        pairs, x, extent = fast.flatten_vector(context)
        want_pairs, want_x = _general(slow, context)
        assert pairs == want_pairs
        np.testing.assert_array_equal(x, want_x)
        assert not x[extent:].any()  # the models skip the slots from there on
    assert fast.vocab == slow.vocab


def test_a_known_flat_schema_is_one_slice_and_bad_values_still_take_the_general_path() -> None:
    space = FeatureSpace(64)
    names = [f"f{i}" for i in range(20)]
    space.flatten_vector(dict.fromkeys(names, 0.5))  # learns the names
    space.flatten_vector(dict.fromkeys(names, 0.5))  # records the plan
    assert space._plans == {tuple(names): 20}
    for bad in (math.nan, math.inf, 1e300, "x", True):
        context = {**dict.fromkeys(names, 0.5), "f7": bad}
        pairs, x, _ = space.flatten_vector(context)
        assert (pairs, x.tolist()) == (
            flatten(context),
            space.vector(flatten(context)).tolist(),
        )


@settings(max_examples=500, deadline=None)
@given(
    weights=st.lists(st.floats(0, 1), min_size=1, max_size=60).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**32 - 1),
)
def test_draw_picks_the_index_of_numpys_cumulative_search(weights: list[float], seed: int) -> None:
    p = np.asarray(weights) / sum(weights)
    u = np.random.default_rng(seed).random()
    cumulative = np.cumsum(p)
    want = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    if want >= len(p) or p[want] <= 0:
        want = int(np.flatnonzero(p > 0)[-1])
    assert draw(p, np.random.default_rng(seed)) == want


@settings(max_examples=300, deadline=None)
@given(means=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), seed=st.integers(0, 99))
def test_greedy_is_the_arg_max_with_ties_broken_at_random(means: list[float], seed: int) -> None:
    array = np.asarray(means)
    best = greedy(array, everything_allowed(len(means)), np.random.default_rng(seed))
    assert array[best] == array.max()
    if np.count_nonzero(array == array.max()) == 1:
        assert best == int(array.argmax())
