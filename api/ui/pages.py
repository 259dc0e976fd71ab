"""The web interface's pages: sign-in, jobs, spectra, comparisons, montages.

Each page reads through the store with the signed-in key's owner filter, exactly as the JSON
API does, and acts (cancel) through the same service functions; nothing here computes a
number that services/ does not already compute.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.ui import figures
from api.ui.session import CsrfChecked, UiUser, UserDep, sign_in, sign_out
from services import comparisons as comparison
from services import submission
from services.comparisons.figures import legend_label
from services.comparisons.requests import ComparisonRequest
from services.comparisons.stored import (
    SYNC_MAX_SPECTRA,
    census,
    spectra_count,
    submit_comparison,
    with_full_job_ids,
)
from services.comparisons.tables import comparison_tables, format_cell
from services.jsonable import jsonable
from services.patterns import TEXT_PATTERN
from services.store import JOB_STATUSES, TERMINAL_STATUSES, InvalidDataError, NotFoundError

router = APIRouter(include_in_schema=False)

PREFIX = "/ui"
JOBS_PER_PAGE = 50
# Positions drawn in a homogeneity heatmap (the matrix is N x N) and read for a band plot.
MAX_HEATMAP_POSITIONS = 60
MAX_PLOT_POSITIONS = 500
SelectionText = Annotated[str, Query(min_length=1, max_length=300, pattern=TEXT_PATTERN)]


def _store(request: Request) -> Any:
    return request.app.state.store


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    page: Response = request.app.state.templates.page(request, name, status_code, **context)
    return page


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- signing in ----------------------------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return _redirect(f"{PREFIX}/jobs")


@router.get("/login")
def login_form(request: Request, next: Annotated[str, Query(max_length=500)] = "") -> Response:
    return _page(request, "login.html", title="Sign in", next=next, error=None)


@router.post("/login")
async def login(
    request: Request,
    _csrf: CsrfChecked,
    api_key: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    record = (
        await run_in_threadpool(_store(request).verify_api_key, api_key.strip())
        if api_key
        else None
    )
    if record is None:
        return _page(
            request,
            "login.html",
            401,
            title="Sign in",
            next=next,
            error="This API key is not valid. Create one with "
            "`spectra keys create --owner NAME --scopes read,submit`.",
        )
    await sign_in(request, record.id)
    target = (
        next if next.startswith(f"{PREFIX}/") and not next.startswith("//") else f"{PREFIX}/jobs"
    )
    return _redirect(target)


@router.post("/logout")
def logout(request: Request, _csrf: CsrfChecked) -> RedirectResponse:
    sign_out(request)
    return _redirect(f"{PREFIX}/login")


# -- jobs ----------------------------------------------------------------------------------


def job_row(store: Any, job: Any) -> dict[str, Any]:
    """What the job list shows and refreshes: status, progress, rate and ETA."""
    progress = store.progress_of(job)
    finished = progress.done + progress.failed
    return {
        "id": job.id,
        "owner": job.owner,
        "status": job.status,
        "model": job.model or "",
        "method": job.spec.get("method", ""),
        "distance": job.spec.get("distance", ""),
        "planned": progress.planned,
        "done": progress.done,
        "failed": progress.failed,
        "percent": round(100.0 * finished / progress.planned, 1) if progress.planned else 0.0,
        "rate_per_s": progress.rate,
        "eta_s": progress.eta_s,
        "created_at": job.created_at.isoformat(timespec="seconds"),
        "error": job.error,
        "terminal": job.status in TERMINAL_STATUSES,
    }


def _jobs(request: Request, user: UiUser, status: str | None, offset: int) -> list[dict[str, Any]]:
    store = _store(request)
    jobs = store.list_jobs(
        owner=user.principal.visible_owner, status=status, limit=JOBS_PER_PAGE, offset=offset
    )
    return [job_row(store, job) for job in jobs]


@router.get("/jobs")
def jobs_page(
    request: Request,
    user: UserDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    status = status if status in JOB_STATUSES else None
    rows = _jobs(request, user, status, offset)
    return _page(
        request,
        "jobs.html",
        title="Jobs",
        jobs=rows,
        status=status,
        statuses=JOB_STATUSES,
        offset=offset,
        per_page=JOBS_PER_PAGE,
        campaigns=_campaigns(request, user),
    )


@router.get("/jobs.json")
def jobs_json(
    request: Request,
    user: UserDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    status = status if status in JOB_STATUSES else None
    return JSONResponse({"jobs": _jobs(request, user, status, offset)})


def _campaigns(request: Request, user: UiUser) -> list[Any] | None:
    """Campaigns, where the store has them (None: this server has none to show)."""
    lister = getattr(_store(request), "list_campaigns", None)
    if lister is None:
        return None
    return list(lister(owner=user.principal.visible_owner))


def _full_id(request: Request, user: UiUser, kind: str, value: str) -> str:
    """The full id that ``value`` names, by id or by unique prefix (the 8-character ids the
    pages print), among what this user may see: as every API route takes ids. An unknown
    prefix is the not-found page, an ambiguous or malformed one the page that says why."""
    full: str = _store(request).resolve_id(kind, value, user.principal.visible_owner)
    return full


# Before /jobs/{job_id}: that pattern would take "ID.json" as an id.
@router.get("/jobs/{job_id}.json")
def job_json(request: Request, user: UserDep, job_id: str) -> JSONResponse:
    store = _store(request)
    job_id = _full_id(request, user, "job", job_id)
    return JSONResponse(job_row(store, store.get_job(job_id, owner=user.principal.visible_owner)))


@router.get("/jobs/{job_id}")
def job_page(request: Request, user: UserDep, job_id: str) -> Response:
    store = _store(request)
    job = store.get_job(_full_id(request, user, "job", job_id), owner=user.principal.visible_owner)
    failures = store.latent_failures(job.id) if job.n_failed else []
    return _page(
        request,
        "job.html",
        title=f"Job {job.id[:8]}",
        job=job,
        row=job_row(store, job),
        spec_json=json.dumps(displayed_spec(job.spec), indent=2, sort_keys=True),
        resolved=job.resolved,
        failures=failures,
        can_cancel=user.principal.allows("submit") and job.status not in TERMINAL_STATUSES,
    )


def displayed_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as shown: explicit codes (up to 10,000 x 8,192 numbers) as their shape; the
    latent set under the model facts names them exactly."""
    latents = spec.get("latents")
    if isinstance(latents, dict) and isinstance(latents.get("values"), list):
        values = latents["values"]
        width = len(values[0]) if values and isinstance(values[0], list) else 0
        return {
            **spec,
            "latents": {**latents, "values": f"<{len(values)} codes of dimension {width}>"},
        }
    return spec


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, user: UserDep, _csrf: CsrfChecked, job_id: str) -> Response:
    if not user.principal.allows("submit"):
        return _page(
            request,
            "error.html",
            403,
            title="Not allowed",
            message="This API key lacks the 'submit' scope needed to cancel a job.",
        )
    job_id = _full_id(request, user, "job", job_id)
    submission.cancel(
        _store(request), request.app.state.dispatcher, job_id, user.principal.visible_owner
    )
    return _redirect(f"{PREFIX}/jobs/{job_id}")


