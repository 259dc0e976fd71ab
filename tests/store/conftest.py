"""Store fixtures: a migrated Store on a fresh database (PostgreSQL and SQLite), plus helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.store import Store


@pytest.fixture
def store(migrated_db_url: str) -> Iterator[Store]:
    """A migrated store on its own fresh database, once per backend."""
    with Store(migrated_db_url) as migrated:
        migrated.migrate()
        yield migrated


@pytest.fixture
def pg_store(migrated_pg_url: str) -> Iterator[Store]:
    with Store(migrated_pg_url) as migrated:
        migrated.migrate()
        yield migrated
