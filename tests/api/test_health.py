"""Readiness reports each dependency; production mode refuses the development secret."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from services.config import DEFAULT_SECRET, Settings
from services.dispatch import CeleryDispatcher
from services.store import Store
from tests.api.conftest import make_settings

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"
REPO = Path(__file__).resolve().parents[2]


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


def test_only_a_serving_process_leaves_its_startup_objects_out_of_collections(
    store: Store, settings: Settings, pg_url: str
) -> None:
    """`spectra serve` builds its app with serving_app, which freezes what startup loaded (a
    full collection over torch's objects stalled every request for 130 ms); an app built for
    tests or embedding leaves the process's collector alone."""
    before = gc.get_freeze_count()
    with TestClient(create_app(settings=settings, store=store)) as client:
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == before

    program = (
        "import gc\n"
        "from fastapi.testclient import TestClient\n"
        "from api.app import serving_app\n"
        "with TestClient(serving_app()) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "    print(gc.get_freeze_count())\n"
    )
    env = {
        **os.environ,
        "SPECTRA_DATABASE_URL": pg_url,
        "SPECTRA_MODE": "development",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 100_000  # torch and the app, at least
