"""Optimisation jobs: submit (JSON spec, or target images uploaded as PNG / .npy), per-target
results, a comparison report at equal budgets, and the convergence and montage figures.

Status, progress and cancelling are the ordinary job routes (`/v1/jobs/{id}`): an
optimisation job is a job of kind "optimise" on the same queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api.auth import ReadPrincipal, SubmitPrincipal
from api.codes import read_upload
from api.deps import DispatcherDep, SettingsDep, StoreDep, ensure_model_served, resolved_ids
from api.errors import ApiProblem, validation_error
from api.params import JobIdPath
from api.routes.jobs import PROBLEM_RESPONSES, _submitted_response
from services.figure_files import MEDIA_TYPES as FORMATS
from services.pipeline.optimisation import submit_optimisation
from services.pipeline.optimise_report import (
    ReportError,
    convergence_figure,
    montage_figure,
    report,
)
from services.pipeline.optimise_spec import OptimiseSpec, decode_target_file
from services.pipeline.spec import SpecError

router = APIRouter(tags=["optimisations"])

MAX_TARGET_FILES = 256
# Optimisation job ids (or unique prefixes); repeat to compare.
JobIds = Annotated[list[str], resolved_ids("optimisation", "job", max_items=8)]
Format = Literal["png", "svg", "pdf"]
T = TypeVar("T")


def _reported(call: Callable[[], T]) -> T:
    try:
        return call()
    except ReportError as error:
        raise ApiProblem(422, "Invalid report request", error.reason, field=error.field) from None


@router.post(
    "/optimisations",
    status_code=202,
    responses={200: {"description": "An identical job already exists"}, **PROBLEM_RESPONSES},
    summary="Submit an optimisation job (targets generated from codes or a stored target set)",
)
def submit_json(
    spec: OptimiseSpec,
    principal: SubmitPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> JSONResponse:
    ensure_model_served(spec.model, settings)
    job, created = submit_optimisation(
        store, spec, principal.owner, dispatcher.dispatch, settings=settings
    )
    return _submitted_response(job, created)


@router.post(
    "/optimisations/upload",
    status_code=202,
    responses={200: {"description": "An identical job already exists"}, **PROBLEM_RESPONSES},
    summary="Submit an optimisation job whose targets are uploaded images (PNG or .npy)",
)
def submit_upload(
    principal: SubmitPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    files: Annotated[
        list[UploadFile],
        File(description="target images: PNGs, or .npy arrays (C, H, W) / (n, C, H, W) in [-1, 1]"),
    ],
    spec: Annotated[str, Form(description='the spec as JSON, without "targets"')] = "{}",
) -> JSONResponse:
    try:
        fields = json.loads(spec)
    except json.JSONDecodeError as error:
        raise ApiProblem(
            422, "Invalid request", f"spec is not JSON: {error}", field="spec"
        ) from None
    if not isinstance(fields, dict) or "targets" in fields:
        raise ApiProblem(
            422,
            "Invalid request",
            "spec must be a JSON object without targets (they are the uploaded files)",
            field="spec",
        )
    try:
        job_spec = OptimiseSpec.model_validate(fields)
    except ValidationError as error:
        raise validation_error(error, "spec") from None
    ensure_model_served(job_spec.model, settings)
    if len(files) > MAX_TARGET_FILES:
        raise ApiProblem(422, "Invalid request", f"at most {MAX_TARGET_FILES} files", field="files")
    arrays = [
        decode_target_file(
            read_upload(upload, settings.max_upload_bytes, "files"), upload.filename or "file"
        )
        for upload in files
    ]
    shapes = {array.shape[1:] for array in arrays}
    if len(shapes) != 1:
        raise SpecError("targets", f"the uploaded images differ in shape: {sorted(shapes)}")
    job, created = submit_optimisation(
        store,
        job_spec,
        principal.owner,
        dispatcher.dispatch,
        images=np.concatenate(arrays),
        settings=settings,
    )
    return _submitted_response(job, created)


@router.get(
    "/optimisations/report",
    responses=PROBLEM_RESPONSES,
    summary="Steps to a loss threshold and loss at equal budgets, medians with 95 % intervals",
)
def optimisation_report(
    job: JobIds,
    principal: ReadPrincipal,
    store: StoreDep,
    threshold: Annotated[float | None, Query(gt=0, allow_inf_nan=False)] = None,
    step_budget: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    evaluation_budget: Annotated[int | None, Query(ge=0, le=100_000_000)] = None,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = 0,
) -> JSONResponse:
    result = _reported(
        lambda: report(
            store,
            job,
            principal.visible_owner,
            threshold=threshold,
            step_budget=step_budget,
            evaluation_budget=evaluation_budget,
            seed=seed,
        )
    )
    return JSONResponse(_finite(result))


@router.get(
    "/optimisations/{job_id}/results",
    responses=PROBLEM_RESPONSES,
    summary="Per target: loss per step, final code, final distance",
)
def optimisation_results(
    job_id: JobIdPath, principal: ReadPrincipal, store: StoreDep
) -> JSONResponse:
    job = store.get_job(job_id, principal.visible_owner)  # 404 for a job this key may not see
    if job.resolved.get("kind") != "optimise":
        raise ApiProblem(
            422, "Not an optimisation job", f"job {job_id} computes spectra", field="job_id"
        )
    results = store.optimisation_results(job.id)
    return JSONResponse(
        {
            "job_id": job.id,
            "status": job.status,
            "optimiser": job.resolved["optimiser"],
            "results": [
                {
                    "target_index": r.target_index,
                    "final_loss": r.final_loss,
                    "steps": r.steps,
                    "restarts": r.restarts,
                    "best_restart": r.best_restart,
                    "loss_per_step": r.curve.tolist(),
                    "evaluations": r.evaluations.tolist(),
                    "final_code": r.final_code.tolist(),
                    "diagnostics": r.diagnostics,
                    "links": {"image": f"/v1/plots/inversions.png?job={job.id}"},
                }
                for r in results
            ],
        }
    )


def _figure(data: bytes, fmt: str) -> Response:
    return Response(data, media_type=FORMATS[fmt], headers={"Cache-Control": "no-store"})


@router.get(
    "/plots/convergence.{fmt}",
    response_class=Response,
    responses=PROBLEM_RESPONSES,
    summary="Loss against steps or evaluations: median and 25-75 % band, one line per job",
)
def convergence(
    fmt: Format,
    job: JobIds,
    principal: ReadPrincipal,
    store: StoreDep,
    x: Literal["steps", "evaluations"] = "steps",
    threshold: Annotated[float | None, Query(gt=0, allow_inf_nan=False)] = None,
) -> Response:
    return _figure(
        _reported(
            lambda: convergence_figure(
                store,
                job,
                principal.visible_owner,
                x_axis=x,
                threshold=threshold,
                fmt=fmt,
            )
        ),
        fmt,
    )


@router.get(
    "/plots/inversions.{fmt}",
    response_class=Response,
    responses=PROBLEM_RESPONSES,
    summary="Targets beside each job's reconstructions (jobs on the same targets)",
)
def inversions(
    fmt: Format,
    job: JobIds,
    principal: ReadPrincipal,
    store: StoreDep,
    max_targets: Annotated[int, Query(ge=1, le=32)] = 8,
) -> Response:
    return _figure(
        _reported(
            lambda: montage_figure(
                store,
                job,
                principal.visible_owner,
                max_targets=max_targets,
                fmt=fmt,
            )
        ),
        fmt,
    )


def _finite(value: Any) -> Any:
    """JSON has no infinity: a threshold never reached is reported as null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
