"""Request-scoped access to what ``create_app`` wired: settings, store, dispatcher, metrics."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.dispatch import Dispatcher
from api.metrics import ApiMetrics
from services.config import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Any:
    return request.app.state.store


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics
