"""Optimisation jobs in the pipeline: submitting one, and the work of one chunk of targets.

A chunk's unfinished targets run as one batch (one generator forward per step for all of
them); each target's result is then written on its own, once (the store keeps the first
write). The chunk checks for cancellation and a lost lease every few steps. If the batch
fails (the generator produced NaN for one target), each target is re-run alone so that only
the bad one is recorded as failed.
"""

from __future__ import annotations

import logging

import numpy as np

from services.config import Settings
from services.geometry.optimise import InversionResult, OptimiserSettings, invert, start_codes
from services.optimise_job_spec import OptimiseSpec
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.jobs import Dispatch, store_and_dispatch
from services.pipeline.kinds import ChunkHooks
from services.pipeline.optimise_spec import load_basis, resolve_optimisation
from services.pipeline.resolved import ResolvedOptimisation
from services.store import ChunkRecord, JobRecord, Store

log = logging.getLogger(__name__)

CHECK_EVERY_STEPS = 10  # cancellation / lease checks during a batch


def submit_optimisation(
    store: Store,
    spec: OptimiseSpec,
    owner: str,
    dispatch: Dispatch | None,
    *,
    images: np.ndarray | None = None,
    settings: Settings,
) -> tuple[JobRecord, bool]:
    """Resolve (every check first), store the targets, the job and its chunks, then dispatch.
    The same spec and targets from the same owner again give the existing job."""
    plan = resolve_optimisation(store, spec, owner, images=images, settings=settings)
    spec_doc = spec.model_dump(mode="json", exclude_none=True)
    return store_and_dispatch(store, owner, spec.model, spec_doc, plan, dispatch)


def settings_of(job: ResolvedOptimisation) -> OptimiserSettings:
    options = job.optimiser_options
    return OptimiserSettings(
        optimiser=job.optimiser,
        steps=options.steps,
        learning_rate=options.learning_rate,
        restarts=options.restarts,
        k=options.k,
        population=options.population,
        sigma=0.5 if options.sigma is None else options.sigma,
    )


def run_optimisation_chunk(
    store: Store, job: JobRecord, chunk: ChunkRecord, device: str, hooks: ChunkHooks
) -> None:
    """Optimise the chunk's targets that have no stored result or failure yet."""
    resolved = ResolvedOptimisation.from_document(job.resolved)
    generator = cached_generator(resolved.model, device, "float32", resolved.space, resolved.psi)
    distance = cached_distance(resolved.distance, device, "float32", **resolved.distance_options)
    finished = hooks.retry(store.stored_target_indices, job.id)
    todo = [index for index in chunk.latent_indices if index not in finished]
    if not todo:
        return
    hooks.check_continue()
    images = hooks.retry(store.target_images, resolved.targets.id)[todo]
    basis = None
    if resolved.basis is not None:
        basis, _ = load_basis(
            store,
            resolved.basis,
            None,
            model=resolved.model,
            space=resolved.space,
            latent_dim=generator.latent_dim,
            psi=resolved.psi,
        )
    settings = settings_of(resolved)
    starts = np.stack(
        [start_codes(generator, settings.restarts, resolved.seed, index) for index in todo]
    )

    def on_step(step: int) -> None:
        if step % CHECK_EVERY_STEPS == 0:
            hooks.check_continue()

    def run(rows: list[int]) -> list[InversionResult]:
        return invert(
            generator,
            distance,
            images[rows],
            starts[rows],
            settings,
            basis=basis,
            seed=resolved.seed,
            on_step=on_step,
        )

    passthrough = hooks.passthrough
    try:
        outcomes: list[InversionResult | BaseException] = list(run(list(range(len(todo)))))
    except passthrough:
        raise
    except Exception:  # one bad target spoils the batch: find it by running each alone
        log.warning("a batch of job %s failed; re-running its targets one by one", job.id)
        outcomes = []
        for row in range(len(todo)):
            try:
                outcomes.append(run([row])[0])
            except passthrough:
                raise
            except Exception as exc:
                outcomes.append(exc)
    for index, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            hooks.retry(store.record_target_failure, job.id, index, hooks.reason(outcome))
        else:
            _save(store, job, index, outcome, hooks)
        if hooks.on_target:
            hooks.on_target(index)


def _save(
    store: Store, job: JobRecord, index: int, result: InversionResult, hooks: ChunkHooks
) -> None:
    hooks.retry(
        store.save_optimisation_result,
        job.id,
        index,
        optimiser=ResolvedOptimisation.from_document(job.resolved).optimiser,
        losses=result.losses,
        evaluations=result.evaluations.astype(np.float64),
        final_code=result.final_code,
        final_image=result.final_image,
        best_restart=result.best_restart,
        diagnostics=result.diagnostics,
    )
