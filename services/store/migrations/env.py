"""Alembic environment for the result store.

The connection comes from ``config.attributes["connection"]`` when the Store migrates itself,
else from ``sqlalchemy.url`` in the config, else from SPECTRA_DATABASE_URL (services.config).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from services.store.engine import broken_foreign_keys, make_engine, sqlite_foreign_keys_off
from services.store.models import Base

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from services.config import get_settings

        url = get_settings().database_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn, sqlite_foreign_keys_off(conn):
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
                if broken := broken_foreign_keys(conn):
                    raise RuntimeError(f"a migration left references that point nowhere: {broken}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
