"""The data directory holds private keys and every store: only AUIE's user may read it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from auie.runtime import Runtime
from helpers import make_settings

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_is_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        runtime = Runtime(make_settings(tmp_path / "nested" / "data"))
        assert runtime.bootstrap() is not None
        runtime.close()
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "nested" / "data") == 0o700
    # What is inside inherits the protection: nobody else can reach auie.db's signing keys.
    assert (tmp_path / "nested" / "data" / "auie.db").exists()


def test_an_existing_open_data_directory_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="auie.runtime"):
        Runtime(make_settings(data)).close()
    assert mode(data) == 0o700
    assert f"data directory {data} was mode 0755; now 0700" in caplog.text


def test_a_private_data_directory_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    data.chmod(0o700)
    with caplog.at_level(logging.WARNING, logger="auie.runtime"):
        Runtime(make_settings(data)).close()
    assert mode(data) == 0o700
    assert "data directory" not in caplog.text
