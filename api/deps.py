"""Request-scoped access to what ``create_app`` wired: settings, store, dispatcher, metrics.

Each has a typed ``Annotated`` alias for route signatures (``store: StoreDep``), so a route
declares what it uses and its parameters are typed without repeating ``Depends``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.errors import ApiProblem
from api.metrics import ApiMetrics
from services.config import Settings
from services.dispatch import Dispatcher
from services.geometry import list_models
from services.geometry.controls import base_model_name
from services.store import Store


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
