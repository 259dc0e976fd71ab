"""Every error the API returns is an RFC 9457 problem document (``application/problem+json``).

Each body has ``type``, ``title``, ``status`` and ``detail``; when one input is to blame it also
names it in ``field``, and validation failures list every offending field under ``errors``.
Domain errors (geometry, store) are mapped here, in one table, so handlers never build
error responses themselves.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.export import ExportFormatError
from services.geometry import (
    GeometryError,
    InvalidLatentError,
    InvalidOptionError,
    MissingWeightsError,
    NonFiniteOutputError,
    UnknownDistanceError,
    UnknownMethodError,
    UnknownModelError,
)
from services.jsonable import jsonable
from services.pipeline.spec import SpecError
from services.store import (
    ConflictError,
    IdempotencyConflictError,
    InvalidDataError,
    NotFoundError,
    StoreError,
    StoreFull,
)
from services.store.availability import STORE_FULL_MESSAGE, STORE_UNAVAILABLE_ERRORS
from services.submission import ImportTooLargeError, JobAlreadyFinishedError

PROBLEM_JSON = "application/problem+json"
# Seconds a client is told to wait when the database is unreachable (503).
RETRY_AFTER_S = 5
PROBLEM_BASE = "https://latent-spectra.dev/problems/"

log = logging.getLogger("api")


class ApiProblem(Exception):
    """Raised by handlers and dependencies to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.slug = slug or title.lower().replace(" ", "-")
        self.headers = headers
        self.extra = extra or {}


