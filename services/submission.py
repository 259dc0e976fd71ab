"""The job use cases shared by the HTTP routes and the command line, so both behave alike:
submission with its Idempotency-Key, cancellation with the visibility check, resuming a
finished job's missing latents, and export /
import of the published ``.npz`` layout through services.export.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from services import export
from services.config import Settings
from services.dispatch import ChunkDispatcher, Dispatcher
from services.pipeline import JobSpec, cancel_job, submit_job
from services.pipeline.costs import Workers
from services.pipeline.spec import canonical_json
from services.store import TERMINAL_STATUSES, ConflictError, JobRecord, Store


class ImportTooLargeError(ValueError):
    """A published file over the per-job limits; the message gives the limits."""


def request_sha256(spec: JobSpec) -> str:
    """The hash an Idempotency-Key is bound to: the spec as the client sent it."""
    request = canonical_json(spec.model_dump(mode="json", exclude_none=True))
    return hashlib.sha256(request.encode()).hexdigest()


def submit(
    store: Store,
    settings: Settings,
    dispatcher: Dispatcher,
    spec: JobSpec,
    owner: str,
    idempotency_key: str | None,
) -> tuple[JobRecord, bool]:
    """Honour the Idempotency-Key and submit through the pipeline (which checks the spec
    against the generator and the limits before writing anything).

    The same spec from the same owner is one job in the store whatever the key; the key adds
    the other half of the contract, kept in the store so every API process agrees: reused
    with a different body it is refused (IdempotencyConflictError)."""
    digest = request_sha256(spec)
    if idempotency_key:
        job = store.job_for_idempotency_key(owner, idempotency_key, digest)
        if job is not None:
            return job, False
    # The key is claimed in the transaction that creates the job: of concurrent requests
    # under one key with different bodies, one creates its job and the rest create nothing.
    workers = Workers.from_settings(settings)
    return submit_job(
        store,
        spec,
        owner,
        dispatcher.dispatch,
        settings=settings,
        idempotency_key=idempotency_key or None,
        request_sha256=digest,
        plan_later=lambda job_id: dispatcher.plan_job(job_id, workers),
    )


class JobAlreadyFinishedError(ConflictError):
    """Cancel of a job that has already finished: nothing was changed (HTTP 409)."""


def cancel(store: Store, dispatcher: Dispatcher, job_id: str, owner: str | None) -> JobRecord:
    """Cancel an unfinished job; a finished one is refused, so the caller learns that the
    cancel did nothing rather than reading a stale status as success."""
    job = store.get_job(job_id, owner=owner)  # NotFoundError for a job this owner may not see
    if job.status in TERMINAL_STATUSES:
        raise JobAlreadyFinishedError(
            f"job {job_id} is already {job.status}; nothing was changed "
            "(only a queued or running job can be cancelled)"
        )
    return cancel_job(store, job_id, dispatcher.revoke)


def resume(store: Store, dispatcher: ChunkDispatcher, job_id: str, owner: str | None) -> JobRecord:
    """Compute again what a finished job is missing: latents that failed (for a cause outside
    them, such as a store that was full, or their own) and chunks that were cancelled. The
    job goes back to queued; ConflictError while it is still queued or running, or when
    nothing is missing."""
    store.get_job(job_id, owner=owner)  # NotFoundError for a job this owner may not see
    job, chunk_ids = store.reopen_job(job_id)
    # After the commit; a dispatch lost now is redispatched by the reaper (queued, no message).
    dispatcher.dispatch(chunk_ids)
    return job


def export_npz(store: Store, job_id: str, owner: str | None, k: int | None) -> bytes:
    return export.to_npz_bytes(export.export_job(store, job_id, owner=owner, k=k))


def import_npz(
    store: Store,
    settings: Settings,
    owner: str,
    data: bytes,
    overrides: dict[str, str],
    check_model: Callable[[str], None] | None = None,
) -> tuple[JobRecord, bool]:
    """Store a published-layout .npz as a finished job. `overrides`: model, distance, method,
    image_range (export.import_job). ``check_model`` (the API's: the label must be one the
    server serves) sees the model label, the override or the file's, before anything is
    written."""
    # ExportFormatError names the array; nothing is inflated past SPECTRA_MAX_ARRAY_BYTES.
    published = export.from_npz_bytes(data, max_array_bytes=settings.max_array_bytes)
    n, d, _ = published.eigenvectors.shape
    if n > settings.max_latents_per_job or d > settings.max_latent_dim:
        raise ImportTooLargeError(
            f"{n} spectra of dimension {d} exceed the limits ({settings.max_latents_per_job} "
            f"per job, dimension {settings.max_latent_dim})"
        )
    label = overrides.get("model") or published.meta.get("model")
    if check_model is not None and isinstance(label, str):
        check_model(label)
    return export.import_job(
        store, owner, published, source_sha256=export.content_sha256(data), **overrides
    )
