"""Stored spectra: query by job or by (model, distance, method); one spectrum; its eigenvectors."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import Principal, ReadPrincipal
from api.deps import get_store
from api.errors import ApiProblem
from api.params import JobIdQuery, SpectrumIdPath, text_query
from api.routes.jobs import PROBLEM_RESPONSES
from api.schemas import (
    Eigenvectors,
    SpectrumDetail,
    SpectrumList,
    json_response,
    page_of,
    spectrum_detail,
    spectrum_summary,
)
from services.store import NotFoundError, SpectrumRecord

router = APIRouter(tags=["spectra"])

# store.SPECTRUM_ORDERS, and each descending with a leading "-".
OrderBy = Literal[
    "latent_index",
    "created_at",
    "top_eigenvalue",
    "trace",
    "dims_99",
    "dims_999",
    "participation_ratio",
    "-latent_index",
    "-created_at",
    "-top_eigenvalue",
    "-trace",
    "-dims_99",
    "-dims_999",
    "-participation_ratio",
]


def visible_spectrum(store: Any, spectrum_id: str, principal: Principal) -> SpectrumRecord:
    """The spectrum, if the key may see its job; otherwise 404 (never 403: ids do not leak)."""
    try:
        record: SpectrumRecord = store.get_spectrum(spectrum_id, owner=principal.visible_owner)
    except NotFoundError:
        raise _not_visible(spectrum_id) from None
    return record


def _not_visible(spectrum_id: str) -> NotFoundError:
    return NotFoundError(f"no spectrum {spectrum_id!r} visible to this API key")


@router.get(
    "/spectra",
    response_model=SpectrumList,
    responses=PROBLEM_RESPONSES,
    summary="Query stored spectra by job or by (model, distance, method), paginated",
)
async def list_spectra(
    request: Request,
    principal: ReadPrincipal,
    job_id: JobIdQuery = None,
    model: Annotated[str | None, text_query()] = None,
    distance: Annotated[str | None, text_query(100)] = None,
    method: Annotated[str | None, text_query(50)] = None,
    order_by: OrderBy = "latent_index",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    # async, like the other hot reads: no worker thread per page.
    records = await get_store(request).list_spectrum_summaries_async(
        job_id=job_id,
        model=model,
        distance=distance,
        method=method,
        owner=principal.visible_owner,
        order_by=order_by,
        limit=limit,
        offset=offset,
    )
    return json_response(
        SpectrumList(
            items=[spectrum_summary(r) for r in records], page=page_of(records, limit, offset)
        )
    )


@router.get(
    "/spectra/{spectrum_id}",
    response_model=SpectrumDetail,
    responses=PROBLEM_RESPONSES,
    summary="One spectrum: eigenvalues (descending), summary, code and diagnostics",
)
async def get_spectrum(
    request: Request,
    spectrum_id: SpectrumIdPath,
    principal: ReadPrincipal,
) -> Response:
    try:
        record = await get_store(request).get_spectrum_async(
            spectrum_id, owner=principal.visible_owner
        )
    except NotFoundError:
        raise _not_visible(spectrum_id) from None
    return json_response(spectrum_detail(record))


@router.get(
    "/spectra/{spectrum_id}/eigenvectors",
    response_model=Eigenvectors,
    responses={
        200: {"content": {"application/json": {}, "application/octet-stream": {}}},
        **PROBLEM_RESPONSES,
    },
    summary="Top-k eigenvectors as a (d, k) matrix of columns, in JSON or as a .npy",
)
def get_eigenvectors(
    request: Request,
    spectrum_id: SpectrumIdPath,
    principal: ReadPrincipal,
    k: Annotated[int | None, Query(ge=1, le=100_000, description="how many; default all")] = None,
    format: Annotated[Literal["json", "npy"], Query()] = "json",
) -> Eigenvectors | Response:
    store = get_store(request)
    record = visible_spectrum(store, spectrum_id, principal)
    if k is not None and k > record.k:
        raise ApiProblem(
            422,
            "Too many eigenvectors asked for",
            f"k={k}, but this spectrum stores only its top {record.k} eigenvectors (the job "
            f"kept top_k={record.k} of d={record.d}); ask for k <= {record.k}, or compute a job "
            "without top_k for all of them",
            field="k",
            slug="k-over-stored",
        )
    k = k or record.k
    vectors = np.asarray(store.eigenvectors(spectrum_id, k=k))  # (d, k) columns
    if format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, vectors, allow_pickle=False)
        return Response(
            buffer.getvalue(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{spectrum_id}-top{k}.npy"'},
        )
    return Eigenvectors(
        spectrum_id=spectrum_id,
        d=int(vectors.shape[0]),
        k=int(vectors.shape[1]),
        dtype=str(vectors.dtype),
        shape=(int(vectors.shape[0]), int(vectors.shape[1])),
        eigenvalues=[float(v) for v in record.eigenvalues[:k]],
        vectors=vectors.tolist(),  # (d, k), as the .npy: one orientation everywhere
    )
