"""The marks of shared exports (:mod:`auie.process.exports`): each member of a group keeps
its own, a change of group size starts every new mark at the lowest recorded one and
drops the old size's, and a lone exporter keeps pseudo-partition 0."""

from __future__ import annotations

from collections import Counter

from auie.lake.catalog import PROFILE_CHANGES
from auie.process.exports import combine_marks, mark_partition, own_mark, share_of


def test_shares_are_stable_and_spread() -> None:
    keys = [f"user_id:u-{i}" for i in range(3000)]
    assert [share_of(k, 3) for k in keys] == [share_of(k, 3) for k in keys]
    spread = Counter(share_of(k, 3) for k in keys)
    assert set(spread) == {0, 1, 2}
    assert min(spread.values()) > 800
    assert {share_of(k, 1) for k in keys} == {0}
    assert share_of("user_id:\udcff", 2) in (0, 1)  # a lone surrogate from the wire


def test_a_lone_exporter_keeps_partition_zero() -> None:
    assert mark_partition(0, 1) == 0
    assert own_mark({}, 0, 1) == 0
    assert own_mark({PROFILE_CHANGES: {0: 41}}, 0, 1) == 40


def test_members_keep_their_own_marks() -> None:
    recorded = {"events": {0: 5}, PROFILE_CHANGES: {2000: 11, 2001: 8}}
    assert own_mark(recorded, 0, 2) == 10
    assert own_mark(recorded, 1, 2) == 7
    after = combine_marks(recorded, 1, 2, 20)
    assert after == {"events": {0: 5}, PROFILE_CHANGES: {2000: 11, 2001: 21}}
    assert recorded[PROFILE_CHANGES] == {2000: 11, 2001: 8}  # not changed in place


def test_a_new_group_size_starts_from_the_lowest_mark() -> None:
    lone = {PROFILE_CHANGES: {0: 31}}
    # Two members now: both start where the lone exporter stopped.
    assert own_mark(lone, 1, 2) == 30
    first = combine_marks(lone, 1, 2, 50)
    assert first[PROFILE_CHANGES] == {2000: 31, 2001: 51}
    assert own_mark(first, 0, 2) == 30  # the other member's share still waits
    # Back to one: it resumes from the share that exported least.
    assert own_mark(first, 0, 1) == 30
    assert combine_marks(first, 0, 1, 60)[PROFILE_CHANGES] == {0: 61}
    # Three members after two: every mark of three starts at the lowest of two.
    three = combine_marks({PROFILE_CHANGES: {2000: 70, 2001: 64}}, 2, 3, 80)
    assert three[PROFILE_CHANGES] == {3000: 64, 3001: 64, 3002: 81}
    assert own_mark({}, 2, 3) == 0  # nothing recorded: from the start
