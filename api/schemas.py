"""Response bodies of the HTTP API, and the conversions from store records.

Request bodies reuse the service's own definitions (``JobSpec``); only what the API answers
is defined here, so the OpenAPI document says exactly what comes back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from services.store import (
    JobProgress,
    JobRecord,
    LatentFailureRecord,
    LatentSetRecord,
    SpectrumRecord,
    SpectrumSummaryRecord,
)


def json_response(body: BaseModel) -> Response:
    """``body`` as JSON, encoded once by pydantic. A route that returns its model instead has
    FastAPI validate it against the response_model again (in a worker thread, for a sync
    route) before encoding it: a second pass over a body that was built from its own model.
    The route keeps declaring ``response_model`` for the OpenAPI document."""
    return Response(body.model_dump_json().encode(), media_type="application/json")


class Page(BaseModel):
    limit: int
    offset: int
    count: int = Field(description="items in this page")
    next_offset: int | None = Field(description="offset of the next page; null on the last page")


def page_of(items: list[Any], limit: int, offset: int) -> Page:
    return Page(
        limit=limit,
        offset=offset,
        count=len(items),
        next_offset=offset + limit if len(items) == limit else None,
    )


class JobProgressView(BaseModel):
    planned: int
    done: int
    failed: int
    fraction: float = Field(description="(done + failed) / planned")
    rate_per_s: float | None = Field(description="latents finished per second since the start")
    eta_s: float | None = Field(description="seconds to go at the current rate; null if unknown")


class JobTimings(BaseModel):
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None


class LatentFailureView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    latent_index: int
    reason: str


class JobView(BaseModel):
    """A job as listed; read from its JobRecord (``from_attributes``)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    owner: str
    status: str
    model: str | None
    n_latents: int
    n_done: int
    n_failed: int
    cancel_requested: bool
    error: str | None
    latent_set_id: str | None = None
    spec: dict[str, Any] = Field(
        description="the spec as submitted; codes given as values (or uploaded) appear as a "
        'link to their latent set\'s .npy and their shape: {"codes": URL, "shape": [n, d]}'
    )
    created_at: datetime

    @model_validator(mode="after")
    def _codes_as_a_link(self) -> JobView:
        # Up to 10,000 x 8,192 numbers would otherwise come back in every status poll.
        self.spec = spec_with_codes_linked(self.spec, self.latent_set_id)
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def links(self) -> dict[str, str]:
        return job_links(self.id)


def spec_with_codes_linked(spec: dict[str, Any], latent_set_id: str | None) -> dict[str, Any]:
    """``spec`` with explicit codes replaced by the link to the latent set that stores them."""
    latents = spec.get("latents")
    if not isinstance(latents, dict) or not isinstance(latents.get("values"), list):
        return spec
    values = latents["values"]
    width = len(values[0]) if values and isinstance(values[0], list) else 0
    linked: dict[str, Any] = {"shape": [len(values), width]}
    if latent_set_id is not None:
        linked["codes"] = f"/v1/latent-sets/{latent_set_id}/codes.npy"
    return {**spec, "latents": linked}


class JobDetail(JobView):
    resolved: dict[str, Any]
    progress: JobProgressView
    timings: JobTimings
    failures: list[LatentFailureView]


class JobSubmitted(JobView):
    created: bool = Field(description="false when an identical job already existed")


class JobList(BaseModel):
    items: list[JobView]
    page: Page


def job_links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {
        "self": base,
        "cancel": f"{base}/cancel",
        "spectra": f"/v1/spectra?job_id={job_id}",
        "export": f"{base}/export.npz",
    }


def job_view_fields(job: JobRecord) -> dict[str, Any]:
    """The JobView fields of a record, to build a view that adds its own (JobSubmitted)."""
    return JobView.model_validate(job).model_dump(exclude={"links"})


