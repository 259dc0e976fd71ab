"""The store tests run once per backend: ``store`` on PostgreSQL and on SQLite, ``pg_store``
on PostgreSQL only (each a migrated database of the test's own)."""

from __future__ import annotations

from tests.support.stores import store_fixture

store = store_fixture("migrated_db_url")
pg_store = store_fixture("migrated_pg_url", name="pg_store")
