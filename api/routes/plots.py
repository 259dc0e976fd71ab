"""Figures: spectrum plot, homogeneity histograms and heatmap, eigen-axis montage — as PNG
(the ``*.png`` routes) or in any of PNG, SVG and PDF (``?format=``).

Selections are given in the query as ``selection=JOB_ID`` or ``selection=MODEL:DISTANCE:METHOD``
(repeatable), the same text the command line takes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import StringConstraints

from api.auth import Principal, ReadPrincipal
from api.deps import ensure_model_served, get_settings, get_store
from api.errors import ApiProblem
from api.params import TEXT_PATTERN, CodeFromQuery, SpectrumIdQuery
from api.routes.jobs import PROBLEM_RESPONSES
from api.routes.spectra import visible_spectrum
from services.comparisons import (
    MAX_SELECTIONS,
    Comparison,
    compare,
    heatmap_figure,
    homogeneity_figure,
    homogeneity_png,
    montage_figure,
    montage_png,
    parse_selection,
    spectrum_figure,
    spectrum_png,
)
from services.figure_files import MEDIA_TYPES

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
                   max_positions=positions, settings=get_settings(request))  # fmt: skip


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
    spectrum_id: SpectrumIdQuery,
    principal: ReadPrincipal,
    axes: Annotated[int, Query(ge=1, le=16, description="eigenvectors, one row each")] = 6,
    steps: Annotated[int, Query(ge=2, le=15, description="images per row")] = 7,
) -> Response:
    store = get_store(request)
    record = visible_spectrum(store, spectrum_id, principal)
    # Imported results may name any model; only a served one is ever loaded to draw.
    ensure_model_served(record.model, get_settings(request))
    return _png(montage_png(store, spectrum_id, axes=axes, steps=steps))


# -- figures in any format (png, svg, pdf) ---------------------------------------------------

FigureFormatQuery = Annotated[
    Literal["png", "svg", "pdf"], Query(alias="format", description="png, svg or pdf")
]
FIGURE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {media: {} for media in MEDIA_TYPES.values()}, "description": "a figure"}
}


def _figure(data: bytes, fmt: str, name: str) -> Response:
    return Response(
        data, media_type=MEDIA_TYPES[fmt],
        headers={"Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{name}.{fmt}"'},
    )  # fmt: skip


@router.get("/plots/spectrum", response_class=Response,
            responses={**FIGURE_RESPONSE, **PROBLEM_RESPONSES},
            summary="Spectra of the selections, optionally normalised (λ/λ₁ or λ/trace)")  # fmt: skip
def spectrum_figure_route(
    request: Request,
    selection: Selections,
    principal: ReadPrincipal,
    fmt: FigureFormatQuery = "png",
    normalise: Annotated[Literal["none", "top", "trace"] | None, Query()] = None,
) -> Response:
    result = _comparison(request, selection, principal, 2)
    return _figure(spectrum_figure(result, normalisation=normalise, fmt=fmt), fmt, "spectrum")


@router.get("/plots/homogeneity", response_class=Response,
            responses={**FIGURE_RESPONSE, **PROBLEM_RESPONSES},
            summary="Histograms of pairwise homogeneity (log or linear scale), one per selection")  # fmt: skip
def homogeneity_figure_route(
    request: Request,
    selection: Selections,
    principal: ReadPrincipal,
    fmt: FigureFormatQuery = "png",
    scale: Annotated[Literal["log", "linear"], Query()] = "log",
    max_positions: Annotated[int, Query(ge=2, le=500)] = 100,
) -> Response:
    result = _comparison(request, selection, principal, max_positions)
    return _figure(homogeneity_figure(result, scale=scale, fmt=fmt), fmt, f"homogeneity-{scale}")


@router.get("/plots/heatmap", response_class=Response,
            responses={**FIGURE_RESPONSE, **PROBLEM_RESPONSES},
            summary="The homogeneity matrix of one selection as a heatmap")  # fmt: skip
def heatmap_figure_route(
    request: Request,
    selection: Annotated[SelectionText, Query(description="JOB_ID or MODEL:DISTANCE:METHOD")],
    principal: ReadPrincipal,
    fmt: FigureFormatQuery = "png",
    scale: Annotated[Literal["log", "linear"], Query()] = "log",
    max_positions: Annotated[int, Query(ge=2, le=500)] = 100,
) -> Response:
    result = _comparison(request, [selection], principal, max_positions)
    return _figure(heatmap_figure(result, 0, scale=scale, fmt=fmt), fmt, f"heatmap-{scale}")


@router.get("/plots/montage", response_class=Response,
            responses={**FIGURE_RESPONSE, **PROBLEM_RESPONSES},
            summary="An annotated montage: a code moved along a spectrum's top eigenvectors")  # fmt: skip
def montage_figure_route(
    request: Request,
    spectrum_id: SpectrumIdQuery,
    principal: ReadPrincipal,
    fmt: FigureFormatQuery = "png",
    code_from: CodeFromQuery = None,
    code_seed: Annotated[int, Query(ge=0, description="seed of the code for directions")] = 0,
    axes: Annotated[int, Query(ge=1, le=16, description="eigenvectors, one row each")] = 6,
    steps: Annotated[int, Query(ge=2, le=15, description="images per row")] = 7,
) -> Response:
    store = get_store(request)
    record = visible_spectrum(store, spectrum_id, principal)
    if code_from is not None:
        visible_spectrum(store, code_from, principal)
    ensure_model_served(record.model, get_settings(request))
    data = montage_figure(store, spectrum_id, axes=axes, steps=steps, code_from=code_from,
                          code_seed=code_seed, fmt=fmt)  # fmt: skip
    return _figure(data, fmt, f"montage-{spectrum_id[:8]}")
