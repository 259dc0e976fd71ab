"""Jobs: submit (JSON spec or ``.npy`` upload), list, get, cancel; export and import ``.npz``."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api.auth import Principal, ReadPrincipal, SubmitPrincipal
from api.codes import check_codes, parse_npy_codes, read_upload
from api.deps import (
    ensure_device_served,
    ensure_model_served,
    get_dispatcher,
    get_metrics,
    get_settings,
    get_store,
)
from api.errors import ApiProblem, problem_responses, validation_error
from api.metrics import ApiMetrics
from api.params import JobIdPath, text_query
from api.schemas import (
    JobDetail,
    JobList,
    JobSubmitted,
    JobView,
    job_detail,
    job_view_fields,
    json_response,
    page_of,
)
from services import submission
from services.config import Settings
from services.dispatch import Dispatcher
from services.jsonable import jsonable
from services.patterns import TEXT_PATTERN
from services.pipeline import JobSpec, dry_run_job, plan_and_measurement
from services.pipeline.costs import Workers
from services.store import StatusName

router = APIRouter(tags=["jobs"])

JobStatus = StatusName

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a submission safely: the same key and body return the same job.",
    ),
]

# Every problem status a route here may answer with (each route can meet a bad key, a down
# database, a malformed body...), documented once.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = problem_responses()


# The submission route's 200: the job an identical spec already made, or (dry_run=true) the plan,
# which creates nothing.
DRY_RUN_OR_EXISTING: dict[str, Any] = {
    "description": "An identical job already exists (the job is answered, nothing is created); "
    "or, with dry_run=true, the plan: chunks, products, time, memory and stored bytes per code",
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/JobSubmitted"},
                    {"type": "object", "title": "Plan", "description": "dry_run=true: the plan"},
                ]
            }
        }
    },
}


def _submitted_response(job: Any, created: bool) -> JSONResponse:
    body = JobSubmitted(**job_view_fields(job), created=created)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202 if created else 200,
        headers={"Location": body.links["self"]},
    )


def _submit(
    request: Request,
    spec: JobSpec,
    principal: Principal,
    idempotency_key: str | None,
) -> JSONResponse:
    store = get_store(request)
    dispatcher: Dispatcher = get_dispatcher(request)
    settings: Settings = get_settings(request)
    metrics: ApiMetrics = get_metrics(request)
    ensure_model_served(spec.model, settings)
    ensure_device_served(spec.device, dispatcher)
    job, created = submission.submit(
        store,
        settings,
        dispatcher,
        spec,
        principal.owner,
        idempotency_key,
    )
    if created:
        metrics.jobs_submitted.labels(spec.model, spec.method).inc()
    return _submitted_response(job, created)


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobSubmitted,
    responses={200: DRY_RUN_OR_EXISTING, **PROBLEM_RESPONSES},
    summary="Submit a job from a JSON spec (or, with dry_run, plan it)",
)
def submit_job(
    request: Request,
    spec: JobSpec,
    principal: SubmitPrincipal,
    idempotency_key: IdempotencyKey = None,
    dry_run: Annotated[
        bool,
        Query(
            description="plan only: chunks, products, time, memory and stored bytes per "
            "code; nothing is created"
        ),
    ] = False,
) -> JSONResponse:
    if dry_run:
        settings: Settings = get_settings(request)
        ensure_model_served(spec.model, settings)
        dispatcher: Dispatcher = get_dispatcher(request)
        workers = Workers.from_settings(settings)
        plan = dry_run_job(
            get_store(request),
            spec,
            principal.owner,
            settings=settings,
            profile_later=lambda inputs: dispatcher.measure_profile(inputs, workers),
        )
        return JSONResponse(jsonable(plan), status_code=200)
    return _submit(request, spec, principal, idempotency_key)


@router.post(
    "/jobs/upload",
    status_code=202,
    response_model=JobSubmitted,
    responses={200: {"model": JobSubmitted}, **PROBLEM_RESPONSES},
    summary="Submit a job whose codes come as a .npy upload",
)
def submit_job_upload(
    request: Request,
    principal: SubmitPrincipal,
    file: Annotated[UploadFile, File(description=".npy array of codes, shape (n, d)")],
    spec: Annotated[
        str,
        Form(description='the job spec as JSON, without "latents" (they come from the file)'),
    ] = "{}",
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    settings: Settings = get_settings(request)
    try:
        fields = json.loads(spec)
    except json.JSONDecodeError as error:
        raise ApiProblem(
            422, "Invalid request", f"spec is not JSON: {error}", field="spec"
        ) from None
    if not isinstance(fields, dict):
        raise ApiProblem(422, "Invalid request", "spec must be a JSON object", field="spec")
    if "latents" in fields:
        raise ApiProblem(
            422,
            "Invalid request",
            "latents come from the uploaded file; leave them out of spec",
            field="spec.latents",
        )
    codes = check_codes(
        parse_npy_codes(read_upload(file, settings.max_upload_bytes), settings), settings, "file"
    )
    try:
        job_spec = JobSpec.model_validate({**fields, "latents": {"values": codes.tolist()}})
    except ValidationError as error:
        raise validation_error(error, prefix="spec") from None
    return _submit(request, job_spec, principal, idempotency_key)


@router.get(
    "/jobs",
    response_model=JobList,
    responses=PROBLEM_RESPONSES,
    summary="List jobs",
)
def list_jobs(
    request: Request,
    principal: ReadPrincipal,
    status: JobStatus | None = None,
    model: Annotated[str | None, text_query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JobList:
    jobs = get_store(request).list_jobs(
        owner=principal.visible_owner, status=status, model=model, limit=limit, offset=offset
    )
    return JobList(
        items=[JobView.model_validate(job) for job in jobs], page=page_of(jobs, limit, offset)
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobDetail,
    responses=PROBLEM_RESPONSES,
    summary="A job's status, progress, rate, ETA, timings and per-latent failures",
)
async def get_job(
    request: Request,
    job_id: JobIdPath,
    principal: ReadPrincipal,
) -> Response:
    # async: the most polled route waits on the database without a worker thread.
    store = get_store(request)
    job = await store.get_job_async(job_id, owner=principal.visible_owner)
    # Most jobs have no failed latent: skip that query for them (status is polled often).
    failures = await store.latent_failures_async(job.id) if job.n_failed else []
    return json_response(job_detail(job, store.progress_of(job), failures))


@router.get(
    "/jobs/{job_id}/plan",
    responses=PROBLEM_RESPONSES,
    summary="The planner's estimate per code beside what the job's spectra measured",
)
def job_plan(request: Request, job_id: JobIdPath, principal: ReadPrincipal) -> JSONResponse:
    report = plan_and_measurement(get_store(request), job_id, principal.visible_owner)
    return JSONResponse(jsonable(report))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobView,
    responses=PROBLEM_RESPONSES,
    summary="Cancel a job (queued chunks are revoked, running ones stop at the next code)",
)
def cancel_job(
    request: Request,
    job_id: JobIdPath,
    principal: SubmitPrincipal,
) -> JobView:
    job = submission.cancel(
        get_store(request), get_dispatcher(request), job_id, principal.visible_owner
    )
    return JobView.model_validate(job)


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobView,
    responses=PROBLEM_RESPONSES,
    summary="Resume a finished job: compute again its latents that failed and its cancelled "
    "chunks (409 while it runs, or when nothing is missing)",
)
def retry_job(
    request: Request,
    job_id: JobIdPath,
    principal: SubmitPrincipal,
) -> JobView:
    job = submission.resume(
        get_store(request), get_dispatcher(request), job_id, principal.visible_owner
    )
    return JobView.model_validate(job)


@router.get(
    "/jobs/{job_id}/export.npz",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **PROBLEM_RESPONSES},
    summary="The job's spectra in the published .npz layout (eva ascending, evc, feat, meta)",
)
def export_job(
    request: Request,
    job_id: JobIdPath,
    principal: ReadPrincipal,
    k: Annotated[int | None, Query(ge=1, le=100_000, description="eigenpairs per spectrum")] = None,
) -> Response:
    data = submission.export_npz(get_store(request), job_id, principal.visible_owner, k)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.npz"'},
    )


@router.post(
    "/jobs/import",
    status_code=201,
    response_model=JobSubmitted,
    responses={200: {"model": JobSubmitted}, **PROBLEM_RESPONSES},
    summary="Import a published-layout .npz as a finished job",
)
def import_job(
    request: Request,
    principal: SubmitPrincipal,
    file: Annotated[UploadFile, File(description=".npz with eva, evc, feat and meta")],
    model: Annotated[
        str | None, Form(max_length=200, pattern=TEXT_PATTERN, description="overrides meta.model")
    ] = None,
    distance: Annotated[str | None, Form(max_length=100, pattern=TEXT_PATTERN)] = None,
    method: Annotated[str | None, Form(max_length=50, pattern=TEXT_PATTERN)] = None,
    image_range: Annotated[
        Literal["[-1,1]", "[0,1]"] | None,
        Form(
            description="the images' range the file's metrics were computed on (GAN-Geometry: "
            "[0,1]); mse eigenvalues are rescaled to the service's [-1,1] (x4), recorded"
        ),
    ] = None,
) -> JSONResponse:
    settings: Settings = get_settings(request)
    data = read_upload(file, settings.max_upload_bytes)
    overrides = {
        key: value
        for key, value in {
            "model": model,
            "distance": distance,
            "method": method,
            "image_range": image_range,
        }.items()
        if value
    }
    # The label is data only if refused here: only a model this server serves is accepted,
    # so no face ever loads a file an HTTP client named (python:, stylegan2-ada:, ...).
    job, created = submission.import_npz(
        get_store(request),
        settings,
        principal.owner,
        data,
        overrides,
        check_model=lambda label: ensure_model_served(label, settings),
    )
    body = JobSubmitted(**job_view_fields(job), created=created)
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=201 if created else 200,
        headers={"Location": body.links["self"]},
    )
