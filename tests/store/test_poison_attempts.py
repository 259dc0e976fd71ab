"""The attempt cap and poison latents together, driven through the lease calls in the order a
loaded worker makes them: a run that loses its lease before it marks any latent (the reaper
found its heartbeat stale while it loaded the model) is charged to the chunk, and must not
leave the next poison latent short of its own cap when the chunk's cap is reached."""

from __future__ import annotations

from services.store import ChunkRecord, JobRecord, Store

from .helpers import make_job, save

MAX_ATTEMPTS = 3
WORKER = "cpu@test:1"  # one worker: every run of the chunk holds the lease under this id


def _claim(store: Store, chunk_id: str) -> ChunkRecord:
    claimed = store.claim_chunk(chunk_id, WORKER, MAX_ATTEMPTS)
    assert claimed is not None, store.get_chunk(chunk_id)
    return claimed


def _claimed_chunk(store: Store, n_latents: int) -> tuple[JobRecord, ChunkRecord]:
    """A job of one chunk of ``n_latents``, its first run claimed."""
    job = make_job(store, n_latents=n_latents, chunk_size=n_latents)
    (chunk,) = store.list_chunks(job.id)
    _claim(store, chunk.id)
    return job, chunk


def _assert_exhausted(store: Store, chunk_id: str) -> None:
    """The next claim finds the chunk's own cap reached and closes it failed."""
    assert store.claim_chunk(chunk_id, WORKER, MAX_ATTEMPTS) is None
    final = store.get_chunk(chunk_id)
    assert final.status == "failed"
    assert final.error == f"attempts exhausted ({MAX_ATTEMPTS} of {MAX_ATTEMPTS})"


def _dies_on(store: Store, chunk_id: str, latent_index: int) -> None:
    """The claimed run marks the latent and its process dies computing it; the lease goes
    stale and is requeued (by the reaper, or by the worker's next delivery taking it over)."""
    assert store.start_latent(chunk_id, WORKER, latent_index)
    assert store.requeue_chunk(chunk_id, older_than_s=0)


def _requeued_before_its_first_latent(store: Store, chunk_id: str, latent_index: int) -> None:
    """The claimed run is alive but silent past the staleness limit before it marks a latent:
    the reaper requeues it, and its own start_latent then says the lease is lost."""
    assert store.requeue_chunk(chunk_id, older_than_s=0)
    assert not store.start_latent(chunk_id, WORKER, latent_index)


def _poison(store: Store, chunk_id: str, latent_index: int) -> ChunkRecord:
    """MAX_ATTEMPTS runs die on the latent; the claim after the last one records it."""
    for _ in range(MAX_ATTEMPTS):
        _dies_on(store, chunk_id, latent_index)
        claimed = _claim(store, chunk_id)
    return claimed


def test_a_run_requeued_before_it_reached_a_latent_does_not_close_the_chunk_on_the_next_poison_latent(
    store: Store,
) -> None:
    job, chunk = _claimed_chunk(store, 2)
    claimed = _poison(store, chunk.id, 0)  # this claim records latent 0 and gives back 3
    assert claimed.attempts == 1
    assert [f.latent_index for f in store.latent_failures(job.id)] == [0]

    _requeued_before_its_first_latent(store, chunk.id, 1)
    _claim(store, chunk.id)
    claimed = _poison(store, chunk.id, 1)

    assert sorted(f.latent_index for f in store.latent_failures(job.id)) == [0, 1]
    for failure in store.latent_failures(job.id):
        assert f"({MAX_ATTEMPTS} of {MAX_ATTEMPTS} attempts)" in failure.reason
    assert claimed.attempts <= MAX_ATTEMPTS
    assert store.finish_chunk(chunk.id, WORKER, "succeeded")
    final = store.get_chunk(chunk.id)
    assert final.status == "succeeded" and final.attempts <= MAX_ATTEMPTS, final


def test_the_first_run_requeued_before_it_reached_a_latent_leaves_the_poison_latent_its_cap(
    store: Store,
) -> None:
    job, chunk = _claimed_chunk(store, 1)
    _requeued_before_its_first_latent(store, chunk.id, 0)
    _claim(store, chunk.id)
    claimed = _poison(store, chunk.id, 0)

    (failure,) = store.latent_failures(job.id)
    assert failure.latent_index == 0
    assert f"({MAX_ATTEMPTS} of {MAX_ATTEMPTS} attempts)" in failure.reason
    assert claimed.attempts <= MAX_ATTEMPTS
    assert store.finish_chunk(chunk.id, WORKER, "succeeded")
    assert store.refresh_job_status(job.id).status == "failed"  # its only latent failed


def test_runs_that_never_reach_a_latent_still_close_the_chunk_after_a_poison_latent(
    store: Store,
) -> None:
    job, chunk = _claimed_chunk(store, 2)
    _poison(store, chunk.id, 0)
    for _ in range(MAX_ATTEMPTS - 1):  # e.g. the model's load kills every run from here on
        assert store.requeue_chunk(chunk.id, older_than_s=0)
        _claim(store, chunk.id)
    assert store.requeue_chunk(chunk.id, older_than_s=0)

    _assert_exhausted(store, chunk.id)
    assert [f.latent_index for f in store.latent_failures(job.id)] == [0]


def test_runs_that_died_on_a_latent_that_then_got_its_result_stay_charged_to_the_chunk(
    store: Store,
) -> None:
    job, chunk = _claimed_chunk(store, 2)
    for _ in range(MAX_ATTEMPTS - 1):  # latent 0 kills two runs, then a third computes it
        _dies_on(store, chunk.id, 0)
        _claim(store, chunk.id)
    assert store.start_latent(chunk.id, WORKER, 0)
    assert save(store, job.id, 0)
    assert store.requeue_chunk(chunk.id, older_than_s=0)  # that run ends before latent 1

    _assert_exhausted(store, chunk.id)
    assert store.latent_failures(job.id) == []


def test_a_run_handed_back_for_the_store_charges_neither_the_chunk_nor_the_latent(
    store: Store,
) -> None:
    """Two runs died on latent 0; the third is handed back because the store was unavailable
    (release_chunk): its attempt is given back, and the mark it clears takes the two deaths
    with it, so they are not left charged to the chunk's cap either."""
    job, chunk = _claimed_chunk(store, 1)
    for _ in range(2):
        _dies_on(store, chunk.id, 0)
        _claim(store, chunk.id)
    assert store.start_latent(chunk.id, WORKER, 0)
    assert store.release_chunk(chunk.id, WORKER)

    released = store.get_chunk(chunk.id)
    assert (released.status, released.attempts, released.current_latent) == ("queued", 0, None)
    # The latent's cap starts afresh, and nothing was recorded against it.
    _claim(store, chunk.id)
    _poison(store, chunk.id, 0)
    (failure,) = store.latent_failures(job.id)
    assert f"({MAX_ATTEMPTS} of {MAX_ATTEMPTS} attempts)" in failure.reason
