"""The dashboard's files as the server sends them: shell, scripts, styles, the vendored
chart library, security headers, and their absence from the OpenAPI document. (The pages
themselves run in a real browser in tests/e2e/test_dashboard.py.)"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from auie.api.web import STATIC_DIR, UI_PATHS, WEB_DIR
from helpers import REPO

VENDOR = STATIC_DIR / "vendor"
OWN_FILES = sorted(
    p
    for p in WEB_DIR.rglob("*")
    if p.is_file() and p.suffix in {".html", ".js", ".css"} and VENDOR not in p.parents
)


class _Assets(HTMLParser):
    """The script and stylesheet URLs of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.urls.append(str(values["src"]))
            else:
                self.inline_scripts += 1
        if tag == "link" and values.get("rel") == "stylesheet":
            self.urls.append(str(values["href"]))


def test_the_shell_is_served_at_the_root_with_strict_headers(client: TestClient) -> None:
    reply = client.get("/")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    policy = reply.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in reply.headers
    assert 'id="login-form"' in reply.text
    assert client.head("/").status_code == 200


def test_every_asset_of_the_shell_is_served_from_this_origin(client: TestClient) -> None:
    parser = _Assets()
    parser.feed(client.get("/").text)
    assert parser.inline_scripts == 0, "the CSP allows no inline script"
    assert "/static/vendor/chart.umd.min.js" in parser.urls
    for url in parser.urls:
        assert url.startswith("/static/"), url
        reply = client.get(url)
        assert reply.status_code == 200, url
        assert reply.headers["x-content-type-options"] == "nosniff"
        kind = "text/css" if url.endswith(".css") else "javascript"
        assert kind in reply.headers["content-type"], url


def test_module_imports_resolve_and_are_served(client: TestClient) -> None:
    """Every `import ... from "./x.js"` of the dashboard's modules names a served file."""
    pattern = re.compile(r'^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"', re.MULTILINE)
    scripts = [p for p in OWN_FILES if p.suffix == ".js"]
    assert len(scripts) >= 10
    for script in scripts:
        for target in pattern.findall(script.read_text()):
            assert target.startswith("./") or target.startswith("../"), (script, target)
            resolved = (script.parent / target).resolve()
            assert resolved.is_file(), (script, target)
            url = "/static/" + resolved.relative_to(STATIC_DIR).as_posix()
            assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: p.relative_to(WEB_DIR).as_posix())
def test_no_file_loads_anything_from_another_origin(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "remote asset"
    assert not re.search(r"""(fetch|import)\(\s*["'`]https?:""", text), "remote call"
    assert "innerHTML" not in text, "data only enters the page as text"
    assert "document.cookie" not in text, "the token is never a cookie"


def test_missing_static_files_are_404_errors(client: TestClient) -> None:
    reply = client.get("/static/js/nope.js")
    assert reply.status_code == 404
    assert set(reply.json()) == {"code", "message"}
    assert client.get("/static/../pyproject.toml").status_code == 404


def test_dashboard_routes_are_not_in_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not UI_PATHS & set(paths)
    assert not [p for p in paths if p.startswith("/static")]
    # Every route that is not a documented API operation, the docs pages aside.
    hidden = {
        route.path
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if not (isinstance(route.original_route, APIRoute) and route.include_in_schema)
    }
    assert hidden - {"/openapi.json", "/docs", "/docs/oauth2-redirect"} == UI_PATHS


def test_the_vendored_chart_library_is_the_pinned_release() -> None:
    manifest = json.loads((VENDOR / "VENDOR.json").read_text())
    assert manifest["package"] == "chart.js"
    script = VENDOR / "chart.umd.min.js"
    assert f"Chart.js v{manifest['version']}" in script.read_text()[:200]
    for entry in manifest["files"]:
        digest = hashlib.sha256((VENDOR / entry["file"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"], entry["file"]
    assert "MIT License" in (VENDOR / "chart.js.LICENSE.md").read_text()
    pinned = re.search(r"^VERSION=(\S+)$", (REPO / "scripts/vendor-web").read_text(), re.M)
    assert pinned is not None
    assert pinned.group(1) == manifest["version"]


def test_the_web_files_are_package_data() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "web/**/*" in project["tool"]["setuptools"]["package-data"]["auie"]
