"""Request-scoped access to what ``create_app`` wired: settings, store, dispatcher, metrics.

Each has a typed ``Annotated`` alias for route signatures (``store: StoreDep``), so a route
declares what it uses and its parameters are typed without repeating ``Depends``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, authenticate
from api.errors import ApiProblem, allowed_methods
from api.metrics import ApiMetrics
from services.config import Settings
from services.dispatch import Dispatcher
from services.geometry import list_models
from services.geometry.models.controls import base_model_name
from services.store import ID_KINDS, AmbiguousIdError, MalformedIdError, Store
from services.store.ids import MIN_PREFIX, is_full_id, normalised_id
from services.worker_devices import device_is_served


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


def ensure_model_served(name: str, settings: Settings, field: str = "model") -> None:
    """Refuse a model the server does not serve. File-based names (python:, torchscript:,
    biggan-deep:, stylegan2:) execute or unpickle the named file, so over HTTP only the
    built-in registry and the operator's SPECTRA_EXTRA_MODELS are accepted; a control
    (shuffled:SEED:BASE, random-init:SEED:BASE) is served when its base model is."""
    base = base_model_name(name)
    if base in settings.extra_model_names or base in {m.name for m in list_models()}:
        return
    raise ApiProblem(
        422,
        "Model not served",
        f"model {name!r} is not served here; GET /v1/models lists the models this server "
        "serves, and an operator can add a file-based model to SPECTRA_EXTRA_MODELS",
        field=field,
        slug="model-not-served",
    )


def ensure_device_served(device: str | None, dispatcher: Dispatcher, field: str = "device") -> None:
    """Refuse a job for a device no running worker has (e.g. cuda:3 on a two-GPU host), so
    it is not left queued forever. Unchecked (accepted) when the workers' devices cannot be
    read: the job then waits for a worker as any other does."""
    if device is None:
        return
    available = dispatcher.devices()
    if available is None or device_is_served(device, available):
        return
    have = ", ".join(sorted(available)) or "none"
    raise ApiProblem(
        422,
        "Device not served",
        f"no running worker has device {device!r} (the workers have: {have}); leave device "
        "out to use the worker's own, or start a worker on that device",
        field=field,
        slug="device-not-served",
    )


async def reject_unknown_query_parameters(request: Request) -> None:
    """A query parameter the route does not take is refused (422 naming it), not ignored: a
    misspelt filter (``?staus=failed``) would otherwise silently widen the selection.
    async: a plain function dependency would cost every request a trip through the thread
    pool, for no I/O."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _known_query_params(route, dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ApiProblem(
            422,
            "Invalid request",
            f"unknown query parameter {unknown[0]!r}; this route takes "
            f"{', '.join(sorted(known)) or 'no query parameters'}",
            field=unknown[0],
            slug="validation-error",
        )


# Kept on the route object itself: routes compare by value (no weak dictionary can hold
# them) and go with their app.
_KNOWN_QUERY_PARAMS = "_spectra_known_query_params"


def _known_query_params(route: Any, dependant: Any) -> frozenset[str]:
    """The route's query parameter names, collected once per route."""
    known: frozenset[str] | None = getattr(route, _KNOWN_QUERY_PARAMS, None)
    if known is None:
        known = frozenset(param.alias for param in _all_query_params(dependant))
        setattr(route, _KNOWN_QUERY_PARAMS, known)
    return known


def _all_query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for sub in dependant.dependencies:
        params.extend(_all_query_params(sub))
    return params


def _id_description(kind: str) -> str:
    noun = ID_KINDS[kind].noun
    return f"{noun} id (a UUID), or a unique prefix of at least {MIN_PREFIX} of its characters"


async def resolve_id_or_problem(
    request: Request, kind: str, name: str, value: str, principal: Principal
) -> str:
    """The full id of the one ``kind`` record visible to ``principal`` that ``value`` names by
    id or unique prefix. A malformed value is a 422 saying what an id looks like (or a 405
    where the path is another route's literal path); an ambiguous prefix a 422 listing the
    matches; no match a 404. A full id costs no query (the route's own read answers 404)."""
    try:
        text = normalised_id(kind, value)
        if is_full_id(text):
            return text
        store: Store = request.app.state.store
        owner = principal.visible_owner
        resolved: str = await run_in_threadpool(store.resolve_id, kind, text, owner)
        return resolved
    except AmbiguousIdError as error:
        raise ApiProblem(
            422,
            "Ambiguous id",
            str(error),
            field=name,
            slug="ambiguous-id",
            extra={"matches": error.matches},
        ) from None
    except MalformedIdError as error:
        # "GET /v1/jobs/upload" met the {job_id} route only because no GET route has that
        # literal path: the path names the upload route, the method is wrong.
        literal = allowed_methods(request, literal_only=True)
        if literal:
            raise ApiProblem(
                405,
                "Method not allowed",
                f"{request.method} is not allowed on {request.url.path}; use {', '.join(literal)}.",
                slug="method-not-allowed",
                headers={"Allow": ", ".join(literal)},
            ) from None
        raise ApiProblem(422, "Invalid id", str(error), field=name, slug="invalid-id") from None


def resolved_id(kind: str, name: str, *, in_query: bool = False, required: bool = True) -> Any:
    """A dependency giving the full id that the path (or query) parameter ``name`` names by id
    or by unique prefix (the 8-character ids the tables print): see resolve_id_or_problem."""
    description = _id_description(kind)
    source = Query(description=description) if in_query else Path(description=description)
    annotation = Annotated[str, source] if required else Annotated[str | None, source]

    async def resolve(request: Request, principal: Principal, value: str | None) -> str | None:
        if value is None:
            return None
        return await resolve_id_or_problem(request, kind, name, value, principal)

    return Depends(_named_dependency(resolve, name, annotation, required))


def resolved_ids(kind: str, name: str, *, max_items: int) -> Any:
    """As ``resolved_id`` for a repeated query parameter (``?job=A&job=B``): each value an id
    or a unique prefix, given back as full ids in the order asked."""
    description = _id_description(kind) + "; repeat the parameter for several"
    annotation = Annotated[
        list[str], Query(min_length=1, max_length=max_items, description=description)
    ]

    async def resolve(request: Request, principal: Principal, value: list[str]) -> list[str]:
        return [await resolve_id_or_problem(request, kind, name, v, principal) for v in value]

    return Depends(_named_dependency(resolve, name, annotation, True))


def _named_dependency(
    resolve: Callable[[Request, Principal, Any], Awaitable[Any]],
    name: str,
    annotation: Any,
    required: bool,
) -> Callable[..., Awaitable[Any]]:
    """``resolve`` as a dependency whose id parameter is spelt ``name`` (FastAPI binds
    parameters by name), with the caller's key authenticated."""

    async def dependency(request: Request, principal: Principal, **values: Any) -> Any:
        return await resolve(request, principal, values[name])

    parameters = [
        inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter(
            "principal",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[Principal, Depends(authenticate)],
        ),
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=annotation,
            default=inspect.Parameter.empty if required else None,
        ),
    ]
    dependency.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return dependency
