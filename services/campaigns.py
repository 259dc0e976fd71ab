"""Campaigns: one request that submits models x spaces x distances x methods over one seeded
latent set per model, plus each model's directions (SeFa, GANSpace where the model has it),
and follows, cancels and compares them as one. Every member is an ordinary job.

The use case for HTTP (`POST /v1/campaigns`), the command line (`spectra campaign ...`) and
the UI alike: it validates every member's spec before submitting any, then submits them
through the pipeline, then stores the campaign over their ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.config import Settings
from services.patterns import TEXT_PATTERN, Seed, Tag
from services.pipeline import JobSpec, SpecError, cancel_job, submit_job
from services.store import ConflictError, InvalidDataError, Store
from services.store.campaigns import CampaignMember, CampaignRecord

if TYPE_CHECKING:
    from services.comparisons.requests import ComparisonRequest
    from services.store.comparisons import ComparisonRecord

MAX_MEMBERS = 32
Dispatch = Callable[[list[str]], None]

Name = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)


class CampaignLatents(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, description="codes per model, sampled from its own distribution")
    seed: Seed = Field(default=0, description="the sampler's seed (the same for every model)")


class CampaignSpec(BaseModel):
    """What a campaign computes. Members: for each model, each space (when given), each
    distance and each method, a job over the model's seeded latent set; and each direction
    method (``sefa``, ``ganspace``) once per model and space."""

    model_config = ConfigDict(extra="forbid")
    name: str = Name
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    models: list[str] = Field(min_length=1, max_length=8)
    spaces: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=3,
        description="latent spaces (z, w, w+); null = the default",
    )
    model_spaces: dict[str, list[str]] = Field(
        default_factory=dict,
        max_length=8,
        description="spaces of named models, in place of `spaces` for them, e.g. "
        '{"omniart-eye": ["noise"]}: one campaign over models whose spaces differ',
    )
    distances: list[str] = Field(default_factory=lambda: ["mse"], max_length=4)
    methods: list[str] = Field(default_factory=lambda: ["jacobian"], max_length=5)
    directions: list[str] = Field(default_factory=lambda: ["sefa"], max_length=2)
    latents: CampaignLatents
    top_k: int | None = Field(default=None, ge=1)
    dtype: str = Field(default="float32", pattern="^float(32|64)$")
    chunk_size: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _has_members(self) -> CampaignSpec:
        # Without a method and a direction there is no member: refused now, not accepted
        # and then failed with none.
        unknown = sorted(set(self.model_spaces) - set(self.models))
        if unknown:
            raise ValueError(
                f"model_spaces names models that are not in models: {', '.join(unknown)}; "
                "list each of them in models too"
            )
        if any(not spaces or len(spaces) > 3 for spaces in self.model_spaces.values()):
            raise ValueError("model_spaces: give each model 1 to 3 spaces")
        if not self.methods and not self.directions:
            raise ValueError(
                'a campaign needs at least one method (e.g. "methods": ["jacobian"]) or one '
                'direction (e.g. "directions": ["sefa"]); both are empty'
            )
        return self


@dataclass(frozen=True)
class PlannedMember:
    name: str
    spec: JobSpec


class CampaignSpecError(ValueError):
    """A member that cannot be a job: names the member and the field, nothing submitted."""

    def __init__(self, member: str, field: str, message: str) -> None:
        super().__init__(f"member {member!r}: {field}: {message}")
        self.member = member
        self.field = field
        self.reason = message


def member_name(model: str, space: str | None, distance: str | None, method: str) -> str:
    """A readable member name: model[space]/distance/method, directions without distance."""
    head = model + (f"[{space}]" if space else "")
    return "/".join([head] + ([distance] if distance else []) + [method])


def plan_members(spec: CampaignSpec) -> list[PlannedMember]:
    """Every member's job spec, checked (pydantic) before anything is submitted."""
    planned: list[PlannedMember] = []
    for model in spec.models:
        chosen = spec.model_spaces.get(model) or spec.spaces
        spaces: list[str | None] = list(chosen) if chosen else [None]
        for space in spaces:
            extra: dict[str, Any] = {} if space is None else {"space": space}
            for distance in spec.distances:
                for method in spec.methods:
                    fields = {
                        "model": model,
                        "distance": distance,
                        "method": method,
                        "latents": {"count": spec.latents.count, "seed": spec.latents.seed},
                        "top_k": spec.top_k,
                        "dtype": spec.dtype,
                        "chunk_size": spec.chunk_size,
                        **extra,
                    }
                    planned.append(_member(member_name(model, space, distance, method), fields))
            for direction in spec.directions:
                fields = {"model": model, "method": direction, "dtype": spec.dtype, **extra}
                planned.append(_member(member_name(model, space, None, direction), fields))
    if len(planned) > MAX_MEMBERS:
        raise CampaignSpecError(
            spec.name,
            "models",
            f"{len(planned)} members exceed the limit of {MAX_MEMBERS}; split the campaign",
        )
    return planned


