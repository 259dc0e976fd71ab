"""Plain frozen records returned by the store; no ORM object ever leaves it.

Arrays inside records are read-only and excluded from ``==`` (numpy equality is element-wise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from .status import ACTIVE_STATUSES, CHUNK_STATUSES, JOB_STATUSES, TERMINAL_STATUSES

__all__ = ["ACTIVE_STATUSES", "CHUNK_STATUSES", "JOB_STATUSES", "TERMINAL_STATUSES"]  # re-exported
LATENT_SOURCES = ("uploaded", "sampled")
VECTOR_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ChunkPlan:
    """One unit of work to create with a job: some latents, or one Hessian column block."""

    index: int
    latent_indices: list[int]
    column_block: tuple[int, int] | None = None


@dataclass(frozen=True)
class GeneratorRecord:
    name: str
    family: str
    latent_dim: int
    weights_sha256: str | None
    options: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class LatentSetRecord:
    id: str
    owner: str
    name: str | None
    source: str
    model: str | None
    seed: int | None
    n: int
    d: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    status: str
    spec: dict[str, Any]
    resolved: dict[str, Any]
    spec_hash: str
    latent_set_id: str | None
    model: str | None
    n_latents: int
    n_done: int
    n_failed: int
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    estimate: dict[str, Any] | None = None  # the plan with its times (None: none was made)


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    job_id: str
    index: int
    latent_indices: tuple[int, ...]
    column_block: tuple[int, int] | None
    status: str
    attempts: int
    lease_owner: str | None
    heartbeat_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    created_at: datetime
    current_latent: int | None = None  # the latent its run is computing (None between)
    current_latent_deaths: int = 0  # runs that ended while computing current_latent


@dataclass(frozen=True)
class JobProgress:
    """How far a job is. ``rate`` is latents (done + failed) per second since it started;
    ``eta_s`` is None while unknown (not started, nothing finished yet, or never finishing)."""

    job_id: str
    status: str
    planned: int
    done: int
    failed: int
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None
    rate: float | None
    eta_s: float | None


@dataclass(frozen=True)
class SpectrumSummaryRecord:
    """What a listing of spectra shows: a stored spectrum without its arrays and diagnostics
    (a page of summaries is a third of the bytes to send and decode)."""

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


@dataclass(frozen=True)
class SpectrumRecord(SpectrumSummaryRecord):
    """A stored spectrum's metadata and eigenvalues (float64, descending); never its vectors."""

    eigenvalues: np.ndarray = field(compare=False, repr=False)
    code: np.ndarray | None = field(compare=False, repr=False)
    diagnostics: dict[str, Any]


@dataclass(frozen=True)
class LatentFailureRecord:
    job_id: str
    latent_index: int
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: its owner and scopes, never the token itself."""

    id: str
    owner: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked: bool
