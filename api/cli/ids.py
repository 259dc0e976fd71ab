"""Ids as a user types them: the embedded commands accept what the tables print.

Every embedded command that takes a job, spectrum, campaign or comparison id passes it through
``resolve`` before reading the store, so that a unique prefix (the 8 characters the tables
show) names the record as the server's routes accept it. The prefix search itself is the
store's (``Store.resolve_id(kind, prefix, owner)``, raising an ambiguity error that lists the
matches); until it is on the Store this is the one place that will call it, and ids are taken
whole.
"""

from __future__ import annotations

from typing import Any, Literal

IdKind = Literal["job", "spectrum", "campaign", "comparison"]


def resolve(store: Any, kind: IdKind, text: str) -> str:
    """The full id of the ``kind`` record ``text`` names (a whole id, or a unique prefix)."""
    return text
