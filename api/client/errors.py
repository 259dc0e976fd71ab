"""The errors a server answers, typed by status, each carrying the server's problem document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


class SpectraError(Exception):
    """The server refused a request (or could not be reached: ``status`` 0).

    ``problem`` is the RFC 9457 document the server sent (``type``, ``title``, ``status``,
    ``detail``, and ``field`` / ``errors`` when an input is to blame)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        self.title: str = str(self.problem.get("title") or "error")
        self.detail: str = str(self.problem.get("detail") or "")
        self.field: str | None = self.problem.get("field")
        super().__init__(f"HTTP {status} {self.title}: {self.detail}" if status else self.detail)


class ServerUnreachable(SpectraError):
    """No answer at all: wrong URL, server down, or a timeout."""


class InvalidRequest(SpectraError):
    """400 / 422: the problem document names the field to fix."""


class Unauthorized(SpectraError):
    """401: no API key, or a key the server does not know."""


class Forbidden(SpectraError):
    """403: the key lacks the scope."""


class NotFound(SpectraError):
    """404: no such resource visible to this key (another owner's jobs answer this too)."""


class Conflict(SpectraError):
    """409: the request conflicts with the resource's state (e.g. cancelling a finished job)."""


class PayloadTooLarge(SpectraError):
    """413: an upload over the server's limit."""


class ServerError(SpectraError):
    """5xx: the server failed; its problem document says what to try."""


_ERRORS_BY_STATUS: dict[int, type[SpectraError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def error_for(response: httpx.Response) -> SpectraError:
    """The typed exception for an error response (problem+json, or whatever text came)."""
    try:
        body = response.json()
        problem = body if isinstance(body, dict) else {"detail": str(body)}
    except ValueError:
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    problem.setdefault("status", response.status_code)
    kind = _ERRORS_BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else SpectraError
    return kind(response.status_code, problem)
