"""The few steps around job submission that belong to the API rather than the pipeline:
the Idempotency-Key, visibility checks, and export/import through services.export.

Shared by the HTTP routes and the embedded command line, so both behave the same.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from pydantic import ValidationError

from api.dispatch import Dispatcher
from api.errors import ApiProblem, validation_error
from services import export
from services.config import Settings
from services.pipeline import JobSpec, cancel_job, submit_job
from services.pipeline.spec import canonical_json

IDEMPOTENCY_TTL_S = 24 * 3600.0
IDEMPOTENCY_MAX_KEYS = 100_000


def spec_problem(error: ValidationError, prefix: str | None = None) -> ApiProblem:
    return validation_error(error, prefix)


class IdempotencyKeys:
    """Remembers which job each (owner, Idempotency-Key) created, with the request it came with.

    Identical specs already map to one job in the store (same owner and spec hash); the key
    adds the other half of the contract: reusing a key with a DIFFERENT body is refused. Kept
    per API process (bounded, 24 h); across processes the store's spec-hash dedup still holds.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, owner: str, key: str, fingerprint: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get((owner, key))
            if entry is None or entry[0] < now:
                return None
            _, seen_fingerprint, job_id = entry
        if seen_fingerprint != fingerprint:
            raise ApiProblem(
                422,
                "Idempotency-Key reused",
                "This Idempotency-Key was already used with a different request body; use a new "
                "key for a different job.",
                field="Idempotency-Key",
                slug="idempotency-key-reused",
            )
        return job_id

    def remember(self, owner: str, key: str, fingerprint: str, job_id: str) -> None:
        with self._lock:
            self._entries[(owner, key)] = (time.monotonic() + IDEMPOTENCY_TTL_S, fingerprint, job_id)
            self._entries.move_to_end((owner, key))
            while len(self._entries) > IDEMPOTENCY_MAX_KEYS:
                self._entries.popitem(last=False)


def submit(
    keys: IdempotencyKeys,
    store: Any,
    settings: Settings,
    dispatcher: Dispatcher,
    spec: JobSpec,
    owner: str,
    idempotency_key: str | None,
) -> tuple[Any, bool]:
    """Honour the Idempotency-Key and submit through the pipeline (which checks the spec
    against the generator and the limits before writing anything)."""
    fingerprint = canonical_json(spec.model_dump(mode="json", exclude_none=True))
    if idempotency_key:
        job_id = keys.lookup(owner, idempotency_key, fingerprint)
        if job_id is not None:
            return store.get_job(job_id, owner=owner), False
    job, created = submit_job(store, spec, owner, dispatcher.dispatch, settings=settings)
    if idempotency_key:
        keys.remember(owner, idempotency_key, fingerprint, job.id)
    return job, created


def cancel(store: Any, dispatcher: Dispatcher, job_id: str, owner: str | None) -> Any:
    store.get_job(job_id, owner=owner)  # 404 for a job this key may not see
    return cancel_job(store, job_id, dispatcher.revoke)


def export_npz(store: Any, job_id: str, owner: str | None, k: int | None) -> bytes:
    return export.to_npz_bytes(export.export_job(store, job_id, owner=owner, k=k))


def import_npz(
    store: Any, settings: Settings, owner: str, data: bytes, overrides: dict[str, str]
) -> tuple[Any, bool]:
    published = export.from_npz_bytes(data)  # ExportFormatError -> 422 naming the array
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
