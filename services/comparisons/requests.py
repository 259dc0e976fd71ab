"""What a comparison is asked for: the selection and request schemas (HTTP and CLI share them)
and the one parser of a selection written as text."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.comparability import DIRECTION_METHODS, SEFA_DISTANCE
from services.patterns import TEXT_PATTERN

# Homogeneity is O(N^2 k d): beyond this many positions (or the pairs the settings allow) a
# selection uses a seeded random sample of its positions.
DEFAULT_MAX_POSITIONS = 100
MAX_POSITIONS = 500
# Eigenvectors read per spectrum for homogeneity and the average metric.
MAX_VECTORS = 128
MAX_SELECTIONS = 8
MAX_CAMPAIGN_SELECTIONS = 32
# An id or the unique prefix the tables print; resolved against the owner's jobs.
JOB_ID_OR_PREFIX = r"^[0-9a-fA-F][0-9a-fA-F-]{3,35}$"
KNOWN_DISTANCES = ("mse", "lpips-alex", "lpips-vgg", "lpips-squeeze")


class Selection(BaseModel):
    """A job id, or a (model, distance, method) triple (directions have no distance), with
    optional filters that pick one comparable group."""

    model_config = ConfigDict(extra="forbid")
    job_id: str | None = Field(
        default=None,
        pattern=JOB_ID_OR_PREFIX,
        description="a job id, or a unique prefix of one (at least 4 characters)",
    )
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    distance: str | None = Field(default=None, min_length=1, max_length=100, pattern=TEXT_PATTERN)
    method: str | None = Field(default=None, min_length=1, max_length=50, pattern=TEXT_PATTERN)
    label: str | None = Field(default=None, max_length=100, pattern=TEXT_PATTERN)
    dtype: Literal["float32", "float64"] | None = Field(default=None, description="filter")
    kept: str | None = Field(
        default=None,
        pattern=r"^(all|top-[1-9][0-9]*)$",
        description='filter: "all" eigenpairs or "top-K"',
    )
    space: str | None = Field(
        default=None,
        max_length=10,
        pattern=TEXT_PATTERN,
        description="filter: latent space (z, w, w+)",
    )
    include_partial: bool = Field(
        default=False, description="also use spectra of cancelled, failed or running jobs"
    )

    @model_validator(mode="after")
    def _job_or_triple(self) -> Selection:
        by_job = self.job_id is not None
        by_triple = self.model is not None or self.method is not None or self.distance is not None
        if by_job == by_triple:
            raise ValueError('give either "job_id" or "model" and "method" (and "distance")')
        if by_triple and (self.model is None or self.method is None):
            raise ValueError('a selection by model needs "model" and "method"')
        if self.method in DIRECTION_METHODS and self.distance not in (None, SEFA_DISTANCE):
            raise ValueError(
                f"{self.method} directions have no distance: select them as "
                f'{self.model}::{self.method} (or {{"model": ..., "method": "{self.method}"}})'
            )
        return self

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.job_id is not None:
            return f"job {self.job_id[:8]}"
        return ":".join([self.model or "", self.distance or "", self.method or ""])


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selections: list[Selection] = Field(min_length=1, max_length=MAX_SELECTIONS)
    k: int = Field(default=10, ge=1, le=MAX_VECTORS, description="top-k for the alignments")
    max_positions: int = Field(
        default=DEFAULT_MAX_POSITIONS,
        ge=2,
        le=MAX_POSITIONS,
        description="the most positions a homogeneity matrix uses; a larger selection (or one "
        "whose pairs exceed the server's limit) uses a seeded random sample of its positions",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**63 - 1,
        description="seed of the homogeneity's sample of positions (recorded)",
    )
    transport: Literal["w+->w", "w->w+", "w->z"] | None = Field(
        default=None,
        description="align members of different spaces of one model through this exact move "
        "(docs/conventions.md); without it they are not aligned",
    )


class ComparisonRequest(CompareRequest):
    """A stored comparison (``POST /v1/comparisons``): what to compare and which figures to
    keep with it."""

    formats: list[Literal["png", "svg", "pdf"]] = Field(
        default=["png"], min_length=1, max_length=3, description="figure formats to store"
    )
    normalise: Literal["none", "top", "trace"] | None = Field(
        default=None,
        description="spectrum figure as λ, λ/λ₁ or λ/trace (default: λ/λ₁ when Hessians and "
        "directions are drawn together, else λ)",
    )
    montages: bool = Field(
        default=False, description="also render a montage per selection (loads each generator)"
    )


SELECTION_FILTERS = ("dtype", "kept", "space", "include_partial")


def parse_selection(text: str) -> Selection:
    """``JOB_ID``, ``MODEL:DISTANCE:METHOD``, or directions ``MODEL::METHOD`` /
    ``MODEL:METHOD`` (sefa, ganspace). The model may itself contain colons. Any of them may end
    with filters, ``@kept=top-20,dtype=float32,space=w,include_partial=true``: every narrowing
    a refusal suggests can be written on the command line."""
    text, _, filters = text.partition("@")
    narrowing = _filters(text, filters) if filters else {}
    return _parse_target(text).model_copy(update=narrowing)


def _filters(text: str, filters: str) -> dict[str, object]:
    narrowing: dict[str, object] = {}
    for item in filters.split(","):
        key, _, value = item.partition("=")
        if key not in SELECTION_FILTERS or not value:
            raise ValueError(
                f"selection {text!r}: filter {item!r} is not KEY=VALUE with KEY one of "
                f"{', '.join(SELECTION_FILTERS)} (e.g. {text}@kept=top-20,dtype=float32)"
            )
        narrowing[key] = (
            value.lower() in ("1", "true", "yes") if key == "include_partial" else value
        )
    # Checked as the JSON request is: a bad value is refused with the field's rule.
    Selection.model_validate({"job_id": "0000", **narrowing})
    return narrowing


def _parse_target(text: str) -> Selection:
    if ":" not in text:
        return Selection(job_id=text)
    head, _, method = text.rpartition(":")
    if method in DIRECTION_METHODS:
        model = head.removesuffix(":")
        if head.endswith(":") and not model:
            raise ValueError(f"selection {text!r}: name the model, e.g. dcgan-faces::{method}")
        last = model.rpartition(":")[2]
        if not head.endswith(":") and last in KNOWN_DISTANCES:
            raise ValueError(
                f"selection {text!r}: {method} directions have no distance; write "
                f"{model.rpartition(':')[0]}::{method}"
            )
        return Selection(model=model, method=method)
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and all(parts):
        return Selection(model=parts[0], distance=parts[1], method=parts[2])
    raise ValueError(
        f"selection {text!r}: use a job id, MODEL:DISTANCE:METHOD or, for directions, MODEL::sefa"
    )
