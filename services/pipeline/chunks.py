"""The chunk function: what a worker (Celery or in-process) does with one chunk.

    claim (compare-and-set) -> load the models (cached) -> for each latent not yet stored:
        stop if the job was cancelled or the lease was lost; compute; save at once
    -> finish (compare-and-set) -> let the store settle the job's status.

Every write is idempotent, so running a chunk twice (a redelivered message, a reaper that
re-dispatched a slow chunk) stores nothing twice. A heartbeat thread keeps the lease alive
during long computations; a latent whose generator raises or gives NaN is recorded as failed
with its reason and the chunk goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from services.geometry import (
    NonFiniteOutputError,
    SpectrumResult,
    compute_spectrum,
    ganspace,
    metric_columns,
    sefa,
    summary_of,
)
from services.geometry.batched import jacobian_spectra, spectrum_on_device
from services.geometry.registry import DIRECTION_METHODS
from services.job_spec import stored_distance_name
from services.jsonable import jsonable
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.kinds import ChunkHooks, kind_of
from services.pipeline.lease import Heartbeat, LeaseSettings, StoreWait
from services.pipeline.resolved import ResolvedSpectra
from services.pipeline.resources import PeakMemory, measure_peak
from services.store import (
    TERMINAL_STATUSES,
    ChunkRecord,
    JobClosedError,
    JobRecord,
    Store,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

# Store calls that met a database unable to answer: waited on (StoreWait), then left to the
# executor; never a failure of the chunk or of a latent.
STORE_WAITS: tuple[type[BaseException], ...] = (StoreUnavailable,)
SEFA_DISTANCE = "none"  # sefa and ganspace results have no image distance


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Stop(Exception):
    """Internal: leave the latent loop (cancelled, or lease lost)."""

    def __init__(self, status: str | None) -> None:
        self.status = status


def run_chunk(
    store: Store,
    chunk_id: str,
    worker_id: str,
    *,
    lease: LeaseSettings | None = None,
    device: str = "cpu",
    on_latent: Callable[[int], None] | None = None,
    abort_on: tuple[type[BaseException], ...] = (),
) -> str:
    """Run one chunk; returns its status afterwards ("succeeded", "failed", "cancelled", or,
    when it was not ours to run, whatever state it is in).

    `on_latent(latent_index)` is called after each latent is stored or recorded as failed.
    Exceptions in `abort_on` (e.g. Celery's soft time limit) propagate with the chunk left
    running: its heartbeat stops and the reaper gives it back, to resume where it stopped.
    A store that cannot answer is waited on (``lease.store_wait_s`` per call, the lease kept);
    past that the chunk is handed back uncharged and StoreUnavailable propagates, for the
    executor to retry later. A result the store refuses because the job ended meanwhile (a
    cancel) ends the chunk as cancelled.
    """
    lease = lease or LeaseSettings.defaults()  # the edges pass LeaseSettings.of(settings)
    retry = StoreWait(lease.store_wait_s)
    chunk = _claim(store, chunk_id, worker_id, lease, retry)
    if chunk is None:
        current = retry(store.get_chunk, chunk_id)
        if current.status in TERMINAL_STATUSES:
            # The claim itself may have just closed it (attempts exhausted): settle the job.
            retry(store.refresh_job_status, current.job_id)
        return current.status
    job = retry(store.get_job, chunk.job_id)
    status, error = "succeeded", None
    with Heartbeat(store, chunk_id, worker_id, lease.heartbeat_interval_s, retry) as beat:
        try:
            _work(
                store, job, chunk, beat, job.resolved.get("device") or device, on_latent, abort_on
            )
        except _Stop as stop:
            if stop.status is None:  # the lease is someone else's now: touch nothing
                return "running"
            status = stop.status
        except JobClosedError:  # cancelled between our last look and the write
            status = "cancelled"
        except abort_on:
            raise
        except STORE_WAITS:
            _hand_back(store, chunk_id, worker_id)
            raise
        except Exception as exc:  # the chunk as a whole cannot run (model will not load, ...)
            status, error = "failed", _reason(exc)
            log.exception("chunk %s failed", chunk_id)
    finished = retry(store.finish_chunk, chunk_id, worker_id, status, error)
    retry(store.refresh_job_status, job.id)
    if not finished:
        return retry(store.get_chunk, chunk_id).status
    return status


def _hand_back(store: Store, chunk_id: str, worker_id: str) -> None:
    """The store stayed unavailable past the wait: give the chunk back at once, charging
    neither an attempt nor the latent in progress (if the store answers for that)."""
    try:
        store.release_chunk(chunk_id, worker_id)
    except StoreUnavailable:
        log.warning(
            "chunk %s: the store is still unavailable; the reaper will requeue it once it answers",
            chunk_id,
        )


def _claim(
    store: Store, chunk_id: str, worker_id: str, lease: LeaseSettings, retry: StoreWait
) -> ChunkRecord | None:
    chunk = retry(store.claim_chunk, chunk_id, worker_id, lease.max_chunk_attempts)
    if chunk is not None:
        return chunk
    # Running under our own lease: an earlier run of ours died (a killed pool child, a lost
    # connection) and the message came back to us. Take it over once its heartbeat has
    # stopped for two intervals, which a live run (even in a second pool process) never lets
    # happen; waiting for the reaper's longer staleness would only lose time.
    silent_for = 2 * lease.heartbeat_interval_s
    deadline = time.monotonic() + 2 * silent_for
    while time.monotonic() < deadline:
        current = retry(store.get_chunk, chunk_id)
        if current.status != "running" or current.lease_owner != worker_id:
            return None
        if retry(store.requeue_chunk, chunk_id, older_than_s=silent_for):
            return retry(store.claim_chunk, chunk_id, worker_id, lease.max_chunk_attempts)
        time.sleep(lease.heartbeat_interval_s / 2)
    return None


def _work(
    store: Store,
    job: JobRecord,
    chunk: ChunkRecord,
    beat: Heartbeat,
    device: str,
    on_latent: Callable[[int], None] | None,
    abort_on: tuple[type[BaseException], ...],
) -> None:
    resolved = job.resolved
    _check_continue(store, job.id, beat)
    runner = kind_of(resolved).chunk_runner()  # None: a spectra job, run below
    if runner is not None:
        hooks = ChunkHooks(
            check_continue=lambda: _check_continue(store, job.id, beat),
            retry=beat.retry,
            reason=_reason,
            passthrough=(_Stop, JobClosedError, *abort_on, *STORE_WAITS),
            on_target=on_latent,
        )
        runner(store, job, chunk, device, hooks)
        return
    spec = _spec(job)
    dtype = "float64" if spec.method == "lanczos" else spec.dtype
    generator = cached_generator(spec.model, device, dtype, spec.space, spec.psi)
    if spec.method in DIRECTION_METHODS:
        _run_directions(store, job, generator, beat)
        if on_latent:
            on_latent(0)
        return
    assert spec.distance is not None  # a direction method has none, and returned above
    distance = cached_distance(spec.distance, device, dtype, **spec.distance_options)
    codes = beat.retry(store.latent_codes, job.latent_set_id)
    finished = beat.retry(store.stored_latent_indices, job.id)
    pending = [i for i in chunk.latent_indices if i not in finished]
    if _batches_codes(spec, chunk, device, len(pending)):
        _check_continue(store, job.id, beat)
        # A run that dies in the shared pass is recorded against its first code.
        if not beat.starting(pending[0]):
            raise _Stop(None)
        _run_latents_batched(
            store, job, generator, distance, codes, pending, device, abort_on, beat
        )
        for index in pending:
            if on_latent:
                on_latent(index)
        return
    for index in chunk.latent_indices:
        _check_continue(store, job.id, beat)
        if index in finished:
            continue
        if not beat.starting(index):
            raise _Stop(None)
        if chunk.column_block is not None:
            _run_block(
                store,
                job,
                generator,
                distance,
                codes[index],
                index,
                chunk.column_block,
                abort_on,
                beat,
                device,
            )
        else:
            _run_latent(
                store, job, generator, distance, codes[index], index, abort_on, beat, device
            )
        if on_latent:
            on_latent(index)


def _check_continue(store: Store, job_id: str, beat: Heartbeat) -> None:
    if beat.lost.is_set():
        raise _Stop(None)
    if beat.retry(store.is_cancelled, job_id):
        raise _Stop("cancelled")


def _batches_codes(spec: ResolvedSpectra, chunk: ChunkRecord, device: str, n: int) -> bool:
    """On a GPU, `jacobian` codes of a chunk go through one vectorised pass (per-call costs
    dominate there); on the CPU one code at a time (each stored, cancellable, at once)."""
    return (
        n >= 2
        and chunk.column_block is None
        and spec.method == "jacobian"
        and device.startswith("cuda")
    )


def _run_latents_batched(
    store: Store,
    job: JobRecord,
    generator: Any,
    distance: Any,
    codes: np.ndarray,
    indices: list[int],
    device: str,
    abort_on: tuple[type[BaseException], ...],
    beat: Heartbeat,
) -> None:
    spec = _spec(job)
    options = _method_options(spec, job)
    try:
        with measure_peak(device) as peak:
            results = jacobian_spectra(
                generator,
                distance,
                codes[indices],
                top_k=spec.top_k,
                dtype=spec.dtype,
                **({"batch": options["batch"]} if "batch" in options else {}),
            )
    except abort_on:
        raise
    except Exception as exc:  # the pass as a whole failed: each code's own route decides
        log.warning("batched pass of job %s failed (%s); one code at a time", job.id, exc)
        for index in indices:
            if not beat.starting(index):
                raise _Stop(None) from exc
            _run_latent(
                store, job, generator, distance, codes[index], index, abort_on, beat, device
            )
        return
    _require_lease(beat)
    for index, result in zip(indices, results, strict=True):
        if isinstance(result, Exception):
            beat.retry(store.record_latent_failure, job.id, index, _reason(result))
            continue
        result.diagnostics.update(peak.figures)
        _save_latent(store, job, index, codes[index], result, beat)


def _run_latent(
    store: Store,
    job: JobRecord,
    generator: Any,
    distance: Any,
    code: np.ndarray,
    index: int,
    abort_on: tuple[type[BaseException], ...],
    beat: Heartbeat,
    device: str = "cpu",
) -> None:
    spec = _spec(job)
    try:
        with measure_peak(device) as peak:
            result = compute_spectrum(
                generator,
                distance,
                code,
                method=spec.method,
                top_k=spec.top_k,
                dtype=spec.dtype,
                **_method_options(spec, job),
            )
        result.diagnostics.update(peak.figures)
        _require_finite(result)
    except abort_on:
        raise
    except Exception as exc:  # NonFiniteOutputError, or anything the generator raised on it
        _fail_latent(store, job, index, exc, beat)
        log.warning("latent %d of job %s failed: %s", index, job.id, _reason(exc))
        return
    _require_lease(beat)
    _save_latent(store, job, index, code, result, beat)


def _run_block(
    store: Store,
    job: JobRecord,
    generator: Any,
    distance: Any,
    code: np.ndarray,
    index: int,
    block: tuple[int, int],
    abort_on: tuple[type[BaseException], ...],
    beat: Heartbeat,
    device: str = "cpu",
) -> None:
    """One column block of one latent's Hessian; whoever completes the set decomposes it.
    Each chunk saves its block and then looks: of two chunks finishing together, at least
    the later one sees every block, and saving the spectrum twice is a no-op."""
    spec = _spec(job)
    start, stop = block
    have = {(s, e) for s, e, _ in beat.retry(store.column_blocks, job.id, index)}
    try:
        if (start, stop) not in have:
            started = time.perf_counter()
            with measure_peak(device) as block_peak:
                columns = metric_columns(
                    generator,
                    distance,
                    code,
                    start,
                    stop,
                    dtype=spec.dtype,
                    **_method_options(spec, job),
                )
            if not np.isfinite(columns).all():
                raise NonFiniteOutputError(f"metric columns {start}:{stop} contain NaN or inf")
            _require_lease(beat)
            beat.retry(
                store.save_column_block,
                job.id,
                index,
                start,
                stop,
                columns,
                seconds=time.perf_counter() - started,
                peak_bytes=block_peak.device_bytes or block_peak.rss_bytes,
            )
        blocks = beat.retry(store.column_blocks, job.id, index)
        d = int(code.shape[0])
        if not _tiles(blocks, d):
            return  # other blocks still to come; the chunk that completes them decomposes
        metric = np.empty((d, d), dtype=np.float64)
        for s, e, values in blocks:
            metric[:, s:e] = values
        del blocks, values  # the blocks are in `metric` now: one d x d copy, not two
        started = time.perf_counter()
        with measure_peak(device) as peak:
            # On a GPU worker the float64 eigh runs on the device.
            result = spectrum_on_device(metric, top_k=spec.top_k, device=device)
        result.diagnostics.setdefault("decompose_time_s", time.perf_counter() - started)
        result.diagnostics.update({f"decompose_{k}": v for k, v in peak.figures.items()})
        costs = beat.retry(store.column_block_costs, job.id, index)
        result.diagnostics.update(_whole_code_costs(costs, result.diagnostics, peak, d))
        _require_finite(result)
    except abort_on:
        raise
    except STORE_WAITS:
        raise
    except JobClosedError:
        raise
    except _Stop:
        raise
    except Exception as exc:
        _fail_latent(store, job, index, exc, beat)
        return
    _require_lease(beat)
    _save_latent(store, job, index, code, result, beat)


def _whole_code_costs(
    costs: list[tuple[int, int, float | None, int | None]],
    diagnostics: dict[str, Any],
    decompose: PeakMemory,
    d: int,
) -> dict[str, Any]:
    """One code's measurement over all its blocks, whichever workers ran them: the blocks'
    seconds summed with the decomposition's, the largest peak of any of them, and 2d products
    (one forward- and one reverse-mode product per column); what the plan estimated."""
    block_seconds = [seconds for _, _, seconds, _ in costs]
    figures: dict[str, Any] = {
        "products": 2 * d,
        "block_seconds": block_seconds,
        "block_peak_bytes": [peak for _, _, _, peak in costs],
    }
    if all(seconds is not None for seconds in block_seconds):
        figures["wall_time_s"] = float(
            sum(s for s in block_seconds if s is not None) + diagnostics["decompose_time_s"]
        )
    peaks = [p for _, _, _, p in costs if p is not None]
    peaks += [p for p in (decompose.device_bytes or decompose.rss_bytes,) if p is not None]
    if peaks:
        figures["peak_device_bytes" if decompose.device_bytes else "peak_rss_bytes"] = max(peaks)
    return figures


def _method_options(spec: ResolvedSpectra, job: JobRecord) -> dict[str, Any]:
    """The method's options, with the tangent batch the planner chose where none was asked
    (the batch that fits this worker's memory budget; it does not change the numbers). The
    plan is the job's estimate (jobs of older versions kept it in the resolved spec, outside
    the typed record)."""
    options = dict(spec.method_options)
    plan = job.estimate or job.resolved.get("plan") or {}
    planned = plan.get("per_code", {}).get("tangent_batch")
    if planned and "batch" not in options and spec.method in ("jacobian", "hvp", "fd"):
        options["batch"] = int(planned)
    return options


def _require_lease(beat: Heartbeat) -> None:
    if not beat.still_ours():
        raise _Stop(None)


def _tiles(blocks: list[tuple[int, int, np.ndarray]], d: int) -> bool:
    """True when the stored blocks cover columns 0..d exactly once, in order."""
    end = 0
    for start, stop, _ in sorted(blocks, key=lambda block: block[0]):
        if start != end:
            return False
        end = stop
    return end == d


def _run_directions(store: Store, job: JobRecord, generator: Any, beat: Heartbeat) -> None:
    """SeFa or GANSpace: one set of directions for the model, stored at latent index 0."""
    spec = _spec(job)
    method = sefa if spec.method == "sefa" else ganspace
    result = method(generator, top_k=spec.top_k, **spec.method_options)
    _require_finite(result)
    _save(store, job, 0, None, result, SEFA_DISTANCE, beat)


def _spec(job: JobRecord) -> ResolvedSpectra:
    """A spectra job's resolved spec as its typed record (read from the stored document)."""
    return ResolvedSpectra.from_document(job.resolved)


def _require_finite(result: SpectrumResult) -> None:
    if not (np.isfinite(result.eigenvalues).all() and np.isfinite(result.eigenvectors).all()):
        raise NonFiniteOutputError(
            "the spectrum contains NaN or inf: the generator or the distance produced "
            "non-finite values at this code"
        )


def _fail_latent(
    store: Store, job: JobRecord, index: int, exc: BaseException, beat: Heartbeat
) -> None:
    """Record the latent's failure, while the lease is still this run's."""
    _require_lease(beat)
    beat.retry(store.record_latent_failure, job.id, index, _reason(exc))


def _save_latent(
    store: Store,
    job: JobRecord,
    index: int,
    code: np.ndarray,
    result: SpectrumResult,
    beat: Heartbeat,
) -> None:
    """Save one latent's spectrum under the distance name the job stores its spectra with."""
    spec = _spec(job)
    assert spec.distance is not None  # latents are saved by Hessian routes only
    distance = stored_distance_name(spec.distance, spec.distance_options)
    _save(store, job, index, code, result, distance, beat)


def _save(
    store: Store,
    job: JobRecord,
    index: int,
    code: np.ndarray | None,
    result: SpectrumResult,
    distance: str,
    beat: Heartbeat,
) -> None:
    spec = _spec(job)
    eigenvalues = np.asarray(result.eigenvalues, dtype=np.float64)
    beat.retry(
        store.save_spectrum,
        job.id,
        index,
        code,
        eigenvalues,
        # Stored in the job's dtype (float32 unless asked), whatever the route computed in.
        np.asarray(result.eigenvectors, dtype=spec.dtype),
        summary=result.summary or summary_of(eigenvalues),
        diagnostics=jsonable(dict(result.diagnostics)),
        model=spec.model,
        distance=distance,
        method=spec.method,
        dtype=spec.dtype,
    )


def _reason(exc: BaseException) -> str:
    """A failure reason worth storing: the error's type and message, and where it came from
    (the file's name only: clients read reasons, and the server's paths are not theirs)."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    origin = f" (at {os.path.basename(where[0].filename)}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{origin}"[:2000]
