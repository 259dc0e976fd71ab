"""Job specs, resolution, planning and the in-process runner, against the real store
(PostgreSQL where concurrency matters, SQLite for the embedded runner)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from services.config import Settings
from services.geometry import compute_spectrum, load_distance, load_generator
from services.pipeline import (
    JobSpec,
    SpecError,
    cancel_job,
    run_chunk,
    run_job_inprocess,
    submit_job,
)
from services.pipeline.lease import LeaseSettings
from services.pipeline.planning import choose_chunk_size, plan_column_blocks, plan_latent_chunks
from services.pipeline.spec import canonical_json
from services.store import JobRecord, NotFoundError, Store
from tests.pipeline import toy_generators
from tests.support.stores import store_fixture

TOY = f"python:{Path(toy_generators.__file__).resolve()}:nan_at_trigger"  # smooth off-trigger


store = store_fixture("sqlite_url")


# Fast heartbeats, passed in as an edge would pass the settings it read.
LEASE = dataclasses.replace(LeaseSettings.defaults(), heartbeat_interval_s=0.1)


def _codes(n: int, seed: int = 0) -> list[list[float]]:
    codes = np.random.default_rng(seed).standard_normal((n, toy_generators.LATENT_DIM)) * 0.5
    values: list[list[float]] = codes.tolist()
    return values


def _submitted(store: Store, owner: str = "a", **spec: Any) -> JobRecord:
    """The job of ``spec``, submitted without a dispatcher: the test runs it in-process."""
    job, _ = submit_job(store, JobSpec.model_validate(spec), owner, None, settings=Settings())
    return job


# --------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"latents": {"count": 2}, "step": 0.1}, "'step' does not apply to method 'jacobian'"),
        ({"method": "fd", "latents": {"count": 2}, "tol": 0.1}, "it is an option of lanczos"),
        ({"latents": {"count": 2}, "resize": 64}, "does not apply to distance 'mse'"),
        ({"method": "sefa", "latents": {"count": 2}}, "leave out 'latents'"),
        ({"method": "jacobian"}, "needs latent codes"),
        ({"latents": {"count": 2, "values": [[0.0]]}}, "exactly one of"),
        ({"latents": {"values": [[0.0, float("nan")]]}}, "finite number"),
        ({"latents": {"values": [[0.0], [0.0, 1.0]]}}, "same, non-zero length"),
        ({"latents": {"count": 2}, "colour": "blue"}, "Extra inputs are not permitted"),
        ({"latents": {"count": 0}}, "greater than or equal to 1"),
        ({"latents": {"count": 2}, "distance": "l1"}, "unknown distance 'l1'"),
        ({"latents": {"count": 2}, "method": "newton"}, "Input should be"),
    ],
)
def test_spec_refuses_what_cannot_run_with_a_clear_message(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        JobSpec(**fields)


def test_spec_accepts_method_options_where_they_belong() -> None:
    spec = JobSpec(method="lanczos", latents={"count": 4}, top_k=5, tol=1e-6, max_iter=50)  # type: ignore[arg-type]
    assert spec.method_options() == {"tol": 1e-6, "max_iter": 50}
    lpips = JobSpec(distance="lpips-alex", latents={"set": "abc"}, resize=64, random_backbone=True)  # type: ignore[arg-type]
    assert lpips.distance_options() == {"resize": 64, "random_backbone": True}
    assert JobSpec(method="sefa", layers=[0]).method_options() == {"layers": [0]}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"latents": {"values": [[0.0] * 5]}}, "latents", "dimension 5 but model"),
        ({"latents": {"count": 4}}, "latents", "exceed the limit of 3"),
        ({"latents": {"count": 2}, "top_k": 6}, "top_k", "smaller than the latent dimension 6"),
        ({"latents": {"count": 2}, "block_columns": 6}, "block_columns", "smaller than"),
        ({"model": "no-such-model", "latents": {"count": 2}}, "model", "unknown model"),
    ],
)
def test_bad_spec_is_refused_at_submit_and_writes_nothing(
    store: Store, fields: dict[str, Any], field: str, message: str
) -> None:
    spec = JobSpec(**{"model": TOY, **fields})
    dispatched: list[str] = []
    with pytest.raises(SpecError, match=message) as error:
        submit_job(
            store, spec, "alice", dispatched.extend, settings=Settings(max_latents_per_job=3)
        )
    assert error.value.field == field
    assert store.list_jobs() == [] and store.list_latent_sets("alice") == [] and dispatched == []


def test_unknown_or_foreign_latent_set_is_not_found(store: Store) -> None:
    own = store.create_latent_set("bob", np.zeros((2, toy_generators.LATENT_DIM)))
    with pytest.raises(NotFoundError):
        submit_job(
            store,
            JobSpec.model_validate({"model": TOY, "latents": {"set": own.id}}),
            "alice",
            None,
            settings=Settings(),
        )
    with pytest.raises(NotFoundError):
        submit_job(
            store,
            JobSpec.model_validate({"model": TOY, "latents": {"set": "missing"}}),
            "alice",
            None,
            settings=Settings(),
        )


def test_same_spec_is_the_same_job_however_the_codes_are_given(store: Store) -> None:
    dispatched: list[list[str]] = []
    sampled = JobSpec(model=TOY, latents={"count": 5, "seed": 3}, chunk_size=2)  # type: ignore[arg-type]
    job, created = submit_job(store, sampled, "alice", dispatched.append, settings=Settings())
    assert created and len(dispatched) == 1 and len(dispatched[0]) == 3
    assert job.spec_hash == hashlib.sha256(canonical_json(job.resolved).encode()).hexdigest()
    assert job.resolved["generator"]["facts"]["weights_sha256"]
    assert job.resolved["latent_set"]["n"] == 5 and job.resolved["chunk_size"] == 2

    # The same codes written out explicitly, or by the id of their stored set: same job.
    codes = store.latent_codes(job.latent_set_id).tolist()  # type: ignore[arg-type]
    for latents in ({"values": codes}, {"set": job.latent_set_id}):
        again, created = submit_job(
            store,
            JobSpec(model=TOY, latents=latents, chunk_size=2),  # type: ignore[arg-type]
            "alice",
            dispatched.append,
            settings=Settings(),
        )
        assert (again.id, created) == (job.id, False)

    # Finished work is never dispatched again; another owner gets a job of their own.
    assert run_job_inprocess(store, job.id, lease=LEASE).status == "succeeded"
    dispatched.clear()
    again, created = submit_job(store, sampled, "alice", dispatched.append, settings=Settings())
    assert (again.id, created, dispatched) == (job.id, False, [])
    other, created = submit_job(store, sampled, "carol", dispatched.append, settings=Settings())
    assert created and other.id != job.id
    # A different option is a different job.
    different, created = submit_job(
        store,
        JobSpec(model=TOY, latents={"count": 5, "seed": 3}, chunk_size=2, dtype="float64"),  # type: ignore[arg-type]
        "alice",
        None,
        settings=Settings(),
    )
    assert created and different.spec_hash != job.spec_hash


# --------------------------------------------------------------------------- planning


def test_latent_chunks_cover_every_latent_once_in_order() -> None:
    for n, size in ((1, 1), (7, 3), (8, 8), (10, 4), (100, 7)):
        plans = plan_latent_chunks(n, size)
        flat = [i for plan in plans for i in plan.latent_indices]
        assert flat == list(range(n))
        assert [p.index for p in plans] == list(range(len(plans)))
        assert max(len(p.latent_indices) for p in plans) == min(size, n)


def test_column_blocks_tile_each_hessian() -> None:
    plans = plan_column_blocks(3, 10, 4)
    assert len(plans) == 9
    for latent in range(3):
        blocks = [p.column_block for p in plans if p.latent_indices == [latent]]
        assert blocks == [(0, 4), (4, 8), (8, 10)]


def test_chosen_chunk_size_shares_a_job_between_workers_and_stays_bounded() -> None:
    assert choose_chunk_size(16, "jacobian", 100, "cpu") == 4  # 4 chunks for 4 workers
    assert choose_chunk_size(10_000, "jacobian", 100, "cpu") == 64  # capped
    assert choose_chunk_size(10_000, "bp", 512, "cpu") == 1  # minutes per code: one each
    assert choose_chunk_size(1, "jacobian", 100, "cpu") == 1


# --------------------------------------------------------------------------- in-process runner


def test_inprocess_results_equal_the_core_called_directly(store: Store) -> None:
    codes = _codes(5, seed=1)
    spec = JobSpec(model=TOY, latents={"values": codes}, chunk_size=2, dtype="float64", top_k=4)  # type: ignore[arg-type]
    job, _ = submit_job(store, spec, "alice", None, settings=Settings())
    seen: list[tuple[int, int]] = []
    done = run_job_inprocess(store, job.id, progress=lambda d, t: seen.append((d, t)))
    assert done.status == "succeeded" and done.n_done == 5
    assert seen[0] == (0, 5) and seen[-1] == (5, 5) and len(seen) == 6

    generator, distance = load_generator(TOY), load_distance("mse")
    for record in store.list_spectra(job_id=job.id):
        expected = compute_spectrum(
            generator, distance, np.array(codes[record.latent_index]), dtype="float64", top_k=4
        )
        np.testing.assert_array_equal(record.eigenvalues, expected.eigenvalues)
        np.testing.assert_array_equal(store.eigenvectors(record.id), expected.eigenvectors)
        assert record.top_eigenvalue == expected.eigenvalues[0]


def test_column_block_job_assembles_the_same_spectrum(store: Store) -> None:
    codes = _codes(2, seed=2)
    whole = _submitted(store, owner="alice", model=TOY, latents={"values": codes}, dtype="float64")
    split = _submitted(
        store, owner="alice", model=TOY, latents={"values": codes}, dtype="float64", block_columns=4
    )
    chunks = store.list_chunks(split.id)
    assert [c.column_block for c in chunks] == [(0, 4), (4, 6)] * 2
    # Run the blocks out of order: the later of each pair assembles and decomposes.
    for chunk in reversed(chunks):
        assert run_chunk(store, chunk.id, "w", lease=LEASE) == "succeeded"
    assert run_job_inprocess(store, whole.id, lease=LEASE).status == "succeeded"
    assert store.refresh_job_status(split.id).status == "succeeded"
    for a, b in zip(
        store.list_spectra(job_id=whole.id), store.list_spectra(job_id=split.id), strict=True
    ):
        np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-10)
        np.testing.assert_allclose(store.eigenvectors(a.id), store.eigenvectors(b.id), atol=1e-8)


def test_sefa_job_is_one_chunk_with_one_result(store: Store) -> None:
    job, _ = submit_job(
        store, JobSpec(model="dcgan-faces", method="sefa", top_k=10), "a", None, settings=Settings()
    )
    assert [c.latent_indices for c in store.list_chunks(job.id)] == [(0,)]
    assert run_job_inprocess(store, job.id, lease=LEASE).status == "succeeded"
    (record,) = store.list_spectra(job_id=job.id)
    assert record.latent_index == 0 and record.code is None and record.k == 10
    assert record.distance == "none" and record.method == "sefa"


def test_chunk_run_twice_stores_nothing_twice(store: Store) -> None:
    spec = JobSpec(model=TOY, latents={"values": _codes(2)}, chunk_size=2)  # type: ignore[arg-type]
    job, _ = submit_job(store, spec, "a", None, settings=Settings())
    (chunk,) = store.list_chunks(job.id)
    assert run_chunk(store, chunk.id, "first", lease=LEASE) == "succeeded"
    assert run_chunk(store, chunk.id, "second", lease=LEASE) == "succeeded"  # a duplicate delivery
    assert len(store.list_spectra(job_id=job.id)) == 2
    assert store.get_chunk(chunk.id).attempts == 1


def test_interrupted_run_resumes_without_recomputing(store: Store) -> None:
    job = _submitted(store, model=TOY, latents={"values": _codes(6)}, chunk_size=3)

    def interrupt_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job_inprocess(store, job.id, progress=interrupt_after_two, lease=LEASE)
    first = {s.latent_index: s.id for s in store.list_spectra(job_id=job.id)}
    assert sorted(first) == [0, 1]
    assert store.list_chunks(job.id)[0].status == "running"  # left behind by the "crash"

    assert run_job_inprocess(store, job.id, lease=LEASE).status == "succeeded"
    after = {s.latent_index: s.id for s in store.list_spectra(job_id=job.id)}
    assert sorted(after) == list(range(6))
    assert all(after[i] == first[i] for i in first)  # kept, not recomputed


def test_latent_failure_is_recorded_and_the_rest_completes(store: Store) -> None:
    codes = _codes(3)
    codes[1][0] = toy_generators.TRIGGER
    job, _ = submit_job(
        store,
        JobSpec.model_validate({"model": TOY, "latents": {"values": codes}}),
        "a",
        None,
        settings=Settings(),
    )
    done = run_job_inprocess(store, job.id, lease=LEASE)
    assert done.status == "succeeded" and (done.n_done, done.n_failed) == (2, 1)
    (failure,) = store.latent_failures(job.id)
    assert failure.latent_index == 1 and "NaN" in failure.reason


def test_cancelled_job_runs_nothing_more(store: Store) -> None:
    job = _submitted(store, model=TOY, latents={"values": _codes(4)}, chunk_size=2)
    revoked: list[str] = []
    cancelled = cancel_job(store, job.id, revoke=revoked.extend)
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    assert sorted(revoked) == sorted(c.id for c in store.list_chunks(job.id))
    assert run_job_inprocess(store, job.id, lease=LEASE).status == "cancelled"
    assert store.list_spectra(job_id=job.id) == []


def test_a_runner_that_lost_its_lease_stops_at_the_next_latent(store: Store) -> None:
    """The reaper judged a slow runner dead and gave its chunk to another: the first one sees
    its heartbeat refused, stops at the next latent and leaves the chunk to the new holder."""
    slow = f"python:{Path(toy_generators.__file__).resolve()}:slow"
    job = _submitted(store, model=slow, latents={"values": _codes(6)}, chunk_size=6)
    (chunk,) = store.list_chunks(job.id)
    first_result: list[str] = []
    runner = threading.Thread(
        target=lambda: first_result.append(run_chunk(store, chunk.id, "A", lease=LEASE))
    )
    runner.start()
    deadline = time.monotonic() + 60
    while not store.stored_latent_indices(job.id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.requeue_chunk(chunk.id, older_than_s=0)  # as the reaper would
    assert store.claim_chunk(chunk.id, "B", 5) is not None
    runner.join(timeout=60)

    assert first_result == ["running"]  # A gave up without finishing B's chunk
    held = store.get_chunk(chunk.id)
    assert held.status == "running" and held.lease_owner == "B"
    stopped_at = len(store.stored_latent_indices(job.id))
    assert stopped_at < 6
    # B (a redelivery to B's worker) takes over its own silent lease and completes the rest.
    assert run_chunk(store, chunk.id, "B", lease=LEASE) == "succeeded"
    assert sorted(s.latent_index for s in store.list_spectra(job_id=job.id)) == list(range(6))
