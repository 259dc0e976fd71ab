"""The web interface, mounted by the API under ``/ui``: a small server-rendered application.

It is its own Starlette/FastAPI app so that its session cookie, CSRF checks, HTML errors and
security headers never touch the JSON API; it reads and acts through the same store and
dispatcher, with the same owner visibility (another owner's job is "not found" here too).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ui.session import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    CsrfRejected,
    SignInRequired,
    csrf_token,
    signed_in_user,
)
from services.config import Settings
from services.store import ConflictError, NotFoundError, StoreError

HERE = Path(__file__).parent
UI_PREFIX = "/ui"

# Scripts only from this server; plotly.js sets inline styles on what it draws.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def plotly_js_path() -> Path:
    """plotly.min.js as the installed ``plotly`` wheel ships it (found without importing
    plotly's Python package)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the web interface needs the 'plotly' package (pip install plotly)")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly is installed but {path} is missing; reinstall plotly")
    return path


class SecurityHeaders:
    """CSP, no sniffing, no framing, no referrer leaks, and no caching of signed-in pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith(f"{UI_PREFIX}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UiTemplates(Jinja2Templates):
    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        user = signed_in_user(request)
        context = {"user": user, "csrf_token": csrf_token(request), "prefix": UI_PREFIX, **context}
        return self.TemplateResponse(request, name, context, status_code=status_code)


def _tojson_script(value: Any) -> str:
    """JSON safe inside <script type="application/json"> (no closing tag can appear)."""
    return json.dumps(value, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e")


def create_ui(settings: Settings, store: Any, dispatcher: Any) -> FastAPI:
    from api.ui import pages

    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ui.state.settings = settings
    ui.state.store = store
    ui.state.dispatcher = dispatcher
    templates = UiTemplates(directory=str(HERE / "templates"))
    templates.env.filters["tojson_script"] = _tojson_script
    ui.state.templates = templates

    ui.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S,
        path=UI_PREFIX,
        same_site="lax",
        https_only=settings.mode == "production",
    )
    ui.add_middleware(SecurityHeaders)

    plotly_js = plotly_js_path()

    @ui.get("/static/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        return FileResponse(
            plotly_js,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    ui.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @ui.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, error: SignInRequired) -> Response:
        return RedirectResponse(f"{UI_PREFIX}/login?next={_safe_next(error.next_path)}", 303)

    @ui.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _error: CsrfRejected) -> Response:
        return templates.page(
            request,
            "error.html",
            403,
            title="Form expired",
            message="This form was not issued by this session (or the session "
            "ended). Go back, reload the page and submit it again.",
        )

    @ui.exception_handler(NotFoundError)
    async def _not_found(request: Request, error: NotFoundError) -> Response:
        return templates.page(request, "error.html", 404, title="Not found", message=str(error))

    @ui.exception_handler(ConflictError)
    async def _conflict(request: Request, error: ConflictError) -> Response:
        # e.g. cancel of a job that finished after its page was drawn: say why, change nothing
        return templates.page(
            request, "error.html", 409, title="Nothing changed", message=str(error)
        )

    @ui.exception_handler(StoreError)
    async def _store_error(request: Request, error: StoreError) -> Response:
        return templates.page(
            request, "error.html", 422, title="Cannot show this", message=str(error)
        )

    ui.include_router(pages.router)
    return ui


def _safe_next(path: str) -> str:
    """Only a path inside the interface is a redirect target (no open redirect)."""
    from urllib.parse import quote

    if not path.startswith(f"{UI_PREFIX}/") or path.startswith("//"):
        path = f"{UI_PREFIX}/jobs"
    return quote(path, safe="")
