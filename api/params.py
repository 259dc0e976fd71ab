"""Shared parameter types: ids (a UUID or a unique prefix of one), free text without control
characters.

Checked at the edge so that nothing malformed reaches the store (PostgreSQL text cannot even
hold a NUL byte): a bad id is a 422 naming the parameter and saying what an id looks like,
never a database error. An id parameter arrives in the route as the full id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from api.deps import resolved_id
from services.patterns import TEXT_PATTERN

__all__ = [
    "TEXT_PATTERN",
    "CampaignIdPath",
    "ComparisonIdPath",
    "CodeFromQuery",
    "SpectrumIdQuery",
    "JobIdPath",
    "JobIdQuery",
    "LatentSetIdPath",
    "SpectrumIdPath",
    "text_query",
]

JobIdPath = Annotated[str, resolved_id("job", "job_id")]
SpectrumIdPath = Annotated[str, resolved_id("spectrum", "spectrum_id")]
LatentSetIdPath = Annotated[str, resolved_id("latent_set", "set_id")]
CampaignIdPath = Annotated[str, resolved_id("campaign", "campaign_id")]
ComparisonIdPath = Annotated[str, resolved_id("comparison", "comparison_id")]
# ?spectrum_id= / ?code_from= on the figure routes.
SpectrumIdQuery = Annotated[str, resolved_id("spectrum", "spectrum_id", in_query=True)]
CodeFromQuery = Annotated[
    str | None, resolved_id("spectrum", "code_from", in_query=True, required=False)
]
# ?job_id= on listings: optional, by id or prefix like the paths.
JobIdQuery = Annotated[str | None, resolved_id("job", "job_id", in_query=True, required=False)]


def text_query(max_length: int = 200, description: str | None = None) -> object:
    return Query(min_length=1, max_length=max_length, pattern=TEXT_PATTERN, description=description)
