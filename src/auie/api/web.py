"""The dashboard: ``GET /`` serves the single-page app's shell, ``/static/`` its files.

Neither is part of the API (both are left out of the OpenAPI document). The page holds no
data: it logs in with OAuth2 client credentials (``POST /oauth/token``) and calls the API
with the bearer token, like any other client. See docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
#: Paths of the dashboard's routes (the shell and the static mount), none of them API.
UI_PATHS = frozenset({"/", "/static"})

#: Scripts, styles, images and API calls only from this origin; nothing inline, no frames.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def shell() -> FileResponse:
    """The app shell: markup, styles and scripts; every page is drawn by the scripts."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_HEADERS)


class _StaticFiles(StaticFiles):
    """Static files with the dashboard's security headers, revalidated on each use."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {b"cache-control"}
                ]
                headers += [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: the shell at ``/``, its files under ``/static``."""
    app.include_router(router)
    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
