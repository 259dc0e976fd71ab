"""The embedded executor: every chunk of a job, in order, in this process, no broker.

The same chunk function as the Celery workers, so both give the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.pipeline.chunks import default_worker_id, run_chunk
from services.pipeline.lease import LeaseSettings
from services.store import TERMINAL_STATUSES, JobRecord, Store

# progress(done, total): latents finished (stored or failed) out of the job's total.
Progress = Callable[[int, int], None]
# An embedded run has no one else to hand its chunk to: it waits this long on a store that
# cannot answer, then stops with that one message (run it again to resume).
EMBEDDED_STORE_WAIT_S = 60.0


def run_job_inprocess(
    store: Store,
    job_id: str,
    progress: Progress | None = None,
    *,
    lease: LeaseSettings | None = None,
    device: str = "cpu",
) -> JobRecord:
    """Run the job's unfinished chunks here and return the job afterwards. Resumes a job
    that was interrupted: stored latents are skipped, chunks left running by a process that
    died are taken back once their heartbeat is stale. ``lease``: the settings the edge read
    (LeaseSettings.of(settings, store_wait_s=EMBEDDED_STORE_WAIT_S) for `spectra run`);
    without it, the declared defaults with the embedded wait."""
    lease = lease or LeaseSettings.defaults(store_wait_s=EMBEDDED_STORE_WAIT_S)
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
        if chunk.status in TERMINAL_STATUSES:
            continue
        if chunk.status == "running" and not _take_back(store, chunk.id, lease):
            continue  # a live runner elsewhere holds it; its result will be there
        status = run_chunk(
            store, chunk.id, worker_id, lease=lease, device=device, on_latent=advance
        )
        if status == "cancelled":
            break
    store.refresh_job_status(job_id)
    return store.get_job(job_id)


def _take_back(store: Store, chunk_id: str, lease: LeaseSettings) -> bool:
    """Requeue a chunk left running by a runner that is gone (an interrupted `spectra run`):
    once its heartbeat has been silent for two intervals, which a live runner never allows.
    False if it finished meanwhile or is still beating after the reaper's staleness limit."""
    silent_for = 2 * lease.heartbeat_interval_s
    deadline = time.monotonic() + max(lease.stale_after_s, 2 * silent_for)
    while time.monotonic() < deadline:
        if store.requeue_chunk(chunk_id, older_than_s=silent_for):
            return True
        if store.get_chunk(chunk_id).status != "running":
            return False
        time.sleep(min(1.0, lease.heartbeat_interval_s / 2))
    return False