def job_detail(
    job: JobRecord, progress: JobProgress, failures: list[LatentFailureRecord]
) -> JobDetail:
    finished = progress.done + progress.failed
    return JobDetail(
        **job_view_fields(job),
        resolved=job.resolved,
        progress=JobProgressView(
            planned=progress.planned,
            done=progress.done,
            failed=progress.failed,
            fraction=finished / progress.planned if progress.planned else 0.0,
            rate_per_s=progress.rate,
            eta_s=progress.eta_s,
        ),
        timings=JobTimings(
            created_at=job.created_at,
            started_at=progress.started_at,
            finished_at=progress.finished_at,
            elapsed_s=progress.elapsed_s,
        ),
        failures=[LatentFailureView.model_validate(f) for f in failures],
    )


class LatentSetView(BaseModel):
    """A latent set's metadata; read from its LatentSetRecord (``from_attributes``)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    source: str
    model: str | None
    seed: int | None
    n: int
    d: int
    sha256: str
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def links(self) -> dict[str, str]:
        return {
            "self": f"/v1/latent-sets/{self.id}",
            "download": f"/v1/latent-sets/{self.id}/codes.npy",
        }


class LatentSetList(BaseModel):
    items: list[LatentSetView]
    page: Page


def latent_set_view(record: LatentSetRecord) -> LatentSetView:
    return LatentSetView.model_validate(record)


class SpectrumSummary(BaseModel):
    """A spectrum as listed; read from its record (``from_attributes``)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    job_id: str
    latent_index: int
    model: str
    distance: str
    method: str
    dtype: str
    k: int
    d: int
    top_eigenvalue: float | None
    trace: float | None
    dims_99: int | None
    dims_999: int | None
    participation_ratio: float | None
    wall_time_s: float | None
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def links(self) -> dict[str, str]:
        return {
            "self": f"/v1/spectra/{self.id}",
            "eigenvectors": f"/v1/spectra/{self.id}/eigenvectors",
            "job": f"/v1/jobs/{self.job_id}",
        }


class SpectrumDetail(SpectrumSummary):
    eigenvalues: list[float] = Field(description="descending")
    code: list[float] | None
    diagnostics: dict[str, Any]


class SpectrumList(BaseModel):
    items: list[SpectrumSummary]
    page: Page


class Eigenvectors(BaseModel):
    spectrum_id: str
    d: int
    k: int
    dtype: str
    layout: Literal["columns"] = Field(
        default="columns", description="eigenvector j is column j: vectors[i][j] is its component i"
    )
    shape: tuple[int, int] = Field(description="(d, k), as np.array(vectors).shape and the .npy")
    eigenvalues: list[float] = Field(description="descending, matching the columns")
    vectors: list[list[float]] = Field(
        description="the (d, k) matrix of eigenvectors as columns, row by row (d rows of k), "
        "the orientation of the .npy, the published export and the Python API"
    )


def spectrum_summary(record: SpectrumRecord | SpectrumSummaryRecord) -> SpectrumSummary:
    return SpectrumSummary.model_validate(record)


def spectrum_detail(record: SpectrumRecord) -> SpectrumDetail:
    return SpectrumDetail(
        **spectrum_summary(record).model_dump(exclude={"links"}),
        eigenvalues=[float(v) for v in record.eigenvalues],
        code=None if record.code is None else [float(v) for v in record.code],
        diagnostics=record.diagnostics,
    )


class ModelView(BaseModel):
    name: str
    family: str
    latent_dim: int | None = Field(description="null for a scheme: it depends on the file")
    description: str
    spaces: list[str] = Field(
        default_factory=lambda: ["z"], description="latent spaces (job option `space`)"
    )
    layers: list[str] = Field(
        default_factory=list, description="layer names for layer:NAME distances and ganspace"
    )
    scheme: bool = Field(default=False, description="a loader scheme: the name is a pattern")
    facts: dict[str, Any] = Field(default_factory=dict, description="recorded by workers")