# -- spectra -------------------------------------------------------------------------------


def _parse(texts: list[str]) -> list[comparison.Selection]:
    try:
        return [comparison.parse_selection(text) for text in texts]
    except (ValueError, ValidationError) as error:
        raise InvalidDataError(f"invalid selection: {error}") from None


@router.get("/spectra")
def spectra_page(
    request: Request,
    user: UserDep,
    selection: SelectionText,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """One selection (a job, or MODEL:DISTANCE:METHOD): band plot, heatmap, the spectra."""
    store = _store(request)
    owner = user.principal.visible_owner
    result = comparison.compare(
        store,
        _parse([selection]),
        owner=owner,
        k=1,
        max_positions=MAX_HEATMAP_POSITIONS,
        settings=request.app.state.settings,
    )
    loaded = result.selections[0]
    eigenvalues = loaded.eigenvalues[:MAX_PLOT_POSITIONS]
    series = [(legend_label(loaded), eigenvalues)]
    heatmap = None
    homogeneity = result.homogeneity[0]
    if homogeneity is not None:
        kept = [loaded.spectrum_ids[p] for p in homogeneity["positions"]]
        indices = [str(store.get_spectrum(sid).latent_index) for sid in kept]
        heatmap = figures.homogeneity_figure(np.asarray(homogeneity["log"]), indices)
    query = comparison.Selection.model_validate(loaded.selection.model_dump())
    listing = store.list_spectrum_summaries(
        job_id=query.job_id,
        model=query.model,
        distance=query.distance,
        method=query.method,
        owner=owner,
        limit=JOBS_PER_PAGE,
        offset=offset,
    )
    return _page(
        request,
        "spectra.html",
        title=f"Spectra: {loaded.label}",
        label=loaded.label,
        selection=selection,
        n_spectra=int(loaded.eigenvalues.shape[0]),
        n_plotted=int(eigenvalues.shape[0]),
        k=int(eigenvalues.shape[1]),
        d=loaded.d,
        spectrum_figures=figures.spectrum_variants(
            [(label, figures.bands_of(values)) for label, values in series]
        ),
        heatmap=heatmap,
        homogeneity=homogeneity
        and jsonable({k: v for k, v in homogeneity.items() if not isinstance(v, np.ndarray)}),
        spectra=listing,
        offset=offset,
        per_page=JOBS_PER_PAGE,
        notes=result.notes,
    )


@router.get("/spectra/{spectrum_id}")
def spectrum_page(request: Request, user: UserDep, spectrum_id: str) -> Response:
    store = _store(request)
    spectrum_id = _full_id(request, user, "spectrum", spectrum_id)
    try:
        record = store.get_spectrum(spectrum_id, owner=user.principal.visible_owner)
    except NotFoundError:
        raise NotFoundError(f"no spectrum {spectrum_id!r} visible to you") from None
    return _page(
        request,
        "spectrum.html",
        title=f"Spectrum {record.id[:8]}",
        spectrum=record,
        figure=figures.single_spectrum_figure(np.asarray(record.eigenvalues)),
        diagnostics=json.dumps(jsonable(record.diagnostics), indent=2, sort_keys=True),
    )


# -- comparisons ---------------------------------------------------------------------------


def _document_context(document: dict[str, Any], pictures: list[tuple[str, str]]) -> dict[str, Any]:
    """What ``_comparison.html`` shows: THE tables (cells formatted as every text format
    formats them), the chart under each normalisation from the document's bands, figures."""
    tables = [
        {
            "name": table.name,
            "caption": table.caption,
            "columns": table.columns,
            "rows": [[format_cell(cell) for cell in row] for row in table.rows],
        }
        for table in comparison_tables(document)
    ]
    series = [(m["label"], m["spectrum_bands"]) for m in document["members"]]
    return {
        "document": document,
        "tables": tables,
        "figures": figures.spectrum_variants(series),
        "pictures": pictures,
    }


@router.get("/compare")
def compare_page(
    request: Request,
    user: UserDep,
    selection: Annotated[list[str] | None, Query(max_length=comparison.MAX_SELECTIONS)] = None,
    k: Annotated[int, Query(ge=1, le=comparison.MAX_VECTORS)] = 10,
) -> Response:
    store = _store(request)
    owner = user.principal.visible_owner
    chosen = [s.strip() for s in selection or [] if s.strip()]
    finished = store.list_jobs(owner=owner, status="succeeded", limit=200, offset=0)
    context: dict[str, Any] = {
        "jobs": finished,
        "chosen": chosen,
        "k": k,
        "document": None,
        "error": None,
        "stored_link": None,
    }
    if chosen:
        query = "".join(f"selection={quote(c)}&" for c in chosen)
        try:
            parsed = _parse(chosen)
            asked = with_full_job_ids(store, ComparisonRequest(selections=parsed, k=k), owner)
            if spectra_count(census(store, asked, owner)) > SYNC_MAX_SPECTRA:
                # Too large for a page request: a stored comparison, computed by a worker.
                record, _ = submit_comparison(
                    store,
                    asked,
                    owner=user.principal.owner,
                    visible_owner=owner,
                    dispatch=request.app.state.dispatcher.dispatch_comparison,
                )
                context["stored_link"] = f"{PREFIX}/comparisons/{record.id}"
                return _page(request, "compare.html", title="Compare", **context)
            result = comparison.compare(
                store, parsed, owner=owner, k=k, settings=request.app.state.settings
            )
        except (NotFoundError, InvalidDataError, ValueError) as error:
            context["error"] = str(error)
        else:
            document = comparison.result_document(result)
            pictures = [("spectrum.png", f"{PREFIX}/figures/spectrum.png?{query}")]
            if any(h is not None for h in result.homogeneity):
                pictures.append(("homogeneity.png", f"{PREFIX}/figures/homogeneity.png?{query}"))
            context.update(_document_context(document, pictures), query=query)
    return _page(request, "compare.html", title="Compare", **context)


@router.get("/comparisons/{comparison_id}")
def stored_comparison_page(request: Request, user: UserDep, comparison_id: str) -> Response:
    """A stored comparison: its status while a worker computes it, then its document and its
    stored figures (the same ones the API serves)."""
    comparison_id = _full_id(request, user, "comparison", comparison_id)
    record = _store(request).get_comparison(comparison_id, owner=user.principal.visible_owner)
    context: dict[str, Any] = {"record": record, "document": None}
    if record.document is not None:
        base = f"{PREFIX}/comparisons/{record.id}/figures"
        names = sorted(
            (name for name in record.figures if name.endswith(".png")),
            key=lambda name: (not name.startswith("spectrum"), name),  # the spectra first
        )
        pictures = [(name, f"{base}/{name}") for name in names]
        context.update(_document_context(record.document, pictures))
    return _page(request, "comparison.html", title=f"Comparison {record.id[:8]}", **context)


@router.get("/comparisons/{comparison_id}/figures/{name}")
def stored_comparison_figure(
    request: Request, user: UserDep, comparison_id: str, name: str, download: bool = False
) -> Response:
    store = _store(request)
    comparison_id = _full_id(request, user, "comparison", comparison_id)
    store.get_comparison(comparison_id, owner=user.principal.visible_owner)  # 404 if not visible
    figure = store.comparison_figure(comparison_id, name)
    headers = {"Cache-Control": "no-store"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{comparison.file_stem(name)}"'
    return Response(figure.data, media_type=figure.media_type, headers=headers)


@router.get("/comparisons/{comparison_id}/tables")
def stored_comparison_tables(
    request: Request,
    user: UserDep,
    comparison_id: str,
    format: Annotated[str, Query(pattern="^(text|csv|markdown|latex)$")] = "csv",
) -> Response:
    comparison_id = _full_id(request, user, "comparison", comparison_id)
    record = _store(request).get_comparison(comparison_id, owner=user.principal.visible_owner)
    if record.document is None:
        raise InvalidDataError(f"comparison {comparison_id} is {record.status}: no tables yet")
    suffix = {"text": "txt", "csv": "csv", "markdown": "md", "latex": "tex"}[format]
    return Response(
        comparison.render_tables(record.document, format),
        media_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="comparison.{suffix}"'},
    )


@router.get("/compare.json")
def compare_json(
    request: Request,
    user: UserDep,
    selection: Annotated[list[str], Query(min_length=1, max_length=comparison.MAX_SELECTIONS)],
    k: Annotated[int, Query(ge=1, le=comparison.MAX_VECTORS)] = 10,
) -> Response:
    result = comparison.compare(
        _store(request),
        _parse(selection),
        owner=user.principal.visible_owner,
        k=k,
        settings=request.app.state.settings,
    )
    return Response(
        json.dumps(result.to_json(), indent=1),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="comparison.json"'},
    )


@router.get("/figures/{kind}.png")
def figure_png(
    request: Request,
    user: UserDep,
    kind: str,
    selection: Annotated[list[str] | None, Query(max_length=comparison.MAX_SELECTIONS)] = None,
    spectrum_id: Annotated[str | None, Query(max_length=64)] = None,
    axes: Annotated[int, Query(ge=1, le=16)] = 6,
    steps: Annotated[int, Query(ge=2, le=15)] = 7,
    download: bool = False,
) -> Response:
    """The API's PNG figures, for a signed-in browser (an <img> sends no bearer token)."""
    store = _store(request)
    owner = user.principal.visible_owner
    if kind == "montage":
        if not spectrum_id:
            raise InvalidDataError("a montage needs a spectrum (spectrum_id)")
        record = store.get_spectrum(spectrum_id, owner=owner)  # 404 when not visible
        from api.deps import ensure_model_served

        ensure_model_served(record.model, request.app.state.settings)
        data = comparison.montage_png(store, record.id, axes=axes, steps=steps)
    elif kind in ("spectrum", "homogeneity") and selection:
        result = comparison.compare(
            store,
            _parse(selection),
            owner=owner,
            k=1,
            max_positions=2 if kind == "spectrum" else 100,
            settings=request.app.state.settings,
        )
        data = (comparison.spectrum_png if kind == "spectrum" else comparison.homogeneity_png)(
            result
        )
    else:
        raise NotFoundError(f"no figure {kind!r} for these parameters")
    headers = {"Cache-Control": "no-store"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{kind}.png"'
    return Response(data, media_type="image/png", headers=headers)


# -- montages ------------------------------------------------------------------------------


@router.get("/montage")
def montage_page(
    request: Request,
    user: UserDep,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    spectrum_id: Annotated[str | None, Query(max_length=64)] = None,
    axes: Annotated[int, Query(ge=1, le=16)] = 4,
    steps: Annotated[int, Query(ge=2, le=15)] = 5,
) -> Response:
    store = _store(request)
    owner = user.principal.visible_owner
    jobs = store.list_jobs(owner=owner, status="succeeded", limit=200, offset=0)
    if job_id is None and spectrum_id:
        job_id = store.get_spectrum(spectrum_id, owner=owner).job_id
    job_id = job_id or (jobs[0].id if jobs else None)
    codes = (
        store.list_spectrum_summaries(job_id=job_id, owner=owner, limit=200, offset=0)
        if job_id
        else []
    )
    if spectrum_id is None and codes:
        spectrum_id = codes[0].id
    return _page(
        request,
        "montage.html",
        title="Montage",
        jobs=jobs,
        job_id=job_id,
        codes=codes,
        spectrum_id=spectrum_id,
        axes=axes,
        steps=steps,
    )
