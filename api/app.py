"""The FastAPI application: ``create_app`` wires settings, store, dispatcher, errors and routes.

Settings are read once, at the edge (``serving_app``, what ``spectra serve`` runs), and passed
in; nothing below reads the environment. Tests inject a Store on a fresh database and an
in-process dispatcher; without them the store is at ``settings.database_url`` and Celery on
``settings.broker_url``.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from api.auth import VerifiedKeyCache
from api.deps import reject_unknown_query_parameters
from api.errors import install_error_handlers
from api.limits import BodySizeLimitMiddleware
from api.metrics import ApiMetrics, MetricsMiddleware
from api.routes import (
    campaigns,
    compare,
    health,
    jobs,
    latent_sets,
    models,
    optimisations,
    plots,
    spectra,
)
from api.ui.app import UI_PREFIX, create_ui
from services.config import Settings
from services.dispatch import CeleryDispatcher, Dispatcher

API_VERSION = "1"


def create_app(
    settings: Settings,
    store: Any = None,
    dispatcher: Dispatcher | None = None,
    *,
    freeze_gc: bool = False,
) -> FastAPI:
    # Refuse to come up at all in production with the development secret.
    settings.check_production_ready()
    if store is None:
        from services.store import Store

        store = Store(settings.database_url)
    if dispatcher is None:
        dispatcher = CeleryDispatcher(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Status polls and spectra queries then wait on PostgreSQL without a thread each.
        await store.open_async_reads()
        if freeze_gc:
            # A serving process: torch's meta-device kernels (the loader's contract check of a
            # large model, services/geometry/models/contract.py) are imported now, once, not
            # by the first submission that needs them.
            from services.geometry.models.contract import warm_meta_device

            warm_meta_device()
            # What is loaded by now (torch, the app: hundreds of thousands of objects) lives
            # as long as the process; a full collection walking it stalls every in-flight
            # request (bench/bench_api.py shows it in the p99). Collected once, then
            # left out of later collections. Process-wide, so only for a serving process.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await store.close_async_reads()

    app = FastAPI(
        lifespan=lifespan,
        title="latent-spectra",
        version=API_VERSION,
        description="Compute, store and compare spectra of generative models' latent spaces.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.dispatcher = dispatcher
    app.state.metrics = ApiMetrics()
    app.state.key_cache = VerifiedKeyCache()

    install_error_handlers(app)
    # Added last = outermost: metrics see every request, the size limit runs before the body
    # is read by anything.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        max_json_bytes=settings.max_json_bytes,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    strict_query = [Depends(reject_unknown_query_parameters)]
    app.include_router(health.router, dependencies=strict_query)
    for module in (jobs, models, latent_sets, spectra, compare, plots, campaigns, optimisations):
        app.include_router(module.router, prefix="/v1", dependencies=strict_query)
    app.mount(UI_PREFIX, create_ui(settings, store, dispatcher))
    return app


def serving_app() -> FastAPI:
    """The app as ``spectra serve`` runs it, one per server process: its settings read here from
    the environment (the API's one place that reads them), and what the process holds at
    startup left out of garbage collection (see create_app)."""
    return create_app(Settings(), freeze_gc=True)
