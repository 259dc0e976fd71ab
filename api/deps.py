"""Request-scoped access to what ``create_app`` wired: settings, store, dispatcher, metrics.

Each has a typed ``Annotated`` alias for route signatures (``store: StoreDep``), so a route
declares what it uses and its parameters are typed without repeating ``Depends``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from api.errors import ApiProblem
from api.metrics import ApiMetrics
from services.config import Settings
from services.dispatch import Dispatcher
from services.geometry import list_models
from services.geometry.models.controls import base_model_name
from services.store import Store
from services.worker_devices import device_is_served


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


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
    lookup = getattr(dispatcher, "devices", None)
    available = lookup() if lookup is not None else None
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


def reject_unknown_query_parameters(request: Request) -> None:
    """A query parameter the route does not take is refused (422 naming it), not ignored: a
    misspelt filter (``?staus=failed``) would otherwise silently widen the selection."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in _all_query_params(dependant)}
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


def _all_query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for sub in dependant.dependencies:
        params.extend(_all_query_params(sub))
    return params
