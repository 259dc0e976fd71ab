"""Planning a job's costs without holding the request that submits it.

A model's cost profile (what services/pipeline/probe.py measures) is measured once per
(weights, space, distance, route, device kind, thread count, workers per host) by a worker and
stored; every plan after reads it, so a dry run and the real submission of the same spec give
the same estimate and name the profile and when it was measured. At submission (in the API's
request, or the command line) nothing heavier than a meta-device pass runs:

- a direction method (SeFa, GANSpace), or a latent below SPECTRA_PLAN_PROBE_MIN_DIM: planned
  from counts at once, as before;
- a job whose lower bound of memory by the architecture's counts (weights, output features:
  services/pipeline/shapes.py) exceeds the worker's budget at every tangent batch: refused
  at once, naming what would fit by the same bound;
- a stored profile: planned from it at once (refused at once when it fits no worker);
- otherwise the job is accepted without chunks and a worker measures the profile (its probe
  kept within its share of the budget, and only at batches the counts of a meta-device pass
  say fit), then plans
  the job: chunks attached and dispatched, or the job ends `refused` with the message the
  422 would have given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from services.config import Settings
from services.geometry import Distance, Generator, GeometryError
from services.method_registry import DIRECTION_METHODS
from services.pipeline import estimate as cost_model
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.planning import chunk_plans
from services.pipeline.resolved import ResolvedSpectra
from services.pipeline.resources import worker_budget_bytes
from services.pipeline.shapes import model_counts, output_counts
from services.store import CostProfileRecord, Store

log = logging.getLogger(__name__)

PROFILE_VERSION = 1  # bumped when the probe measures differently: older profiles are not read


@dataclass(frozen=True)
class CostInputs:
    """The parts of a resolved job that decide its costs."""

    model: str
    weights_sha256: str | None
    space: str
    psi: float | None
    distance: str | None
    distance_options: dict[str, Any]
    method: str
    dtype: str
    top_k: int | None
    batch: int | None
    block_columns: int | None
    n_latents: int
    latent_dim: int
    chunk_size: int | None
    device: str | None  # the job's own device, if it named one

    @classmethod
    def from_resolved(cls, resolved: dict[str, Any]) -> CostInputs:
        job = ResolvedSpectra.from_document(resolved)
        return cls(
            model=job.model,
            weights_sha256=job.generator.weights_sha256,
            space=job.space,
            psi=job.psi,
            distance=job.distance,
            distance_options=job.distance_options,
            method=job.method,
            dtype=job.dtype,
            top_k=job.top_k,
            batch=job.batch,
            block_columns=job.block_columns,
            n_latents=job.n_latents,
            latent_dim=job.generator.latent_dim,
            chunk_size=job.chunk_size,
            device=job.device,
        )

    def document(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def probe_dtype(self) -> str:
        return "float64" if self.method == "lanczos" else self.dtype

    def request(self) -> cost_model.Request:
        return cost_model.Request(
            method=self.method,
            dtype=self.dtype,
            top_k=self.top_k,
            batch=self.batch,
            block_columns=self.block_columns,
            vector_dtype=self.dtype,
        )

    def chunks(self) -> int:
        return len(
            chunk_plans(
                self.method, self.n_latents, self.latent_dim, self.block_columns, self.chunk_size
            )
        )


@dataclass(frozen=True)
class Workers:
    """What the settings say of the workers a plan is for."""

    device: str  # where this process loads models (and a worker probes)
    memory_gb: float | None
    threads: int | None
    per_host: int
    probe_min_dim: int
    nvidia_code_dir: str | None = None  # where NVIDIA pickles find their code

    @classmethod
    def from_settings(cls, settings: Settings) -> Workers:
        return cls(
            device=settings.device,
            memory_gb=settings.worker_memory_gb,
            threads=settings.worker_threads,
            per_host=settings.workers_per_host,
            probe_min_dim=settings.plan_probe_min_dim,
            nvidia_code_dir=settings.nvidia_code_dir or None,
        )

    def job_device(self, inputs: CostInputs) -> str:
        return inputs.device or self.device

    def budget(self, inputs: CostInputs) -> int:
        return worker_budget_bytes(self.memory_gb, self.job_device(inputs))

    def job_counts(self, inputs: CostInputs) -> cost_model.JobCounts:
        return cost_model.JobCounts(
            inputs.n_latents, inputs.chunks(), self.job_device(inputs), self.budget(inputs)
        )


def profile_key(inputs: CostInputs, workers: Workers) -> dict[str, Any]:
    """What a profile is measured for. One probe covers every route in its dtype (the
    jacobian's tangents, the column blocks' pull-backs, the double-backward products), so
    the route's part of the key is the probe's dtype."""
    device = workers.job_device(inputs)
    return {
        "version": PROFILE_VERSION,
        "model": inputs.model,
        "weights_sha256": inputs.weights_sha256,
        "space": inputs.space,
        "psi": inputs.psi,
        "distance": inputs.distance,
        "distance_options": dict(sorted(inputs.distance_options.items())),
        "route_dtype": inputs.probe_dtype,
        "device_kind": device.split(":")[0],
        "threads": workers.threads,
        "workers_per_host": workers.per_host,
    }


def key_sha256(key: dict[str, Any]) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def profile_reference(record: CostProfileRecord) -> dict[str, Any]:
    """How a plan names the profile it read."""
    return {
        "id": record.id,
        "key_sha256": record.key_sha256,
        "measured_at": record.measured_at.isoformat(),
        "probe_seconds": record.probe_seconds,
    }


@dataclass(frozen=True)
class Planned:
    """A plan made at submission: its estimate, or (when it fits no worker) the refusal;
    `pending`: no profile yet, a worker measures it and plans the job."""

    estimate: dict[str, Any]
    refusal: str | None = None
    refused_field: str = "method"
    pending: bool = False


PENDING_NOTE = (
    "no cost profile of this model yet: a worker measures it and plans the job before its "
    "chunks run (a job that then fits no worker ends refused, with the reason)"
)


def plan_at_submit(
    store: Store,
    inputs: CostInputs,
    workers: Workers,
    generator: Generator,
    distance: Distance | None,
) -> Planned:
    """The plan of a job at submission, with no probe (see the module's docstring)."""
    job = workers.job_counts(inputs)
    if inputs.method in DIRECTION_METHODS or distance is None:
        return Planned({"route": "sefa", "worker_budget_bytes": job.budget, "probed": False})
    request = inputs.request()
    if inputs.latent_dim < workers.probe_min_dim:
        return Planned(cost_model.plan_from_counts(request, inputs.latent_dim, job).as_dict())
    counts = output_counts(generator, distance)
    if counts is not None:
        floor, advice = cost_model.plan_from_floor(counts, request, job)
        if not floor.fits:
            return _refused(floor, advice)
    record = store.cost_profile(key_sha256(profile_key(inputs, workers)))
    if record is not None:
        estimate, advice = cost_model.plan_from_probe(
            cost_model.Probe.from_document(record.profile), request, job, profile_reference(record)
        )
        return _refused(estimate, advice) if not estimate.fits else Planned(estimate.as_dict())
    pending = cost_model.plan_from_counts(request, inputs.latent_dim, job).as_dict()
    pending.update(profile=None, pending=PENDING_NOTE)
    return Planned(pending, pending=True)


def _refused(estimate: cost_model.JobEstimate, advice: list[str]) -> Planned:
    field = advice[0].split("=")[0].split(" ")[-1] if advice else "method"
    known = ("batch", "block_columns", "method", "top_k", "dtype")
    return Planned(
        estimate.as_dict(),
        refusal=cost_model.refusal_message(estimate, advice),
        refused_field=field if field in known else "method",
    )


# --------------------------------------------------------------------------- on a worker


class RefusedByCountsError(ValueError):
    """The counts of a meta-device pass show the job fits no worker: no probe is run."""


def measured_profile(
    store: Store, inputs: CostInputs, workers: Workers, *, check_job: bool = False
) -> CostProfileRecord:
    """The stored profile for `inputs`, measured here first where there is none. With
    `check_job`, the job is first checked against the counts of a meta-device pass (every
    module's output, more than a submission counts): RefusedByCountsError, with the 422's
    message, where even that lower bound fits no worker. Raises GeometryError (the model
    cannot be probed) or ProbeOverBudgetError."""
    from services.pipeline import probe as probing

    key = profile_key(inputs, workers)
    digest = key_sha256(key)
    found = store.cost_profile(digest)
    if found is not None:
        return found
    assert inputs.distance is not None
    device = workers.device
    generator = cached_generator(
        inputs.model, device, inputs.dtype, inputs.space, inputs.psi, workers.nvidia_code_dir
    )
    distance = cached_distance(inputs.distance, device, inputs.dtype, **inputs.distance_options)
    counts = model_counts(generator, distance)
    if check_job and counts is not None:
        floor, advice = cost_model.plan_from_floor(
            counts, inputs.request(), workers.job_counts(inputs)
        )
        if not floor.fits:
            raise RefusedByCountsError(cost_model.refusal_message(floor, advice))
    started = time.perf_counter()
    measured = probing.probe(
        generator,
        distance,
        inputs.probe_dtype,
        threads=workers.threads,
        budget=workers.budget(inputs),
        counts=counts,
        concurrent=workers.per_host,
    )
    seconds = time.perf_counter() - started
    log.info("measured the cost profile of %s in %.1f s", inputs.model, seconds)
    return store.save_cost_profile(digest, key, measured.to_document(), seconds)


def plan_pending_job(
    store: Store, job_id: str, workers: Workers, dispatch: Callable[[list[str]], None] | None
) -> str:
    """A worker's planning of a job accepted before its model had a profile: measure (or
    read) the profile, then attach the job's chunks and estimate and dispatch them, or end
    the job refused with the reason. Returns what it did ("planned", "refused", "skipped":
    the job was planned already, cancelled, or is not waiting for a plan)."""
    from services.pipeline.probe import ProbeOverBudgetError

    job = store.get_job(job_id)
    if job.status != "queued" or store.list_chunks(job_id):
        return "skipped"
    inputs = CostInputs.from_resolved(job.resolved)
    try:
        record = measured_profile(store, inputs, workers, check_job=True)
    except RefusedByCountsError as refused:
        return "refused" if store.refuse_job(job_id, str(refused)) else "skipped"
    except (GeometryError, ProbeOverBudgetError) as error:
        reason = f"the planner's probe could not measure this model: {error}"
        return "refused" if store.refuse_job(job_id, reason) else "skipped"
    probe = cost_model.Probe.from_document(record.profile)
    estimate, advice = cost_model.plan_from_probe(
        probe, inputs.request(), workers.job_counts(inputs), profile_reference(record)
    )
    if not estimate.fits:
        reason = cost_model.refusal_message(estimate, advice)
        return "refused" if store.refuse_job(job_id, reason) else "skipped"
    chunks = chunk_plans(
        inputs.method, inputs.n_latents, inputs.latent_dim, inputs.block_columns, inputs.chunk_size
    )
    if not store.attach_plan(job_id, chunks, estimate.as_dict()):
        return "skipped"
    if dispatch is not None:
        dispatch([chunk.id for chunk in store.list_chunks(job_id)])
    return "planned"


def measure_profile_for(store: Store, inputs_doc: dict[str, Any], workers: Workers) -> str:
    """A worker's measurement asked for by a dry run of an unprofiled model; returns the
    profile's id (or the reason it could not be measured)."""
    from services.pipeline.probe import ProbeOverBudgetError

    try:
        return measured_profile(store, CostInputs(**inputs_doc), workers).id
    except (GeometryError, ProbeOverBudgetError) as error:
        log.warning("no cost profile of %s: %s", inputs_doc.get("model"), error)
        return f"not measured: {error}"
