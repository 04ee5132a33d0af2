"""Fixtures: settings on a temporary data directory, the in-process app, a real server."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from auie.api.app import create_app
from auie.config import Settings
from auie.profiles.store.sql import SqlProfileStore
from auie.runtime import Bootstrap, Runtime
from helpers import Server, make_settings, start_server
from stores import BACKENDS, database_url

# Property tests (hypothesis) draw new examples at every run, which is how they find bugs;
# CI (.ci/run) sets HYPOTHESIS_PROFILE=ci: the same examples at every run, so a landing
# never fails on a counterexample the change did not cause (a local run finds it instead).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The CLI's rich consoles are made at import and keep a COLUMNS they find then; pytest-xdist's
# workers have COLUMNS=80. Without it they read COLUMNS at each use, so the width a test gives
# CliRunner(env=...) is the width the output has.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


@pytest.fixture
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUIE_* variable of the caller and no ./auie.toml reach the code under test: the
    environment is cleared of them and the working directory is an empty one (use with
    ``pytestmark = pytest.mark.usefixtures("clean_environment")``)."""
    for name in list(os.environ):
        if name.startswith("AUIE_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def boot(runtime: Runtime) -> Bootstrap:
    result = runtime.bootstrap()
    assert result is not None
    return result


@pytest.fixture
def client(runtime: Runtime, boot: Bootstrap) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), client=("203.0.113.9", 50000)) as test_client:
        yield test_client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data")
    yield srv
    srv.stop()


@dataclass
class App:
    """An in-process app on its own data directory, with its bootstrap credentials."""

    client: TestClient
    runtime: Runtime
    boot: Bootstrap


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Build apps with setting overrides: ``make_app(**{"collect.rate_limit_burst": 3})``.

    Apps made with the same ``name`` share a data directory (and credentials)."""
    stack = contextlib.ExitStack()

    def build(
        name: str = "custom", peer: tuple[str, int] = ("203.0.113.9", 50000), **overrides: Any
    ) -> App:
        runtime = Runtime(make_settings(tmp_path / name, **overrides))
        stack.callback(runtime.close)
        boot = runtime.bootstrap()
        if boot is None:
            data = json.loads((tmp_path / name / "bootstrap.json").read_text())
            boot = Bootstrap(
                data["workspace"],
                data["source"],
                data["writeKey"],
                data["clientId"],
                data["clientSecret"],
            )
        client = stack.enter_context(TestClient(create_app(runtime), client=peer))
        return App(client, runtime, boot)

    yield build
    stack.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty profile store, once per backend (SQLite file, fresh PostgreSQL
    database); the database is dropped afterwards."""
    with database_url(request.param, tmp_path / "stores") as url:
        yield url


@pytest.fixture
def profile_store(store_url: str) -> Iterator[SqlProfileStore]:
    """A migrated, empty profile store on each backend."""
    store = SqlProfileStore.open(store_url)
    yield store
    store.close()
