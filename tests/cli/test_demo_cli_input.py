"""``auie demo``: bad input (credentials file, URL, numbers) and an unreachable or refusing
server are one line and exit status 2, never a traceback; the data directory follows the
same rule as every other command (--data-dir, else AUIE_DATA_DIR, else ./auie-data)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auie.cli.main import cli
from helpers import assert_usage_error

pytestmark = pytest.mark.usefixtures("clean_environment")

CREDENTIALS = {"clientId": "cl_x", "clientSecret": "secret", "writeKey": "wk_x"}

Run = Callable[..., Result]


def demo(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["demo", *args], env=env)


def assert_one_line_error(result: Result, code: str, *mentions: str) -> None:
    """Exit 2 through the CLI's error helper: ``error (code): ...`` on stderr, alone."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error ({code}): "), lines[0]
    for text in mentions:
        assert text in lines[0], lines[0]


def data_dir_with(tmp_path: Path, content: bytes) -> Path:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "bootstrap.json").write_bytes(content)
    return data


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- bootstrap.json -------------------------------------------------------------------------------


def test_missing_bootstrap_file_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert_usage_error(
        demo("--data-dir", str(data)), f"{data / 'bootstrap.json'} does not exist", "auie serve"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{", "is not JSON: Expecting property name"),
        (b"{}", "has no clientId"),
        (json.dumps({**CREDENTIALS, "writeKey": 3}).encode(), "has no writeKey"),
        (b"\xff\xfe{}", "the file is not UTF-8 text: byte 0xff at offset 0"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"clientId": NaN}', "is not standard JSON"),
    ],
)
def test_bad_bootstrap_file_is_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    data = data_dir_with(tmp_path, content)
    line = assert_usage_error(demo("--data-dir", str(data)), problem)
    assert str(data / "bootstrap.json") in line


def test_bootstrap_path_that_is_a_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "bootstrap.json").mkdir(parents=True)
    assert_usage_error(demo("--data-dir", str(data)), "bootstrap.json is a directory")


def test_data_dir_follows_auie_data_dir_then_the_default(tmp_path: Path) -> None:
    from_env = data_dir_with(tmp_path / "env", b"{}")
    result = demo(env={"AUIE_DATA_DIR": str(from_env)})
    assert_usage_error(result, f"{from_env / 'bootstrap.json'} has no clientId")
    # --data-dir wins over the environment.
    given = data_dir_with(tmp_path / "flag", b"{")
    result = demo("--data-dir", str(given), env={"AUIE_DATA_DIR": str(from_env)})
    assert_usage_error(result, f"{given / 'bootstrap.json'} is not JSON")
    # Neither: ./auie-data (the working directory is an empty one here).
    assert_usage_error(demo(), "auie-data/bootstrap.json does not exist")


# -- numbers and the URL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--people", "0"], "--people"),
        (["--people", "-5"], "--people"),
        (["--people", "100001"], "--people"),
        (["--rounds", "0"], "--rounds"),
        (["--rounds", "-3"], "--rounds"),
    ],
)
def test_people_and_rounds_are_bounded(tmp_path: Path, args: list[str], option: str) -> None:
    data = data_dir_with(tmp_path, json.dumps(CREDENTIALS).encode())
    result = demo("--data-dir", str(data), "--url", f"http://127.0.0.1:{closed_port()}", *args)
    assert_usage_error(result, f"Invalid value for '{option}'", f"{args[1]} is not in the range")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "is not an http:// or https:// URL with a host"),
        ("ftp://example.org", "is not an http:// or https:// URL with a host"),
        ("http://", "is not an http:// or https:// URL with a host"),
        ("http://127.0.0.1:99999", "port 99999 is not 1 to 65535"),
        ("http://[::1", "is not a URL"),
    ],
)
def test_url_must_be_http_with_a_host(tmp_path: Path, url: str, problem: str) -> None:
    data = data_dir_with(tmp_path, json.dumps(CREDENTIALS).encode())
    result = demo("--data-dir", str(data), "--url", url)
    assert_usage_error(result, "Invalid value for '--url'", problem)


# -- the server -----------------------------------------------------------------------------------


def test_unreachable_server_is_one_line_and_json_with_json(tmp_path: Path) -> None:
    data = data_dir_with(tmp_path, json.dumps(CREDENTIALS).encode())
    url = f"http://127.0.0.1:{closed_port()}"
    result = demo("--data-dir", str(data), "--url", url)
    assert_one_line_error(result, "server_unreachable", f"cannot reach auie serve at {url}")
    as_json = demo("--data-dir", str(data), "--url", url, "--json")
    assert as_json.exit_code == 2
    assert isinstance(as_json.exception, SystemExit)
    error = json.loads(as_json.stdout)
    assert error["code"] == "server_unreachable"
    assert url in error["message"]


@pytest.fixture
def fake_server() -> Iterator[Callable[[int, bytes], str]]:
    """``serve(status, body)``: a local HTTP server answering every POST so; its URL."""
    servers: list[ThreadingHTTPServer] = []

    def serve(status: int, body: bytes) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_refused_credentials_are_the_servers_message(
    tmp_path: Path, fake_server: Callable[[int, bytes], str]
) -> None:
    body = json.dumps({"code": "invalid_client", "message": "invalid client credentials"})
    url = fake_server(401, body.encode())
    data = data_dir_with(tmp_path, json.dumps(CREDENTIALS).encode())
    result = demo("--data-dir", str(data), "--url", url)
    assert_one_line_error(
        result, "invalid_client", "POST /oauth/token answered 401: invalid client credentials"
    )


def test_a_server_that_is_not_auie(
    tmp_path: Path, fake_server: Callable[[int, bytes], str]
) -> None:
    url = fake_server(200, b'{"hello": "world"}')
    data = data_dir_with(tmp_path, json.dumps(CREDENTIALS).encode())
    result = demo("--data-dir", str(data), "--url", url)
    assert_one_line_error(result, "not_auie", "gave no access token")