def _member(name: str, fields: dict[str, Any]) -> PlannedMember:
    try:
        job = JobSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "spec"
        raise CampaignSpecError(name, field, first["msg"]) from None
    return PlannedMember(name, job)


def submit_campaign(
    store: Store,
    spec: CampaignSpec,
    owner: str,
    dispatch: Dispatch | None,
    *,
    settings: Settings,
    check_model: Callable[[str], None] | None = None,
) -> tuple[CampaignRecord, bool]:
    """Submit every member (the same spec again is the same job) and store the campaign.
    Every member's spec is checked first; ``check_model`` (the API's served-model policy)
    runs on each model before anything is written."""
    planned = plan_members(spec)
    if check_model is not None:
        for model in dict.fromkeys(p.spec.model for p in planned):
            check_model(model)
    members: list[CampaignMember] = []
    for member in planned:
        try:
            job, _ = submit_job(store, member.spec, owner, dispatch, settings=settings)
        except SpecError as error:
            raise CampaignSpecError(member.name, error.field, error.reason) from None
        members.append(CampaignMember(member.name, job.id))
    return store.create_campaign(owner, spec.name, spec.tags, spec.model_dump(mode="json"), members)


def campaign(store: Store, campaign_id: str, owner: str | None) -> CampaignRecord:
    return store.get_campaign(campaign_id, owner)


def campaigns(store: Store, owner: str | None, *, tag: str | None = None) -> list[CampaignRecord]:
    return store.list_campaigns(owner, tag=tag)


@dataclass(frozen=True)
class MemberStatus:
    member: str
    job_id: str
    status: str
    planned: int
    done: int
    failed: int


@dataclass(frozen=True)
class CampaignStatus:
    campaign: CampaignRecord
    members: list[MemberStatus]

    @property
    def status(self) -> str:
        """running while any member is queued or running; else succeeded only if all did."""
        states = {m.status for m in self.members}
        if states & {"queued", "running"}:
            return "running"
        if states == {"succeeded"}:
            return "succeeded"
        return "cancelled" if "cancelled" in states else "failed"

    def to_json(self) -> dict[str, Any]:
        planned = sum(m.planned for m in self.members)
        done = sum(m.done for m in self.members)
        return {
            "id": self.campaign.id,
            "name": self.campaign.name,
            "tags": list(self.campaign.tags),
            "status": self.status,
            "progress": {
                "planned": planned,
                "done": done,
                "failed": sum(m.failed for m in self.members),
            },
            "members": [
                {
                    "member": m.member,
                    "job_id": m.job_id,
                    "status": m.status,
                    "planned": m.planned,
                    "done": m.done,
                    "failed": m.failed,
                    "links": {"job": f"/v1/jobs/{m.job_id}"},
                }
                for m in self.members
            ],
            "created_at": self.campaign.created_at.isoformat(),
            "links": {
                "self": f"/v1/campaigns/{self.campaign.id}",
                "compare": f"/v1/campaigns/{self.campaign.id}/compare",
            },
        }


