"""The processor group's locks and size: which member consumes which partitions, and that
two processors never consume the same partition at once (``auie.process.lock``)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from auie.config import Settings
from auie.process.lock import ProcessorLock, SectionLock, others_running, owns
from auie.process.supervisor import group_size


def test_members_split_every_partition_once() -> None:
    for members in range(1, 6):
        for partition in range(40):
            owners = [m for m in range(members) if owns(m, members, partition)]
            assert owners == [partition % members]


def test_members_of_one_group_run_together(tmp_path: Path) -> None:
    with (
        ProcessorLock(tmp_path, 0, 2, partitions=4),
        ProcessorLock(tmp_path, 1, 2, partitions=4),
    ):
        held = sorted(p.name for p in (tmp_path / "processor.d").iterdir())
        assert held == ["0.lock", "1.lock", "2.lock", "3.lock"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((0, 2), (0, 1)),  # a group of two against a lone processor
        ((1, 2), (2, 3)),  # partition 5 of 6: member 1 of 2 and member 2 of 3
        ((0, 1), (1, 4)),
    ],
)
def test_processors_that_share_a_partition_wait(
    tmp_path: Path, first: tuple[int, int], second: tuple[int, int]
) -> None:
    with ProcessorLock(tmp_path, *first, partitions=6):
        blocked = ProcessorLock(tmp_path, *second, partitions=6, wait_seconds=0.3)
        with pytest.raises(TimeoutError, match="another processor holds"):
            blocked.__enter__()
    with ProcessorLock(tmp_path, *second, partitions=6):  # released: free to take
        pass


def test_a_waiting_processor_starts_when_the_old_one_exits(tmp_path: Path) -> None:
    old = ProcessorLock(tmp_path, 0, 1, partitions=4).__enter__()
    started = threading.Event()

    def new() -> None:
        with ProcessorLock(tmp_path, 1, 2, partitions=4, wait_seconds=10):
            started.set()

    thread = threading.Thread(target=new)
    thread.start()
    time.sleep(0.5)
    assert not started.is_set()
    old.__exit__(None, None, None)
    thread.join(10)
    assert started.is_set()


def test_erasure_sees_a_running_member(tmp_path: Path) -> None:
    """Erasure asks whether a processor runs by trying ``processor.lock`` exclusively;
    members hold it shared."""
    import fcntl

    def running() -> bool:
        fd = os.open(tmp_path / "processor.lock", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    with ProcessorLock(tmp_path, 1, 2, partitions=4):
        assert running()
    assert not running()


def test_a_member_index_must_be_in_its_group(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="member 2 of a group of 2"):
        ProcessorLock(tmp_path, 2, 2, partitions=4)


def test_section_lock_excludes_other_holders(tmp_path: Path) -> None:
    lock = SectionLock(tmp_path / "section.lock")
    inside: list[int] = []
    overlaps: list[int] = []

    def work(n: int) -> None:
        for _ in range(20):
            with lock.held():
                if inside:
                    overlaps.append(n)
                inside.append(n)
                time.sleep(0.001)
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlaps == []


def test_group_size_is_one_per_cpu_capped_by_partitions(tmp_path: Path) -> None:
    def size(workers: int, partitions: int) -> int:
        settings = Settings(
            data_dir=tmp_path,
            process={"workers": workers},  # type: ignore[arg-type]
            eventlog={"partitions": partitions},  # type: ignore[arg-type]
        )
        return group_size(settings)

    assert size(0, 64) == (os.cpu_count() or 1)
    assert size(3, 64) == 3
    assert size(8, 4) == 4
    assert size(1, 4) == 1


def test_member_0_sees_whether_the_other_members_still_run(tmp_path: Path) -> None:
    """A draining member 0 waits for the others only while they hold their partitions."""
    with ProcessorLock(tmp_path, 0, 2, partitions=4):
        assert not others_running(tmp_path, 0, 2, 4)
        with ProcessorLock(tmp_path, 1, 2, partitions=4):
            assert others_running(tmp_path, 0, 2, 4)
            assert others_running(tmp_path, 1, 2, 4)
        assert not others_running(tmp_path, 0, 2, 4)
        with ProcessorLock(tmp_path, 1, 2, partitions=4):  # the probe left no lock behind
            pass
