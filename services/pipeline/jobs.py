"""Submitting and cancelling jobs: the glue between a spec, the store and an executor.

`dispatch` and `revoke` are callables so that this module knows nothing of Celery: the API
passes the Celery ones (worker.tasks), the embedded CLI passes none and runs the job itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from services.config import Settings
from services.geometry import GeometryError
from services.pipeline import costs
from services.pipeline.probe import ProbeOverBudgetError
from services.pipeline.spec import JobSpec, ResolvedSpec, SpecError, resolve_spec
from services.store import JobRecord, Store

log = logging.getLogger(__name__)

MEASURED_SPECTRA = 500

Dispatch = Callable[[list[str]], None]
# Hands a job accepted before its model had a cost profile to a worker that plans it.
PlanLater = Callable[[str], None]
# Asks a worker to measure a model's cost profile (a dry run of an unprofiled model).
ProfileLater = Callable[[dict[str, Any]], None]


def submit_job(
    store: Store,
    spec: JobSpec,
    owner: str,
    dispatch: Dispatch | None,
    *,
    settings: Settings,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
    plan_later: PlanLater | None = None,
) -> tuple[JobRecord, bool]:
    """Validate and resolve `spec`, write the job and its chunks in one transaction, and only
    then hand the chunk ids to `dispatch`. Returns (job, created): the same spec from the same
    owner again gives the existing job, and finished work is not dispatched again.

    A job whose model has no cost profile yet is written without chunks and handed to
    `plan_later` (a worker measures the profile and plans it: services/pipeline/costs.py);
    without `plan_later` (the embedded command line) it is planned here, at once.

    Raises SpecError (or the store's NotFoundError for an unknown latent set) with nothing
    written but possibly a deduplicated latent set. If dispatch fails after the commit, the
    job is kept and the reaper dispatches its chunks once the broker answers.

    ``idempotency_key`` (with the hash of the request it came with) is claimed in the
    transaction that creates the job: IdempotencyConflictError, and no job, if the key is
    bound to another request.
    """
    plan = resolve_spec(store, spec, owner, settings=settings)
    job, created = store_and_dispatch(
        store,
        owner,
        spec.model,
        spec.model_dump(mode="json", exclude_none=True),
        plan,
        dispatch,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
    )
    if plan.pending and job.status == "queued" and not store.list_chunks(job.id):
        _plan_pending(store, job.id, settings, dispatch, plan_later)
        job = store.get_job(job.id)
    return job, created


def _plan_pending(
    store: Store,
    job_id: str,
    settings: Settings,
    dispatch: Dispatch | None,
    plan_later: PlanLater | None,
) -> None:
    if plan_later is None:
        costs.plan_pending_job(store, job_id, costs.Workers.from_settings(settings), dispatch)
        return
    try:
        plan_later(job_id)
    except Exception:
        log.exception(
            "job %s is stored but its planning could not be enqueued; the reaper of a "
            "running worker enqueues it once the broker answers",
            job_id,
        )


def store_and_dispatch(
    store: Store,
    owner: str,
    model: str,
    spec_doc: dict[str, Any],
    plan: ResolvedSpec,
    dispatch: Dispatch | None,
    *,
    idempotency_key: str | None = None,
    request_sha256: str | None = None,
) -> tuple[JobRecord, bool]:
    """Write a resolved job (of any kind) and its chunks in one transaction, then dispatch its
    still-queued chunks. Returns (job, created). A job waiting for its plan is written with
    no chunks (the worker that plans it attaches them)."""
    facts = plan.generator_facts
    store.upsert_generator(
        model, plan.generator_family, plan.latent_dim, facts.get("weights_sha256"), facts
    )
    job, created = store.create_job(
        owner,
        spec_doc,
        plan.resolved,
        plan.spec_hash,
        plan.latent_set_id,
        plan.n_latents,
        [] if plan.pending else plan.chunks,
        idempotency_key=idempotency_key,
        request_sha256=request_sha256,
        estimate=plan.estimate,
    )
    if dispatch is None:
        return job, created
    # A job seen before is dispatched again only for its still-queued chunks (heals a lost
    # message); its claimed and finished chunks are never sent again.
    queued = [chunk.id for chunk in store.list_chunks(job.id) if chunk.status == "queued"]
    if queued and (created or not job.cancel_requested):
        try:
            dispatch(queued)
        except Exception:
            log.exception(
                "job %s is stored but its chunks could not be enqueued; the reaper of a "
                "running worker enqueues them once the broker answers",
                job.id,
            )
    return job, created


def dry_run_job(
    store: Store,
    spec: JobSpec,
    owner: str,
    *,
    settings: Settings,
    profile_later: ProfileLater | None = None,
) -> dict[str, Any]:
    """What `submit_job` would create, without creating anything: the resolved spec, its
    chunks and the planner's estimate (the same estimate the submission records, from the
    same stored profile). Refuses (SpecError) exactly what submit refuses. A model with no
    profile yet: with `profile_later`, a worker is asked to measure it and the answer says
    the plan is pending; without, it is measured here (the embedded command line)."""
    plan: ResolvedSpec = resolve_spec(store, spec, owner, settings=settings, dry_run=True)
    if plan.pending:
        inputs = costs.CostInputs.from_resolved(plan.resolved)
        workers = costs.Workers.from_settings(settings)
        if profile_later is None:
            try:
                costs.measured_profile(store, inputs, workers)
            except (GeometryError, ProbeOverBudgetError) as error:
                raise SpecError("model", f"the planner's probe failed: {error}") from error
        else:
            try:
                profile_later(inputs.document())
            except Exception:
                log.exception("could not ask a worker to measure the profile of %s", spec.model)
        # Measured here, or by an in-process worker: plan from it (refusing what fits no worker).
        if store.cost_profile(costs.key_sha256(costs.profile_key(inputs, workers))) is not None:
            plan = resolve_spec(store, spec, owner, settings=settings, dry_run=True)
    blocks = [chunk.column_block for chunk in plan.chunks if chunk.column_block is not None]
    return {
        "dry_run": True,
        "n_latents": plan.n_latents,
        "latent_dim": plan.latent_dim,
        "chunks": len(plan.chunks),
        "column_blocks_per_code": len(blocks) // max(1, plan.n_latents) if blocks else None,
        "plan": plan.plan,
        "resolved": plan.resolved,
    }


def plan_and_measurement(store: Store, job_id: str, owner: str | None = None) -> dict[str, Any]:
    """A job's planned costs per code beside what its stored spectra measured (medians of
    time and products, the largest peak memory), and their ratios."""
    job = store.get_job(job_id, owner=owner)
    # The recorded estimate has the times; jobs of older versions have resolved["plan"].
    plan = dict(job.estimate or job.resolved.get("plan") or {})
    per_code = dict(plan.get("per_code") or {})
    # The first page of spectra is a sample large enough for medians and the largest peak.
    diagnostics = [s.diagnostics for s in store.list_spectra(job_id=job.id, limit=MEASURED_SPECTRA)]

    def figures(key: str) -> list[float]:
        return [float(d[key]) for d in diagnostics if isinstance(d.get(key), int | float)]

    def median(key: str) -> float | None:
        values = figures(key)
        return float(np.median(values)) if values else None

    def largest(key: str) -> float | None:
        values = figures(key)
        return max(values) if values else None

    measured = {
        "codes": len(diagnostics),
        "seconds": median("wall_time_s"),
        "products": median("products"),
        "peak_rss_bytes": largest("peak_rss_bytes"),
        "peak_device_bytes": largest("peak_device_bytes"),
    }
    peak = measured["peak_device_bytes"] or measured["peak_rss_bytes"]
    ratios = {
        "seconds": _ratio(measured["seconds"], per_code.get("seconds")),
        "peak_bytes": _ratio(peak, per_code.get("peak_bytes")),
        "products": _ratio(measured["products"], per_code.get("products")),
    }
    return {
        "job_id": job.id,
        "status": job.status,
        "estimate": plan,
        "measured": measured,
        "measured_over_estimate": ratios,
    }


def _ratio(measured: float | None, estimate: Any) -> float | None:
    if measured is None or not isinstance(estimate, int | float) or estimate <= 0:
        return None
    return measured / float(estimate)


def cancel_job(
    store: Store, job_id: str, revoke: Callable[[list[str]], None] | None = None
) -> JobRecord:
    """Cancel cooperatively: the flag is set (running chunks stop at their next latent and
    keep what they stored), then the still-queued chunks are revoked at the broker."""
    queued = [chunk.id for chunk in store.list_chunks(job_id) if chunk.status == "queued"]
    store.request_cancel(job_id)  # also closes the queued chunks, so no claim can start them
    if revoke is not None and queued:
        try:
            revoke(queued)
        except Exception:  # a queued chunk that still runs sees the flag and stops at once
            log.exception("could not revoke the queued chunks of job %s", job_id)
    return store.get_job(job_id)
