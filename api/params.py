"""Shared parameter types: ids are UUIDs, free text has no control characters.

Checked at the edge so that nothing malformed reaches the store (PostgreSQL text cannot even
hold a NUL byte): a bad id is a 422 naming the parameter, never a database error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from services.patterns import TEXT_PATTERN, UUID_PATTERN

JobIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="job id (UUID)")]
SpectrumIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="spectrum id (UUID)")]
LatentSetIdPath = Annotated[str, Path(pattern=UUID_PATTERN, description="latent set id (UUID)")]


def id_query(description: str) -> object:
    return Query(pattern=UUID_PATTERN, description=description)


def text_query(max_length: int = 200, description: str | None = None) -> object:
    return Query(min_length=1, max_length=max_length, pattern=TEXT_PATTERN, description=description)
