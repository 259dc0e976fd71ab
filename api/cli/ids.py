"""Ids as a user types them: the embedded commands accept what the tables print.

Every embedded command that takes a job, spectrum, campaign or comparison id passes it through
``resolve`` before reading the store, so that a unique prefix (the 8 characters the tables
show) names the record, as the server's routes accept it. The search is the store's
(``Store.resolve_id``): a prefix that matches several records is refused listing them, one that
matches none is a NotFoundError, and either is printed as one line (exit 2).
"""

from __future__ import annotations

from typing import Any, Literal

IdKind = Literal["job", "spectrum", "campaign", "comparison"]


def resolve(store: Any, kind: IdKind, text: str) -> str:
    """The full id of the ``kind`` record ``text`` names (a whole id, or a unique prefix),
    among every owner's (the embedded commands read the whole database)."""
    return str(store.resolve_id(kind, text, None))
