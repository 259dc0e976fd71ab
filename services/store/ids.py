"""Ids by unique prefix: the 8-character ids the tables print name a record everywhere.

One table (``ID_KINDS``) says, per kind of record, which table holds its ids and how its owner
is found, so a new kind (a stored comparison) is one line. A full id is returned as given
without a query; a prefix is matched among the records the owner may see, so another owner's
record is never named, counted or listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select

from .comparisons import COMPARISONS
from .connection import StoreConnection, retry_read
from .errors import InvalidDataError, NotFoundError
from .models import Base
from .tables import JOBS, LATENT_SETS, SPECTRA

# At least this many characters make a prefix: shorter ones would match most of a table.
MIN_PREFIX = 4
# An ambiguous prefix lists at most this many of its matches.
MAX_LISTED_MATCHES = 10
ID_LENGTH = 36
_FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIX = re.compile(r"^[0-9a-f-]+$")


@dataclass(frozen=True)
class IdKind:
    """Where the ids of one kind of record live: ``id_column``, and ``visible(owner)`` selecting
    the ids that owner may see (``owner`` None: every owner's)."""

    noun: str
    id_column: ColumnElement[str]
    visible: Callable[[str | None], Select[Any]]


def _owned(noun: str, id_column: ColumnElement[str], owner_column: ColumnElement[str]) -> IdKind:
    def visible(owner: str | None) -> Select[Any]:
        query = select(id_column)
        return query if owner is None else query.where(owner_column == owner)

    return IdKind(noun, id_column, visible)


def _visible_spectra(owner: str | None) -> Select[Any]:
    # A spectrum belongs to its job's owner.
    query = select(SPECTRA.c.id)
    if owner is None:
        return query
    return query.join(JOBS, JOBS.c.id == SPECTRA.c.job_id).where(JOBS.c.owner == owner)


_CAMPAIGNS = Base.metadata.tables["campaigns"]

ID_KINDS: dict[str, IdKind] = {
    "job": _owned("job", JOBS.c.id, JOBS.c.owner),
    "spectrum": IdKind("spectrum", SPECTRA.c.id, _visible_spectra),
    "campaign": _owned("campaign", _CAMPAIGNS.c.id, _CAMPAIGNS.c.owner),
    "latent_set": _owned("latent set", LATENT_SETS.c.id, LATENT_SETS.c.owner),
    # Optimisation jobs are jobs: their ids are job ids.
    "optimisation": _owned("optimisation", JOBS.c.id, JOBS.c.owner),
    "comparison": _owned("comparison", COMPARISONS.c.id, COMPARISONS.c.owner),
}


class MalformedIdError(InvalidDataError):
    """Not an id nor a prefix of one."""

    def __init__(self, kind: str, value: str) -> None:
        noun = ID_KINDS[kind].noun
        shown = value if len(value) <= 40 else value[:40] + "…"
        super().__init__(
            f"{shown!r} is not a {noun} id: an id is a UUID such as "
            f"3f2b9c1e-8a47-4d2e-9b1a-5c6d7e8f9a0b, or a unique prefix of one of at least "
            f"{MIN_PREFIX} characters (the 8-character ids the tables print)"
        )


class AmbiguousIdError(InvalidDataError):
    """A prefix that more than one visible record's id starts with; ``matches`` lists them."""

    def __init__(self, kind: str, prefix: str, matches: list[str]) -> None:
        noun = ID_KINDS[kind].noun
        listed = ", ".join(matches[:MAX_LISTED_MATCHES])
        more = "" if len(matches) <= MAX_LISTED_MATCHES else ", …"
        super().__init__(
            f"{prefix!r} is the start of several {noun} ids ({listed}{more}); "
            "give more characters of the one you mean"
        )
        self.matches = matches[:MAX_LISTED_MATCHES]


def normalised_id(kind: str, value: str) -> str:
    """``value`` lower-cased and checked to be an id or a prefix of one (MalformedIdError)."""
    if kind not in ID_KINDS:
        raise ValueError(f"unknown id kind {kind!r}; kinds are {', '.join(ID_KINDS)}")
    text = value.strip().lower()
    if not (MIN_PREFIX <= len(text) <= ID_LENGTH) or not _PREFIX.match(text):
        raise MalformedIdError(kind, value)
    return text


def is_full_id(value: str) -> bool:
    return _FULL_ID.match(value) is not None


class IdStore(StoreConnection):
    @retry_read
    def resolve_id(self, kind: str, prefix: str, owner: str | None = None) -> str:
        """The full id of the one ``kind`` record visible to ``owner`` whose id starts with
        ``prefix``. A full id comes back as given, unchecked (the read that follows answers
        404 for it). MalformedIdError, NotFoundError, or AmbiguousIdError listing matches."""
        text = normalised_id(kind, prefix)
        if is_full_id(text):
            return text
        id_kind = ID_KINDS[kind]
        # Only hex digits and dashes reach here: nothing in the pattern is a LIKE wildcard.
        query = (
            id_kind.visible(owner)
            .where(id_kind.id_column.like(f"{text}%"))
            .order_by(id_kind.id_column)
            .limit(MAX_LISTED_MATCHES + 1)
        )
        with self._read() as conn:
            matches = [str(row[0]) for row in conn.execute(query)]
        if not matches:
            raise NotFoundError(f"no {ID_KINDS[kind].noun} id starts with {text!r}")
        if len(matches) > 1:
            raise AmbiguousIdError(kind, text, matches)
        return matches[0]
