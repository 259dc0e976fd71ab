"""Comparisons: a stored resource computed by a worker (``/comparisons``), and the synchronous
``/compare`` kept for what finishes within a small budget (decided from counts before any
computation; beyond it the answer is the stored comparison it created: a 202 and its link).

Both answer with THE result document (``services.comparisons.document``); the tables of a
stored comparison come from THE table renderer (``/comparisons/{id}/tables``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.auth import ReadPrincipal, SubmitPrincipal
from api.deps import get_dispatcher, get_settings, get_store
from api.params import ComparisonIdPath
from api.routes.jobs import PROBLEM_RESPONSES
from services.comparisons import CompareRequest, compare, result_document
from services.comparisons.requests import ComparisonRequest
from services.comparisons.stored import (
    SYNC_MAX_SPECTRA,
    cancel_comparison,
    census,
    spectra_count,
    submit_comparison,
    with_full_job_ids,
)
from services.comparisons.tables import render_tables
from services.jsonable import jsonable
from services.store import InvalidDataError
from services.store.comparisons import ComparisonRecord

router = APIRouter(tags=["compare"])

FigureName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9._-]{1,200}$", description="figure file name")
]
TABLE_MEDIA = {
    "text": "text/plain",
    "csv": "text/csv",
    "markdown": "text/markdown",
    "latex": "text/x-tex",
}


def _links(record: ComparisonRecord) -> dict[str, Any]:
    base = f"/v1/comparisons/{record.id}"
    return {
        "self": base,
        "cancel": f"{base}/cancel",
        "tables": f"{base}/tables",
        "figures": {name: f"{base}/figures/{name}" for name in record.figures},
    }


def comparison_view(record: ComparisonRecord) -> dict[str, Any]:
    """A stored comparison as the API shows it."""
    view: dict[str, Any] = jsonable(
        {
            "id": record.id,
            "status": record.status,
            "progress": record.progress,
            "stage": record.stage,
            "request": record.request["compare"],
            "error": record.error,
            "software_version": record.software_version,
            "created_at": record.created_at.isoformat(),
            "started_at": record.started_at.isoformat() if record.started_at else None,
            "finished_at": record.finished_at.isoformat() if record.finished_at else None,
            "n_spectra": None if record.spectra is None else [len(ids) for ids in record.spectra],
            "document": record.document,
            "links": _links(record),
        }
    )
    return view


def submitted_comparison(
    record: ComparisonRecord, created: bool, *, skipped: list[str] | None = None
) -> JSONResponse:
    """202 for a new comparison, 200 for the stored one; ``skipped``: what was left out."""
    view = comparison_view(record)
    if skipped is not None:
        view["skipped"] = skipped
    return JSONResponse(
        view, status_code=202 if created else 200, headers={"Location": view["links"]["self"]}
    )


@router.post(
    "/comparisons",
    status_code=202,
    responses=PROBLEM_RESPONSES,
    summary="Submit a comparison: stored at once (202 and its id), computed by a worker",
)
def submit(request: Request, body: ComparisonRequest, principal: SubmitPrincipal) -> JSONResponse:
    record, created = submit_comparison(
        get_store(request),
        body,
        owner=principal.owner,
        visible_owner=principal.visible_owner,
        dispatch=get_dispatcher(request).dispatch_comparison,
    )
    return submitted_comparison(record, created)


@router.get("/comparisons", responses=PROBLEM_RESPONSES, summary="List comparisons, newest first")
def list_comparisons(
    request: Request,
    principal: ReadPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    records = get_store(request).list_comparisons(owner=principal.visible_owner, limit=limit)
    # The list is a summary: documents are fetched one comparison at a time.
    return {"items": [comparison_view(r) | {"document": None} for r in records]}


@router.get(
    "/comparisons/{comparison_id}",
    responses=PROBLEM_RESPONSES,
    summary="A comparison: status, progress, the result document and its figures' links",
)
def get_comparison(
    request: Request, comparison_id: ComparisonIdPath, principal: ReadPrincipal
) -> dict[str, Any]:
    return comparison_view(
        get_store(request).get_comparison(comparison_id, owner=principal.visible_owner)
    )


@router.post(
    "/comparisons/{comparison_id}/cancel",
    responses=PROBLEM_RESPONSES,
    summary="Cancel a queued or running comparison (one that has ended: 409)",
)
def cancel(
    request: Request, comparison_id: ComparisonIdPath, principal: SubmitPrincipal
) -> dict[str, Any]:
    return comparison_view(
        cancel_comparison(get_store(request), comparison_id, principal.visible_owner)
    )


@router.get(
    "/comparisons/{comparison_id}/tables",
    response_class=PlainTextResponse,
    responses=PROBLEM_RESPONSES,
    summary="The comparison's tables: text, CSV, Markdown or LaTeX (booktabs)",
)
def tables(
    request: Request,
    comparison_id: ComparisonIdPath,
    principal: ReadPrincipal,
    format: Annotated[Literal["text", "csv", "markdown", "latex"], Query()] = "text",
) -> Response:
    record = get_store(request).get_comparison(comparison_id, owner=principal.visible_owner)
    if record.document is None:
        raise InvalidDataError(
            f"comparison {comparison_id} is {record.status}: its tables exist once it has "
            f"succeeded (GET /v1/comparisons/{comparison_id} shows its progress)"
        )
    return Response(render_tables(record.document, format), media_type=TABLE_MEDIA[format])


@router.get(
    "/comparisons/{comparison_id}/figures/{name}",
    response_class=Response,
    responses=PROBLEM_RESPONSES,
    summary="One stored figure of a comparison (PNG, SVG or PDF)",
)
def figure(
    request: Request, comparison_id: ComparisonIdPath, name: FigureName, principal: ReadPrincipal
) -> Response:
    store = get_store(request)
    store.get_comparison(comparison_id, owner=principal.visible_owner)  # 404 if not visible
    stored = store.comparison_figure(comparison_id, name)
    return Response(stored.data, media_type=stored.media_type)


@router.post(
    "/compare",
    responses={
        202: {"description": "too large to compute in the request: a stored comparison"},
        **PROBLEM_RESPONSES,
    },
    summary="Anisotropy, homogeneity and subspace alignment of small selections, in the request",
)
def compare_selections(
    request: Request,
    body: CompareRequest,
    principal: ReadPrincipal,
) -> Any:
    store = get_store(request)
    asked = with_full_job_ids(
        store, ComparisonRequest.model_validate(body.model_dump()), principal.visible_owner
    )
    if spectra_count(census(store, asked, principal.visible_owner)) > SYNC_MAX_SPECTRA:
        # Too large for a request thread: the same comparison, stored and computed by a worker.
        record, created = submit_comparison(
            store,
            asked,
            owner=principal.owner,
            visible_owner=principal.visible_owner,
            dispatch=get_dispatcher(request).dispatch_comparison,
        )
        response = submitted_comparison(record, created)
        response.status_code = 202
        return response
    result = compare(
        store,
        body.selections,
        owner=principal.visible_owner,
        k=body.k,
        max_positions=body.max_positions,
        transport=body.transport,
        seed=body.seed,
        settings=get_settings(request),
    )
    # The per-position arrays (the earlier shape) and the version-1 result document that every
    # face renders (``document``).
    return {**result.to_json(), "document": result_document(result)}