# What each documented problem status means, for the OpenAPI document.
PROBLEM_STATUSES: dict[int, str] = {
    400: "Malformed request (e.g. a body that is not valid JSON)",
    401: "No or invalid API key",
    403: "The key lacks the scope",
    404: "No such resource visible to this key",
    409: "The request conflicts with what is stored (e.g. a job without results yet)",
    413: "Body or upload over the size limit",
    422: "Invalid input (the problem document names the field)",
    503: "The database is unreachable for now; retry after the Retry-After seconds",
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem documents (all of them by default)."""
    return {
        status: {
            "description": PROBLEM_STATUSES[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses or PROBLEM_STATUSES
    }


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    field: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if instance is not None:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


@dataclass(frozen=True)
class _Mapping:
    status: int
    title: str
    slug: str
    field: str | None = None


# Most specific first: the first isinstance match wins.
_DOMAIN_ERRORS: list[tuple[type[Exception], _Mapping]] = [
    (UnknownModelError, _Mapping(422, "Unknown model", "unknown-model", "model")),
    (UnknownDistanceError, _Mapping(422, "Unknown distance", "unknown-distance", "distance")),
    (UnknownMethodError, _Mapping(422, "Unknown method", "unknown-method", "method")),
    (InvalidLatentError, _Mapping(422, "Invalid latent codes", "invalid-latents", "latents")),
    (InvalidOptionError, _Mapping(422, "Invalid option", "invalid-option")),
    (NonFiniteOutputError, _Mapping(422, "Non-finite output", "non-finite-output")),
    (MissingWeightsError, _Mapping(422, "Model weights missing", "missing-weights", "model")),
    (GeometryError, _Mapping(422, "Invalid request", "invalid-request")),
    (SpecError, _Mapping(422, "Invalid job spec", "invalid-spec")),
    (ExportFormatError, _Mapping(422, "Invalid .npz file", "invalid-npz", "file")),
    (ImportTooLargeError, _Mapping(422, "Invalid .npz file", "invalid-npz", "file")),
    (NotFoundError, _Mapping(404, "Not found", "not-found")),
    (
        IdempotencyConflictError,
        _Mapping(422, "Idempotency-Key reused", "idempotency-key-reused", "Idempotency-Key"),
    ),
    (JobAlreadyFinishedError, _Mapping(409, "Job already finished", "job-already-finished")),
    (ConflictError, _Mapping(409, "Conflict", "conflict")),
    (InvalidDataError, _Mapping(422, "Invalid data", "invalid-data")),
    (StoreError, _Mapping(400, "Bad request", "bad-request")),
]


def _domain_mapping(error: Exception) -> _Mapping | None:
    for kind, mapping in _DOMAIN_ERRORS:
        if isinstance(error, kind):
            return mapping
    return None


def _field_of(error: Exception, default: str | None) -> str | None:
    # Domain errors may carry the name of the offending input; prefer it to the default.
    field = getattr(error, "field", None)
    return field if isinstance(field, str) and field else default


def _extra_of(error: Exception) -> dict[str, Any] | None:
    # Members a domain error adds to its problem document (e.g. the groups of a mixed
    # selection, so a client can pick one); only a JSON object is taken.
    extra = getattr(error, "extra", None)
    return jsonable(extra) if isinstance(extra, dict) else None


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "latents", "count") -> "latents.count"; the transport part is not a field name.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _field_named_in(error: dict[str, Any]) -> str | None:
    """For an error raised by a whole-model validator (its location is just the body), the
    field its message talks about: a quoted field name first ('latents'), else the first
    field name mentioned. Candidates are the keys the client sent."""
    given = error.get("input")
    if not isinstance(given, dict):
        return None
    message = str(error.get("msg", ""))
    names = [str(name) for name in given]
    quoted = [(message.find(f"'{n}'"), n) for n in names if f"'{n}'" in message]
    if quoted:
        return min(quoted)[1]
    plain = [(m.start(), n) for n in names if (m := re.search(rf"\b{re.escape(n)}\b", message))]
    return min(plain)[1] if plain else None


def validation_details(
    errors: list[dict[str, Any]], prefix: str | None = None
) -> tuple[str | None, str, list[dict[str, str]]]:
    """(first field, one-line detail, every field with its reason) from pydantic errors."""
    listed = []
    for error in errors:
        field = _location(error.get("loc", ()))
        if field in ("", "body"):
            field = _field_named_in(error) or field
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        listed.append({"field": field, "reason": str(error.get("msg", "invalid value"))})
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in listed) or "invalid request"
    return (listed[0]["field"] if listed else None), detail, listed


def validation_problem(errors: list[dict[str, Any]], instance: str | None = None) -> JSONResponse:
    field, detail, listed = validation_details(errors)
    return problem_response(
        422,
        "Invalid request",
        detail,
        slug="validation-error",
        field=field,
        instance=instance,
        extra={"errors": listed},
    )


def validation_error(error: ValidationError, prefix: str | None = None) -> ApiProblem:
    """A pydantic ValidationError raised inside a handler, as a 422 problem."""
    field, detail, listed = validation_details([dict(e) for e in error.errors()], prefix)
    return ApiProblem(
        422,
        "Invalid request",
        detail,
        field=field,
        slug="validation-error",
        extra={"errors": listed},
    )


def store_full(instance: str | None = None) -> JSONResponse:
    """503 for a store whose disk is full (or that is read-only): reads work, writes wait."""
    return problem_response(
        503,
        "Store full or read-only",
        f"{STORE_FULL_MESSAGE[0].upper()}{STORE_FULL_MESSAGE[1:]}. Nothing was changed; retry "
        f"after {RETRY_AFTER_S} s.",
        slug="store-full",
        instance=instance,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def database_unavailable(instance: str | None = None) -> JSONResponse:
    """503 for a database that cannot be reached now: the request was fine, send it again."""
    return problem_response(
        503,
        "Service unavailable",
        "The database cannot be reached right now; nothing was changed. Retry after "
        f"{RETRY_AFTER_S} s.",
        slug="service-unavailable",
        instance=instance,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def allowed_methods(request: Request, *, literal_only: bool = False) -> list[str]:
    """The methods the OpenAPI document lists for this path (several routes share a path,
    one per method). ``literal_only``: only paths without parameters, less the method used."""
    methods: set[str] = set()
    for template, pattern, path_methods in _documented_paths(request.app):
        if literal_only and "{" in template:
            continue
        if pattern.fullmatch(request.url.path):
            methods |= path_methods
    return sorted(methods - {request.method}) if literal_only else sorted(methods)


def _documented_paths(app: FastAPI) -> list[tuple[str, re.Pattern[str], set[str]]]:
    cached = getattr(app.state, "documented_paths", None)
    if cached is None:
        cached = []
        for template, operations in app.openapi().get("paths", {}).items():
            regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            cached.append((template, re.compile(regex), {m.upper() for m in operations}))
        app.state.documented_paths = cached
    return cached


def method_not_allowed(request: Request, allowed: list[str]) -> JSONResponse:
    return problem_response(
        405,
        "Method not allowed",
        f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}.",
        slug="method-not-allowed",
        instance=request.url.path,
        headers={"Allow": ", ".join(allowed)},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, error: ApiProblem) -> JSONResponse:
        return problem_response(
            error.status,
            error.title,
            error.detail,
            slug=error.slug,
            field=error.field,
            instance=request.url.path,
            headers=error.headers,
            extra=error.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [dict(e) for e in error.errors()]
        if errors and all(tuple(e.get("loc", ()))[:1] == ("path",) for e in errors):
            # "GET /v1/latent-sets/upload" met the {set_id} route only because no GET route
            # has that literal path: the path names the upload route, the method is wrong.
            allowed = allowed_methods(request, literal_only=True)
            if allowed:
                return method_not_allowed(request, allowed)
        return validation_problem(errors, instance=request.url.path)

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Request, error: ValidationError) -> JSONResponse:
        return validation_problem([dict(e) for e in error.errors()], instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 405:
            # A literal path (/v1/jobs/upload) names its own route: the methods of a
            # parametric route that happens to match it too ({job_id}) are not allowed there.
            literal = allowed_methods(request, literal_only=True)
            return method_not_allowed(request, literal or allowed_methods(request))
        title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(
            error.status_code, "HTTP error"
        )
        return problem_response(
            error.status_code,
            title,
            str(error.detail),
            slug=title.lower().replace(" ", "-"),
            instance=request.url.path,
            headers=getattr(error, "headers", None),
        )

    async def _domain(request: Request, error: Exception) -> JSONResponse:
        mapping = _domain_mapping(error)
        assert mapping is not None  # registered only for the mapped classes
        return problem_response(
            mapping.status,
            mapping.title,
            str(error),
            slug=mapping.slug,
            field=_field_of(error, mapping.field),
            instance=request.url.path,
            extra=_extra_of(error),
        )

    # One handler per class: Starlette picks the most specific by MRO, and these are handled
    # in the exception middleware (answered, not re-raised as server errors).
    for kind, _ in _DOMAIN_ERRORS:
        app.add_exception_handler(kind, _domain)

    async def _unavailable(request: Request, error: Exception) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
        if isinstance(error, StoreFull):
            return store_full(request.url.path)
        return database_unavailable(request.url.path)

    # The store's own types (it translates the driver's): the same set the worker waits on.
    for kind in STORE_UNAVAILABLE_ERRORS:
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "Internal server error",
            "The server failed to handle this request; the error is logged.",
            slug="internal-error",
            instance=request.url.path,
        )
