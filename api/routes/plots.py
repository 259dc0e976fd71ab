"""Pictures as PNG: spectrum plot, homogeneity histogram, eigen-axis montage.

Selections are given in the query as ``selection=JOB_ID`` or ``selection=MODEL:DISTANCE:METHOD``
(repeatable), the same text the command line takes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import StringConstraints

from api.auth import Principal, ReadPrincipal
from api.deps import ensure_model_served, get_settings, get_store
from api.errors import ApiProblem
from api.params import TEXT_PATTERN, id_query
from api.routes.jobs import PROBLEM_RESPONSES
from api.routes.spectra import visible_spectrum
from services.comparison import (
    MAX_SELECTIONS,
    Comparison,
    compare,
    homogeneity_png,
    montage_png,
    parse_selection,
    spectrum_png,
)

router = APIRouter(tags=["plots"])

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG picture"}
}
SelectionText = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=TEXT_PATTERN)]
Selections = Annotated[
    list[SelectionText],
    Query(
        min_length=1,
        max_length=MAX_SELECTIONS,
        description="JOB_ID or MODEL:DISTANCE:METHOD; repeat for several",
    ),
]


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def _comparison(
    request: Request, selection: list[str], principal: Principal, positions: int
) -> Comparison:
    parsed = []
    for index, text in enumerate(selection):
        try:
            parsed.append(parse_selection(text))
        except ValueError as error:
            raise ApiProblem(422, "Invalid selection", str(error), field=f"selection.{index}") from None
    return compare(get_store(request), parsed, owner=principal.visible_owner, k=1,
                   max_positions=positions)  # fmt: skip


@router.get(
    "/plots/spectrum.png",
    response_class=Response,
    responses={**PNG_RESPONSE, **PROBLEM_RESPONSES},
    summary="Log eigenvalue against rank, median and 5-95 % band, one line per selection",
)
def spectrum_plot(
    request: Request,
    selection: Selections,
    principal: ReadPrincipal,
) -> Response:
    return _png(spectrum_png(_comparison(request, selection, principal, 2)))


@router.get(
    "/plots/homogeneity.png",
    response_class=Response,
    responses={**PNG_RESPONSE, **PROBLEM_RESPONSES},
    summary="Histogram of the pairwise homogeneity correlations, one per selection",
)
def homogeneity_plot(
    request: Request,
    selection: Selections,
    principal: ReadPrincipal,
    max_positions: Annotated[int, Query(ge=2, le=500)] = 100,
) -> Response:
    return _png(homogeneity_png(_comparison(request, selection, principal, max_positions)))


@router.get(
    "/plots/montage.png",
    response_class=Response,
    responses={**PNG_RESPONSE, **PROBLEM_RESPONSES},
    summary="Images of a spectrum's code moved along its top eigenvectors",
)
def montage_plot(
    request: Request,
    spectrum_id: Annotated[str, id_query("the spectrum whose code and axes are drawn")],
    principal: ReadPrincipal,
    axes: Annotated[int, Query(ge=1, le=16, description="eigenvectors, one row each")] = 6,
    steps: Annotated[int, Query(ge=2, le=15, description="images per row")] = 7,
) -> Response:
    store = get_store(request)
    record = visible_spectrum(store, spectrum_id, principal)
    # Imported results may name any model; only a served one is ever loaded to draw.
    ensure_model_served(record.model, get_settings(request))
    return _png(montage_png(store, spectrum_id, axes=axes, steps=steps))
