"""Shared parameter types: ids are UUIDs, free text has no control characters.

Checked at the edge so that nothing malformed reaches the store (PostgreSQL text cannot even
hold a NUL byte): a bad id is a 422 naming the parameter, never a database error.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from api.errors import ApiProblem
from services.patterns import TEXT_PATTERN, UUID_PATTERN

JobIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="job id (UUID)")]
SpectrumIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="spectrum id (UUID)")]
LatentSetIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="latent set id (UUID)")]


def id_query(description: str) -> object:
    return Query(pattern=UUID_PATTERN, description=description)


def text_query(max_length: int = 200, description: str | None = None) -> object:
    return Query(min_length=1, max_length=max_length, pattern=TEXT_PATTERN, description=description)


def only_query(*names: str) -> Any:
    """A route dependency refusing query parameters the route does not take: a misspelt filter
    (``?modle=...``) would otherwise be ignored and the answer silently widened. Async, so the
    hot read routes do not take a worker thread for it."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            raise ApiProblem(
                422, "Unknown query parameter",
                f"unknown query parameter {', '.join(repr(u) for u in unknown)}; this route "
                f"takes {', '.join(names)}",
                field=unknown[0], slug="unknown-query-parameter",
            )  # fmt: skip

    return Depends(check)
