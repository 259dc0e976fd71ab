"""Shared fixtures: real PostgreSQL and Redis on this machine, never mocks.

A missing service is a failure, not a skip: CI must prove the real thing works.
Each test that asks for a database gets its own, created here and dropped afterwards: an
empty one (``pg_url``, for the migration tests) or a clone of a database migrated once per
session (``migrated_pg_url``), which is what the other tests' stores start from: ``store`` (on
PostgreSQL; a module that needs another backend declares its own with
``tests.support.stores.store_fixture``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

# numpy's OpenBLAS starts a busy-waiting thread per core. Beside torch's own threads and the
# other test processes (`make test` runs two per core) they spin against each other on
# a small machine, and a small QR then takes many times its time. One BLAS thread per
# test process; set before anything imports numpy (pytest loads this file first).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# torch's OpenMP threads spin the same way: under pytest-xdist each process gets its share of
# the cores (at least one thread) instead of every core to each.
_processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _processes > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _processes)))

from hypothesis import settings as hypothesis_settings  # noqa: E402

from tests.support.stores import store_fixture  # noqa: E402  (imports numpy: after the setting)

# Hypothesis keeps no example database and its caches outside the work tree (it would write
# .hypothesis/ there): a test writes only under temporary directories.
hypothesis_settings.register_profile("no-database", database=None)
hypothesis_settings.load_profile("no-database")
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "latent-spectra-hypothesis")
)

PG_ADMIN_DSN = os.environ.get(
    "SPECTRA_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SPECTRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL is required for this test and is not reachable at {PG_ADMIN_DSN}: {error}"
        )


def sqlalchemy_pg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


def create_database(name: str, template: str | None = None) -> None:
    """CREATE DATABASE, empty or as a copy of ``template`` (a file-level copy on the server:
    much faster than running every migration again)."""
    with _pg_admin() as admin:
        clause = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{clause}')


def drop_database(name: str) -> None:
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_template() -> Iterator[str]:
    """A database migrated to head once per test session, to clone (never used directly:
    a template must have no connections while it is copied)."""
    from services.store import Store

    name = f"spectra_template_{uuid.uuid4().hex[:12]}"
    create_database(name)
    try:
        with Store(sqlalchemy_pg_url(name)) as store:
            store.migrate()
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, EMPTY PostgreSQL database for one test (SQLAlchemy URL): for the tests of the
    migrations themselves."""
    name = f"spectra_test_{uuid.uuid4().hex[:12]}"
    create_database(name)
    try:
        yield sqlalchemy_pg_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def migrated_pg_url(migrated_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database already at the head revision, cloned from the session's
    migrated template (SQLAlchemy URL)."""
    name = f"spectra_test_{uuid.uuid4().hex[:12]}"
    create_database(name, template=migrated_template)
    try:
        yield sqlalchemy_pg_url(name)
    finally:
        drop_database(name)


@pytest.fixture(scope="module")
def module_pg_url(migrated_template: str) -> Iterator[str]:
    """One migrated PostgreSQL database for a whole module, for tests that share a server or
    workers and build on each other's data (jobs keep them apart), cloned from the template."""
    name = f"spectra_test_{uuid.uuid4().hex[:12]}"
    create_database(name, template=migrated_template)
    try:
        yield sqlalchemy_pg_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for one test (SQLAlchemy URL)."""
    return f"sqlite:///{tmp_path / 'spectra.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once against each store backend (an empty database)."""
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url"))


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once against each store backend, its database already migrated on
    PostgreSQL (a clone of the template; SQLite files are migrated by the test's store)."""
    return str(
        request.getfixturevalue(
            "migrated_pg_url" if request.param == "postgresql" else "sqlite_url"
        )
    )


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is required for this test and is not reachable at {REDIS_URL}: {error}")
    return REDIS_URL


# The tests' default store: a migrated PostgreSQL database of the test's own.
store = store_fixture("migrated_pg_url")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that hold a slow test first, in their order, then the rest: `make test` hands
    whole modules to its processes in this order (pytest-xdist --dist loadfile), so the
    long ones start at once and the short ones fill the time beside them, instead of a long
    one starting last and the run waiting on it alone."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: order kept within
