"""The suppression list on the real metadata database: keyed hashes only, in-memory checks
with a refresh, drop counters."""

from __future__ import annotations

from pathlib import Path

from auie.privacy.suppression import SuppressionList
from auie.runtime import Runtime

NODES = ["user_id:supp-user-ZK81", "email:supp.person@example.org", "anonymous_id:supp-anon-Q2"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_identifiers_are_listed_as_keyed_hashes_only(runtime: Runtime, tmp_path: Path) -> None:
    suppressions = runtime.privacy.suppressions
    assert suppressions.add("ws1", NODES, "pr_1") == 3
    assert suppressions.add("ws1", NODES[:1], "pr_2") == 0
    runtime.engine.dispose()
    data = b"".join(p.read_bytes() for p in runtime.settings.data_dir.glob("auie.db*"))
    for value in ("supp-user-ZK81", "supp.person@example.org", "supp-anon-Q2"):
        assert value.encode() not in data
    assert suppressions.stats("ws1")["identifiers"] == 3


def test_checks_normalise_like_identity_resolution(runtime: Runtime) -> None:
    suppressions = runtime.privacy.suppressions
    suppressions.add("ws1", NODES, "pr_1")
    assert suppressions.is_suppressed("ws1", "user_id", "supp-user-ZK81")
    assert suppressions.is_suppressed("ws1", "USER_ID", "  supp-user-ZK81 ")
    assert suppressions.is_suppressed("ws1", "email", "Supp.Person@EXAMPLE.org")
    assert runtime.privacy.is_suppressed("ws1", "anonymous_id", "supp-anon-Q2")
    assert not suppressions.is_suppressed("ws1", "user_id", "supp-user-ZK8")
    assert not suppressions.is_suppressed("ws1", "anonymous_id", "supp-user-ZK81")
    assert not suppressions.is_suppressed("ws2", "user_id", "supp-user-ZK81")


def test_events_carrying_a_listed_identifier_are_recognised(runtime: Runtime) -> None:
    suppressions = runtime.privacy.suppressions
    suppressions.add("ws1", NODES, "pr_1")
    found = suppressions.suppressed_identifier
    assert found("ws1", {"userId": "supp-user-ZK81"}) == ("user_id", "supp-user-ZK81")
    assert found("ws1", {"userId": "x", "anonymousId": "supp-anon-Q2"}) == (
        "anonymous_id",
        "supp-anon-Q2",
    )
    assert found("ws1", {"userId": "x", "traits": {"email": "SUPP.person@example.org"}})
    assert found(
        "ws1", {"userId": "x", "context": {"traits": {"email": "supp.person@example.org"}}}
    )
    assert found("ws1", {"type": "alias", "userId": "x", "previousId": "supp-user-ZK81"})
    assert found("ws1", {"userId": "x", "anonymousId": "y", "traits": {"email": 5}}) is None
    assert found("ws2", {"userId": "supp-user-ZK81"}) is None


def test_other_processes_additions_are_seen_after_the_refresh(runtime: Runtime) -> None:
    clock = Clock()
    reader = SuppressionList(
        runtime.engine, runtime.privacy.pseudonyms, refresh_seconds=2.0, clock=clock
    )
    assert not reader.is_suppressed("ws1", "user_id", "supp-user-ZK81")
    runtime.privacy.suppressions.add("ws1", NODES, "pr_1")  # "another process"
    assert not reader.is_suppressed("ws1", "user_id", "supp-user-ZK81")  # cached
    clock.now += 2.5
    assert reader.is_suppressed("ws1", "user_id", "supp-user-ZK81")


def test_dropped_events_are_counted(runtime: Runtime) -> None:
    clock = Clock()
    suppressions = SuppressionList(
        runtime.engine, runtime.privacy.pseudonyms, flush_seconds=5.0, clock=clock
    )
    suppressions.add("ws1", NODES, "pr_1")
    suppressions.count_dropped("ws1", "user_id", "supp-user-ZK81")
    suppressions.count_dropped("ws1", "email", "SUPP.PERSON@example.org", 4)
    assert suppressions.stats("ws1")["dropped"] == 0  # buffered
    clock.now += 6
    suppressions.count_dropped("ws1", "user_id", "supp-user-ZK81")  # due: writes all
    assert suppressions.stats("ws1")["dropped"] == 6
    suppressions.count_dropped("ws1", "anonymous_id", "supp-anon-Q2", 2)
    assert suppressions.flush() == 2
    assert suppressions.stats("ws1")["dropped"] == 8
    assert suppressions.flush() == 0
