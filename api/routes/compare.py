"""Compare selections: anisotropy table, homogeneity statistics, alignment of top-k subspaces
(SeFa against a Hessian method for a model is one such alignment)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.auth import ReadPrincipal
from api.deps import get_settings, get_store
from api.routes.jobs import PROBLEM_RESPONSES
from services.comparisons import CompareRequest, compare

router = APIRouter(tags=["compare"])


@router.post(
    "/compare",
    responses=PROBLEM_RESPONSES,
    summary="Anisotropy, homogeneity and subspace alignment of two or more selections",
)
def compare_selections(
    request: Request,
    body: CompareRequest,
    principal: ReadPrincipal,
) -> dict[str, Any]:
    result = compare(
        get_store(request),
        body.selections,
        owner=principal.visible_owner,
        k=body.k,
        max_positions=body.max_positions,
        transport=body.transport,
        seed=body.seed,
        settings=get_settings(request),
    )
    return result.to_json()
