"""Campaigns: submit models x spaces x distances x methods (plus each model's directions) in
one request, follow and cancel them as one, and compare their members as a matrix. Every
member is an ordinary job (``/v1/jobs/{id}``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ReadPrincipal, SubmitPrincipal
from api.deps import DispatcherDep, SettingsDep, StoreDep, ensure_model_served
from api.errors import ApiProblem
from api.params import CampaignIdPath
from api.routes.compare import submitted_comparison
from api.routes.jobs import PROBLEM_RESPONSES
from services import campaigns
from services.comparisons import DEFAULT_MAX_POSITIONS, MAX_POSITIONS, MAX_VECTORS
from services.patterns import TEXT_PATTERN

router = APIRouter(tags=["campaigns"])

CampaignId = CampaignIdPath


class CampaignCompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=10, ge=1, le=MAX_VECTORS, description="top-k for the alignments")
    max_positions: int = Field(
        default=DEFAULT_MAX_POSITIONS,
        ge=2,
        le=MAX_POSITIONS,
        description="the most positions a member's homogeneity uses; more: a seeded sample",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**63 - 1,
        description="seed of the homogeneity's sample of positions (recorded)",
    )
    include_partial: bool = Field(default=False, description="use members' partial results")
    formats: list[Literal["png", "svg", "pdf"]] = Field(
        default=["png"], min_length=1, max_length=3, description="figure formats to store"
    )
    normalise: Literal["none", "top", "trace"] | None = Field(
        default=None, description="spectrum figure as λ, λ/λ₁ or λ/trace (as /v1/comparisons)"
    )
    montages: bool = Field(default=False, description="also render a montage per member")


def _invalid(error: campaigns.CampaignSpecError) -> ApiProblem:
    return ApiProblem(
        422,
        "Invalid campaign",
        str(error),
        field=error.field,
        slug="invalid-campaign",
        extra={"member": error.member},
    )


@router.post(
    "/campaigns",
    status_code=202,
    responses={
        200: {
            "description": "This owner's campaign of that name already "
            "exists: it is answered, nothing is submitted"
        },
        **PROBLEM_RESPONSES,
    },
    summary="Submit a campaign: every member a job, followed and compared as one",
)
def submit_campaign(
    body: campaigns.CampaignSpec,
    store: StoreDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    principal: SubmitPrincipal,
) -> JSONResponse:
    try:
        record, created = campaigns.submit_campaign(
            store,
            body,
            principal.owner,
            dispatcher.dispatch,
            settings=settings,
            check_model=lambda name: ensure_model_served(name, settings, "models"),
        )
    except campaigns.CampaignSpecError as error:
        raise _invalid(error) from None
    status = campaigns.campaign_status(store, record.id, principal.owner)
    return JSONResponse(
        {**status.to_json(), "created": created},
        status_code=202 if created else 200,
        headers={"Location": f"/v1/campaigns/{record.id}"},
    )


@router.get("/campaigns", responses=PROBLEM_RESPONSES, summary="This key's campaigns")
def list_campaigns(
    store: StoreDep,
    principal: ReadPrincipal,
    tag: Annotated[str | None, Query(max_length=200, pattern=TEXT_PATTERN)] = None,
) -> dict[str, Any]:
    records = campaigns.campaigns(store, principal.visible_owner, tag=tag)
    return {"items": [campaigns.campaign_status(store, r.id, None).to_json() for r in records]}


@router.get(
    "/campaigns/{campaign_id}",
    responses=PROBLEM_RESPONSES,
    summary="A campaign's status: each member's job, and the whole",
)
def campaign_status(
    campaign_id: CampaignId, store: StoreDep, principal: ReadPrincipal
) -> dict[str, Any]:
    return campaigns.campaign_status(store, campaign_id, principal.visible_owner).to_json()


@router.post(
    "/campaigns/{campaign_id}/cancel",
    responses=PROBLEM_RESPONSES,
    summary="Cancel every member still queued or running",
)
def cancel_campaign(
    campaign_id: CampaignId, store: StoreDep, dispatcher: DispatcherDep, principal: SubmitPrincipal
) -> dict[str, Any]:
    status = campaigns.cancel_campaign(
        store, campaign_id, principal.visible_owner, dispatcher.revoke
    )
    return status.to_json()


@router.post(
    "/campaigns/{campaign_id}/compare",
    status_code=202,
    responses={
        200: {"description": "The same comparison over the same spectra: the stored one"},
        **PROBLEM_RESPONSES,
    },
    summary="Compare a campaign's members: ONE stored comparison (202 and its link)",
)
def compare_campaign(
    campaign_id: CampaignId,
    body: CampaignCompareRequest,
    store: StoreDep,
    dispatcher: DispatcherDep,
    principal: SubmitPrincipal,
) -> JSONResponse:
    options = campaigns.CampaignComparisonOptions(
        k=body.k,
        max_positions=body.max_positions,
        seed=body.seed,
        include_partial=body.include_partial,
        formats=tuple(body.formats),
        normalise=body.normalise,
        montages=body.montages,
    )
    record, created, skipped = campaigns.submit_campaign_comparison(
        store,
        campaign_id,
        options,
        owner=principal.owner,
        visible_owner=principal.visible_owner,
        dispatch=dispatcher.dispatch_comparison,
    )
    return submitted_comparison(record, created, skipped=skipped)
