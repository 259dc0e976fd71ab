"""The embedded executor: every chunk of a job, in order, in this process, no broker.

The same chunk function as the Celery workers, so both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from services.config import get_settings
from services.pipeline.chunks import default_worker_id, run_chunk
from services.store import JobRecord, Store

# progress(done, total): latents finished (stored or failed) out of the job's total.
Progress = Callable[[int, int], None]


def run_job_inprocess(
    store: Store, job_id: str, progress: Progress | None = None, *, device: str | None = None
) -> JobRecord:
    """Run the job's unfinished chunks here and return the job afterwards. Resumes a job
    that was interrupted: stored latents are skipped, chunks left running by a process that
    died are taken back once their heartbeat is stale."""
    device = device or get_settings().device
    worker_id = default_worker_id()
    job = store.get_job(job_id)
    total = job.n_latents
    done = len(store.stored_latent_indices(job_id))
    if progress:
        progress(done, total)

    def advance(_latent_index: int) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(min(done, total), total)

    for chunk in store.list_chunks(job_id):
        if chunk.status in ("succeeded", "failed", "cancelled"):
            continue
        if chunk.status == "running":
            store.requeue_chunk(chunk.id, older_than_s=get_settings().stale_after_s)
        status = run_chunk(store, chunk.id, worker_id, device=device, on_latent=advance)
        if status == "cancelled":
            break
    store.refresh_job_status(job_id)
    return store.get_job(job_id)
