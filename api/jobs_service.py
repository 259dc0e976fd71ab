"""The few steps around job submission that belong to the API rather than the pipeline:
the Idempotency-Key, visibility checks, and export/import through services.export.

Shared by the HTTP routes and the embedded command line, so both behave the same.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from api.dispatch import Dispatcher
from api.errors import ApiProblem, validation_error
from services import export
from services.config import Settings
from services.pipeline import JobSpec, cancel_job, submit_job
from services.pipeline.spec import canonical_json


def spec_problem(error: ValidationError, prefix: str | None = None) -> ApiProblem:
    return validation_error(error, prefix)


def submit(
    store: Any,
    settings: Settings,
    dispatcher: Dispatcher,
    spec: JobSpec,
    owner: str,
    idempotency_key: str | None,
) -> tuple[Any, bool]:
    """Honour the Idempotency-Key and submit through the pipeline (which checks the spec
    against the generator and the limits before writing anything).

    The same spec from the same owner is one job in the store whatever the key; the key adds
    the other half of the contract, kept in the store so every API process agrees: reused
    with a different body it is refused (422)."""
    request = canonical_json(spec.model_dump(mode="json", exclude_none=True))
    request_sha256 = hashlib.sha256(request.encode()).hexdigest()
    if idempotency_key:
        job = store.job_for_idempotency_key(owner, idempotency_key, request_sha256)
        if job is not None:
            return job, False
    job, created = submit_job(store, spec, owner, dispatcher.dispatch, settings=settings)
    if idempotency_key:
        store.remember_idempotency_key(owner, idempotency_key, request_sha256, job.id)
    return job, created


def cancel(store: Any, dispatcher: Dispatcher, job_id: str, owner: str | None) -> Any:
    store.get_job(job_id, owner=owner)  # 404 for a job this key may not see
    return cancel_job(store, job_id, dispatcher.revoke)


def export_npz(store: Any, job_id: str, owner: str | None, k: int | None) -> bytes:
    return export.to_npz_bytes(export.export_job(store, job_id, owner=owner, k=k))


def import_npz(
    store: Any, settings: Settings, owner: str, data: bytes, overrides: dict[str, str]
) -> tuple[Any, bool]:
    # ExportFormatError -> 422 naming the array
    published = export.from_npz_bytes(data, max_array_bytes=settings.max_array_bytes)
    n, d, _ = published.eigenvectors.shape
    if n > settings.max_latents_per_job or d > settings.max_latent_dim:
        raise ApiProblem(
            422,
            "Invalid .npz file",
            f"{n} spectra of dimension {d} exceed the limits ({settings.max_latents_per_job} "
            f"per job, dimension {settings.max_latent_dim})",
            field="file",
            slug="invalid-npz",
        )
    return export.import_job(store, owner, published, source_sha256=export.content_sha256(data), **overrides)