def campaign_status(store: Store, campaign_id: str, owner: str | None) -> CampaignStatus:
    record = store.get_campaign(campaign_id, owner)
    members = []
    for member in record.members:
        job = store.get_job(member.job_id)
        members.append(
            MemberStatus(member.member, job.id, job.status, job.n_latents, job.n_done, job.n_failed)
        )
    return CampaignStatus(record, members)


def cancel_campaign(
    store: Store, campaign_id: str, owner: str | None, revoke: Dispatch | None
) -> CampaignStatus:
    """Cancel every member still queued or running (finished members keep their results); a
    campaign with nothing left to cancel is a ConflictError (409), as a finished job's is."""
    record = store.get_campaign(campaign_id, owner)
    unfinished = [
        m.job_id for m in record.members if store.get_job(m.job_id).status in ("queued", "running")
    ]
    if not unfinished:
        status = campaign_status(store, campaign_id, owner)
        raise ConflictError(
            f"campaign {record.name!r} has already ended ({status.status}); nothing to cancel"
        )
    for job_id in unfinished:
        cancel_job(store, job_id, revoke)
    return campaign_status(store, campaign_id, owner)


@dataclass(frozen=True)
class CampaignComparisonOptions:
    """What a campaign's comparison takes beyond its members (as ``POST /v1/comparisons``)."""

    k: int = 10
    max_positions: int = 100
    seed: int = 0
    include_partial: bool = False
    formats: tuple[str, ...] = ("png",)
    normalise: str | None = None
    montages: bool = False


def campaign_comparison_request(
    store: Store, campaign_id: str, owner: str | None, options: CampaignComparisonOptions
) -> tuple[ComparisonRequest, list[str]]:
    """The stored comparison that compares a campaign: one selection per member with results,
    labelled by its member name, and a note per member left out (still queued, or only partial
    results without ``include_partial``). Anisotropy and homogeneity per member; Hessian <->
    SeFa <-> GANSpace, model <-> model (where dimensions match) and method <-> method
    alignments for every pair."""
    from services.comparisons.requests import ComparisonRequest, Selection

    record = store.get_campaign(campaign_id, owner)
    selections, skipped = [], []
    for member in record.members:
        job = store.get_job(member.job_id)
        if job.n_done == 0 or not (options.include_partial or job.status == "succeeded"):
            skipped.append(
                f"{member.member}: not compared (job {job.id} {job.status}, "
                f"{job.n_done} spectra; include_partial uses partial results)"
            )
            continue
        selection = Selection(
            job_id=member.job_id, label=member.member, include_partial=options.include_partial
        )
        selections.append(selection)
    if not selections:
        raise InvalidDataError(
            f"campaign {record.name!r} has no member with results yet; follow it with "
            f"GET /v1/campaigns/{record.id}"
        )
    request = ComparisonRequest.model_validate(
        {
            "selections": selections,
            "k": options.k,
            "max_positions": options.max_positions,
            "seed": options.seed,
            "formats": list(options.formats),
            "normalise": options.normalise,
            "montages": options.montages,
        }
    )
    return request, skipped


def submit_campaign_comparison(
    store: Store,
    campaign_id: str,
    options: CampaignComparisonOptions,
    *,
    owner: str,
    visible_owner: str | None,
    dispatch: Callable[[str], None],
) -> tuple[ComparisonRecord, bool, list[str]]:
    """A campaign's comparison as ONE stored comparison (the same request over the same
    spectra is the same one): (record, created, members left out). Nothing is computed here."""
    from services.comparisons.stored import submit_comparison

    request, skipped = campaign_comparison_request(store, campaign_id, visible_owner, options)
    record, created = submit_comparison(
        store, request, owner=owner, visible_owner=visible_owner, dispatch=dispatch
    )
    return record, created, skipped
