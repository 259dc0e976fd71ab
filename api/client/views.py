"""What the server answers, as frozen dataclasses (no pydantic on the client).

Each view mirrors one schema of the server's OpenAPI document field by field (names,
optionality, types); ``tests/ui/test_client_views.py`` holds them to the real app's
``openapi()``. ``Job`` mirrors ``JobView`` and carries, as optional fields, what only a single
job (``JobDetail``) or a submission (``JobSubmitted``) adds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import numpy as np

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled", "refused")

_T = TypeVar("_T")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass(frozen=True)
class Progress:
    planned: int
    done: int
    failed: int
    fraction: float
    rate_per_s: float | None
    eta_s: float | None


@dataclass(frozen=True)
class Timings:
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Timings:
        return cls(
            created_at=datetime.fromisoformat(body["created_at"]),
            started_at=_time(body.get("started_at")),
            finished_at=_time(body.get("finished_at")),
            elapsed_s=body.get("elapsed_s"),
        )


@dataclass(frozen=True)
class Failure:
    latent_index: int
    reason: str


@dataclass(frozen=True)
class Job:
    """A job as the server describes it. ``progress``, ``resolved``, ``timings`` and
    ``failures`` come with a single job (``client.job(id)``), not in lists; ``created`` with
    a submission (False when an identical job already existed and is returned instead)."""

    id: str
    owner: str
    status: str
    model: str | None
    n_latents: int
    n_done: int
    n_failed: int
    cancel_requested: bool
    error: str | None
    spec: dict[str, Any]
    created_at: datetime
    links: dict[str, str]
    latent_set_id: str | None = None
    created: bool | None = None
    resolved: dict[str, Any] | None = None
    progress: Progress | None = None
    timings: Timings | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Job:
        progress, timings = body.get("progress"), body.get("timings")
        return cls(
            id=body["id"],
            owner=body["owner"],
            status=body["status"],
            model=body.get("model"),
            n_latents=body["n_latents"],
            n_done=body["n_done"],
            n_failed=body["n_failed"],
            cancel_requested=body["cancel_requested"],
            error=body.get("error"),
            spec=dict(body.get("spec") or {}),
            created_at=datetime.fromisoformat(body["created_at"]),
            links=dict(body.get("links") or {}),
            latent_set_id=body.get("latent_set_id"),
            created=body.get("created"),
            resolved=body.get("resolved"),
            progress=None if progress is None else Progress(**progress),
            timings=None if timings is None else Timings.from_json(timings),
            failures=[Failure(**f) for f in body.get("failures") or []],
        )


@dataclass(frozen=True)
class SpectrumSummary:
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
    links: dict[str, str]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SpectrumSummary:
        values: dict[str, Any] = {f.name: body.get(f.name) for f in fields(cls)}
        values["created_at"] = datetime.fromisoformat(body["created_at"])
        values["links"] = dict(body.get("links") or {})
        return cls(**values)


@dataclass(frozen=True)
class Spectrum:
    """One spectrum (``SpectrumDetail``): its summary, its eigenvalues (descending) and code as
    numpy arrays, and the diagnostics of its computation."""

    summary: SpectrumSummary
    eigenvalues: np.ndarray
    code: np.ndarray | None
    diagnostics: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Spectrum:
        import numpy as np

        code = body.get("code")
        return cls(
            summary=SpectrumSummary.from_json(body),
            eigenvalues=np.asarray(body["eigenvalues"], dtype=np.float64),
            code=None if code is None else np.asarray(code, dtype=np.float64),
            diagnostics=dict(body.get("diagnostics") or {}),
        )


@dataclass(frozen=True)
class PageInfo:
    """Where a page of a list sits (the ``page`` of every list answer)."""

    limit: int
    offset: int
    count: int
    next_offset: int | None


@dataclass(frozen=True)
class Page(Generic[_T]):
    """One page of a list answer: its ``items`` and where it sits."""

    items: list[_T]
    page: PageInfo

    @property
    def next_offset(self) -> int | None:
        """The offset of the next page; None on the last page."""
        return self.page.next_offset


@dataclass(frozen=True)
class ModelInfo:
    """A generator the server can load (``GET /v1/models``)."""

    name: str
    family: str
    latent_dim: int | None
    description: str
    spaces: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    scheme: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelInfo:
        return cls(**{f.name: body[f.name] for f in fields(cls) if f.name in body})


@dataclass(frozen=True)
class CampaignMember:
    member: str
    job_id: str
    status: str
    planned: int
    done: int
    failed: int
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Campaign:
    """A campaign and each member's job (``GET /v1/campaigns/{id}``); ``progress`` sums the
    members' ``planned``, ``done`` and ``failed``; ``created`` comes with a submission."""

    id: str
    name: str
    tags: list[str]
    status: str
    progress: dict[str, int]
    members: list[CampaignMember]
    created_at: datetime
    links: dict[str, str]
    created: bool | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Campaign:
        return cls(
            id=body["id"],
            name=body["name"],
            tags=list(body.get("tags") or []),
            status=body["status"],
            progress=dict(body["progress"]),
            members=[CampaignMember(**m) for m in body["members"]],
            created_at=datetime.fromisoformat(body["created_at"]),
            links=dict(body.get("links") or {}),
            created=body.get("created"),
        )


@dataclass(frozen=True)
class Comparison:
    """The comparison document: per-selection anisotropy and homogeneity, the pairwise
    alignments, and notes. ``raw`` is the whole document (it may carry more than these)."""

    selections: list[dict[str, Any]]
    alignments: list[dict[str, Any]]
    notes: list[str]
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Comparison:
        return cls(
            selections=list(body.get("selections") or []),
            alignments=list(body.get("alignments") or []),
            notes=list(body.get("notes") or []),
            raw=dict(body),
        )
