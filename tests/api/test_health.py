"""Readiness reports each dependency; production mode refuses the development secret."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.dispatch import CeleryDispatcher
from services.config import DEFAULT_SECRET, Settings
from services.store import Store
from tests.api.conftest import make_settings

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def test_readyz_is_503_naming_what_is_unreachable(store: Store, settings: Settings) -> None:
    broken = settings.model_copy(update={"broker_url": CLOSED_PORT_REDIS})
    app = create_app(settings=broken, store=store, dispatcher=CeleryDispatcher(broken))
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and "unreachable" in checks["broker"]

    no_database = Store("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    app = create_app(settings=settings, store=no_database, dispatcher=CeleryDispatcher(settings))
    with TestClient(app) as client:
        checks = client.get("/readyz").json()["checks"]
    assert "unreachable" in checks["database"] and checks["broker"] == "ok"


def test_production_mode_refuses_the_development_secret(pg_url: str) -> None:
    unsafe = make_settings(pg_url, mode="production", secret_key=DEFAULT_SECRET)
    with pytest.raises(RuntimeError, match="SPECTRA_SECRET_KEY"):
        create_app(settings=unsafe, store=Store(pg_url))
    safe = make_settings(pg_url, mode="production", secret_key="x" * 48)
    assert create_app(settings=safe, store=Store(pg_url)).title == "latent-spectra"
