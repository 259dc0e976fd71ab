"""A migrated Store on a test's own database: one definition of the fixture, for each backend.

    store = store_fixture("sqlite_url")          # in a test module: that module's `store`

The URL fixtures (tests/conftest.py) give each test a fresh database: ``migrated_pg_url`` (a
clone of one migrated once per session), ``sqlite_url``, ``migrated_db_url`` (both backends).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from services.store import Store


@contextmanager
def migrated_store(url: str) -> Iterator[Store]:
    """A Store at the head revision on ``url``, closed afterwards."""
    with Store(url) as store:
        store.migrate()
        yield store


def store_fixture(url_fixture: str, name: str = "store") -> Callable[..., Any]:
    """A function-scoped fixture ``name``: a migrated Store on the database ``url_fixture``
    gives. The URL fixture is a declared argument (not looked up at run time), so a
    parametrised one such as ``migrated_db_url`` parametrises the tests that use the store."""

    def store(**urls: str) -> Iterator[Store]:
        with migrated_store(urls[url_fixture]) as migrated:
            yield migrated

    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    store.__signature__ = inspect.Signature([inspect.Parameter(url_fixture, keyword)])  # type: ignore[attr-defined]
    store.__doc__ = f"A migrated Store on the test's own database ({url_fixture})."
    return pytest.fixture(name=name)(store)
