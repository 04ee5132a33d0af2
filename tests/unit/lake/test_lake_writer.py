"""The lake writer's background flush: it commits what it took, with the offsets of that
moment; rows added meanwhile wait for the next flush; a failed flush gives its rows back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from auie.lake.catalog import Lake, committed_offsets, open_catalog
from auie.lake.rows import Columns
from auie.lake.tables import IDENTITIES
from auie.lake.writer import LakeWriter, append
from auie.privacy.lakeops import purge_history
from helpers import make_settings

WS = "ws_writer"


@pytest.fixture
def writer(tmp_path: Path) -> LakeWriter:
    lake = Lake(open_catalog(make_settings(tmp_path / "data")))
    return LakeWriter(lake, max_records=10, max_seconds=3600)


def row(i: int) -> dict[str, Any]:
    return {
        "id_type": "user_id",
        "id_value": f"u{i}",
        "profile_id": f"p{i}",
        "changed_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def stored(writer: LakeWriter) -> list[str]:
    table = writer.lake.refresh(WS, IDENTITIES)
    return [str(v) for v in table.scan().to_arrow().column("id_value").to_pylist()]


def test_rows_added_during_a_background_flush_wait_for_the_next(writer: LakeWriter) -> None:
    for i in range(3):
        writer.add(WS, IDENTITIES, row(i))
    release = threading.Event()
    append = writer._append

    def slow_append(key: tuple[str, str], data: pa.Table, offsets: Any) -> None:
        assert release.wait(30)
        append(key, data, offsets)

    writer._append = slow_append  # type: ignore[method-assign]
    pending = writer.begin_flush({"events": {0: 3}})
    assert writer.pending == 0
    assert not pending.done()
    writer.add(WS, IDENTITIES, row(3))
    assert writer.pending == 1
    release.set()
    reports = writer.end_flush(pending)
    assert [(r.table, r.rows) for r in reports] == [(IDENTITIES, 3)]
    assert sorted(stored(writer)) == ["u0", "u1", "u2"]
    assert committed_offsets(writer.lake.table(WS, IDENTITIES)) == {"events": {0: 3}}
    assert writer.committed(WS, IDENTITIES) == {"events": {0: 3}}

    writer._append = append  # type: ignore[method-assign]
    writer.flush({"events": {0: 4}})
    assert sorted(stored(writer)) == ["u0", "u1", "u2", "u3"]
    assert committed_offsets(writer.lake.table(WS, IDENTITIES)) == {"events": {0: 4}}


def test_a_failed_background_flush_gives_its_rows_back_in_front(writer: LakeWriter) -> None:
    for i in range(3):
        writer.add(WS, IDENTITIES, row(i))
    append = writer._append

    def failing(key: tuple[str, str], data: pa.Table, offsets: Any) -> None:
        raise RuntimeError("catalog down")

    writer._append = failing  # type: ignore[method-assign]
    pending = writer.begin_flush({"events": {0: 3}})
    writer.add(WS, IDENTITIES, row(3))
    with pytest.raises(RuntimeError, match="catalog down"):
        writer.end_flush(pending)
    assert writer.pending == 4
    assert writer.due() is False

    writer._append = append  # type: ignore[method-assign]
    reports = writer.flush({"events": {0: 4}})
    assert [r.rows for r in reports] == [4]
    assert stored(writer) == ["u0", "u1", "u2", "u3"]


def test_a_flush_with_nothing_buffered_commits_nothing(writer: LakeWriter) -> None:
    pending = writer.begin_flush({"events": {0: 0}})
    assert pending.done()
    assert writer.end_flush(pending) == []
    assert not writer.lake.exists(WS, IDENTITIES)


def test_a_commit_after_an_erasure_purged_its_snapshot_reloads_the_table(
    writer: LakeWriter, tmp_path: Path
) -> None:
    """An erasure (another process) commits, then expires the snapshots before its own and
    deletes their files: the writer's table, loaded before, cannot read its own current
    manifest list any more. Its next commit reloads the table and lands."""
    writer.add(WS, IDENTITIES, row(0))
    writer.flush({"events": {0: 1}})
    other = Lake(open_catalog(make_settings(tmp_path / "data")))  # as another process
    columns = Columns(IDENTITIES)
    columns.add(row(1))
    # an erasure's commit carries the offsets of the one before it (exactly once)
    append(other, WS, IDENTITIES, columns.to_arrow(), {"events": {0: 1}})
    report = purge_history(other.refresh(WS, IDENTITIES), orphan_min_age=timedelta(0))
    assert report.snapshots_expired >= 1
    writer.add(WS, IDENTITIES, row(2))
    writer.flush({"events": {0: 2}})
    assert sorted(stored(writer)) == ["u0", "u1", "u2"]
    assert committed_offsets(writer.lake.refresh(WS, IDENTITIES)) == {"events": {0: 2}}
