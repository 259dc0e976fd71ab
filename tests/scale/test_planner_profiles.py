"""The planner off the request path: a model's cost profile is measured once by a worker and
stored; submissions and dry runs read it (the same estimate, naming the profile); a model
with none is accepted at once and planned by the worker, which refuses it with the 422's
message when it fits no worker; a job too big for every worker is refused from the
architecture's counts before anything large is allocated; the tangent batch is the fastest
the probe found among those that fit; and the time of workers sharing a host is scaled by
the contention the probe measured."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from services.celery_config import CHUNK_QUEUE
from services.config import Settings
from services.dispatch import CeleryDispatcher, InProcessDispatcher
from services.pipeline import JobSpec, costs, dry_run_job
from services.pipeline import estimate as model
from services.pipeline import probe as probing
from services.pipeline.cache import cached_distance, cached_generator
from services.pipeline.resources import compute_threads
from services.pipeline.shapes import model_counts, output_counts
from services.store import Store
from services.store.tables import COST_PROFILES
from tests.api.conftest import assert_problem, bearer, make_settings

WIDE = f"python:{Path(__file__).with_name('wide_generators.py')}:linear_wide"
BUDGET_GB = 0.6
LANCZOS: dict[str, Any] = {
    "model": WIDE,
    "method": "lanczos",
    "top_k": 10,
    "latents": {"count": 2, "seed": 1},
}


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    store = Store(pg_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def _settings(pg_url: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "extra_models": WIDE,
        "max_latent_dim": 8192,
        "worker_memory_gb": BUDGET_GB,
        "broker_url": redis_url,
        **overrides,
    }
    return make_settings(pg_url, **values)


@pytest.fixture
def queue(redis_url: str) -> Iterator[redis.Redis]:
    """The broker's chunk queue (this test's Redis database), emptied after the test: no
    worker consumes it, so what the API enqueues stays there to be seen."""
    client = redis.Redis.from_url(redis_url)
    client.delete(CHUNK_QUEUE)
    try:
        yield client
    finally:
        client.delete(CHUNK_QUEUE)
        client.close()


# --------------------------------------------------------------------------- counts


def test_the_meta_pass_counts_what_a_real_forward_pass_holds() -> None:
    """The shape-only pass (no storage) against a real pass of the same module with the same
    hooks: the same weights, output features and activations, element for element."""
    generator = cached_generator("dcgan-faces", "cpu", "float32")
    distance = cached_distance("mse", "cpu", "float32")
    counts = model_counts(generator, distance)
    assert counts is not None
    outputs: list[int] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: outputs.append(out.numel()))
        for module in generator.module.modules()
    ]
    try:
        with torch.no_grad():
            image = generator.module(torch.zeros((1, generator.latent_dim)))
    finally:
        for hook in hooks:
            hook.remove()
    weights = sum(t.numel() for t in (*generator.module.parameters(), *generator.module.buffers()))
    assert counts.parameters == weights
    assert counts.features == image[0].numel() == 3 * 64 * 64
    assert counts.largest_activation == max(outputs)
    assert counts.activations == sum(outputs)
    # What a submission reads without running anything: the same weights and features, and
    # the output image as a lower bound of the activations.
    recorded = output_counts(generator, distance)
    assert recorded is not None
    assert (recorded.parameters, recorded.features) == (counts.parameters, counts.features)
    assert recorded.largest_activation == image[0].numel() <= counts.largest_activation


def test_a_job_too_big_for_every_worker_is_refused_from_counts_at_once(
    pg_url: str, redis_url: str, store: Store, queue: redis.Redis
) -> None:
    """The exact route at d = 4096 needs H and eigh's copies, more than the 0.6 GiB budget
    whatever the tangent batch: refused by its counts, in the request, with no probe (no
    profile stored, nothing enqueued) and nothing created."""
    settings = _settings(pg_url, redis_url)
    app = create_app(settings=settings, store=store, dispatcher=CeleryDispatcher(settings))
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    spec = {"model": WIDE, "method": "jacobian", "latents": {"count": 2}}
    with TestClient(app) as client:
        cached_generator(WIDE, "cpu", "float32", "z", None)  # loaded: time the planning alone
        started = time.perf_counter()
        response = client.post("/v1/jobs", json=spec, headers=headers)
        elapsed = time.perf_counter() - started
    detail = assert_problem(response, 422, "method")["detail"]
    assert "at least (from the architecture's counts)" in detail
    assert "0.60 GiB (SPECTRA_WORKER_MEMORY_GB)" in detail
    assert "method='lanczos' with top_k=100 (at least" in detail
    assert elapsed < 5.0, elapsed
    assert store.list_jobs(limit=10) == [] and queue.llen(CHUNK_QUEUE) == 0
    assert _profiles(store) == 0


def _profiles(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(COST_PROFILES)).scalar_one())


def test_the_probe_never_tries_a_batch_its_counts_say_is_over_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generator = cached_generator("dcgan-faces", "cpu", "float32")
    distance = cached_distance("mse", "cpu", "float32")
    counts = model_counts(generator, distance)
    assert counts is not None
    measured: list[object] = []
    monkeypatch.setattr(probing, "_measure", lambda run, device: measured.append(run))
    budget = counts.largest_activation * 4 * 2  # a quarter of it is half of one tangent
    with pytest.raises(probing.ProbeOverBudgetError, match="at least"):
        probing.probe(generator, distance, "float32", budget=budget, counts=counts)
    assert measured == []


# --------------------------------------------------------------------------- profiles


@pytest.mark.timed
def test_an_unprofiled_model_is_accepted_at_once_and_planned_by_a_worker(
    pg_url: str, redis_url: str, store: Store, queue: redis.Redis
) -> None:
    settings = _settings(pg_url, redis_url)
    app = create_app(settings=settings, store=store, dispatcher=CeleryDispatcher(settings))
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    with TestClient(app) as client:
        cached_generator(WIDE, "cpu", "float32", "z", None)  # as resolution asks for it
        started = time.perf_counter()
        submitted = client.post("/v1/jobs", json=LANCZOS, headers=headers)
        submit_s = time.perf_counter() - started
        assert submitted.status_code == 202, submitted.text
        assert submit_s < 1.0, submit_s
        job = store.get_job(submitted.json()["id"])
        assert job.status == "queued" and store.list_chunks(job.id) == []
        assert job.estimate is not None and "a worker measures it" in job.estimate["pending"]
        assert queue.llen(CHUNK_QUEUE) == 1  # the planning message, no chunk yet

        # What the worker's planning task runs.
        dispatched: list[str] = []
        workers = costs.Workers.from_settings(settings)
        assert costs.plan_pending_job(store, job.id, workers, dispatched.extend) == "planned"
        chunks = store.list_chunks(job.id)
        assert chunks and dispatched == [chunk.id for chunk in chunks]
        planned = store.get_job(job.id).estimate
        assert planned is not None and planned["probed"] is True
        profile = planned["profile"]
        assert profile["id"] and profile["measured_at"] and profile["probe_seconds"] > 0
        # A second delivery of the planning message does nothing.
        assert costs.plan_pending_job(store, job.id, workers, dispatched.extend) == "skipped"

        # Once the profile exists, a dry run is answered from it, at once, with the same
        # estimate the job recorded, naming the same profile.
        started = time.perf_counter()
        dry = client.post("/v1/jobs?dry_run=true", json=LANCZOS, headers=headers)
        dry_s = time.perf_counter() - started
    assert dry.status_code == 200, dry.text
    assert dry_s < 1.0, dry_s
    assert dry.json()["plan"] == planned
    assert "plan" not in job.resolved  # the plan is not part of the hashed spec


def test_a_dry_run_of_an_unprofiled_model_asks_a_worker_and_says_so(
    pg_url: str, redis_url: str, store: Store, queue: redis.Redis
) -> None:
    settings = _settings(pg_url, redis_url)
    app = create_app(settings=settings, store=store, dispatcher=CeleryDispatcher(settings))
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    with TestClient(app) as client:
        response = client.post("/v1/jobs?dry_run=true", json=LANCZOS, headers=headers)
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    assert plan["profile"] is None and "a worker measures it" in plan["pending"]
    assert queue.llen(CHUNK_QUEUE) == 1 and store.list_jobs(limit=10) == []


def test_a_pending_job_that_fits_no_worker_ends_refused_with_the_422s_message(
    pg_url: str, sqlite_url: str, redis_url: str, store: Store
) -> None:
    """A budget between the job's lower bound by counts and what its profile measures: the
    submission is accepted (counts fit), the worker's plan refuses it; the next submission,
    the profile now stored, is a 422 with the very same message."""
    budget = _budget_between_floor_and_measured(sqlite_url, redis_url)
    settings = _settings(pg_url, redis_url, worker_memory_gb=budget / 1024**3)
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    alice = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    bob = bearer(store.create_api_key("bob", ["read", "submit"])[1])
    with TestClient(app) as client:
        submitted = client.post("/v1/jobs", json=LANCZOS, headers=alice)  # planned in-process
        assert submitted.status_code == 202, submitted.text
        detail = client.get(f"/v1/jobs/{submitted.json()['id']}", headers=alice).json()
        assert detail["status"] == "refused", detail
        assert "SPECTRA_WORKER_MEMORY_GB" in detail["error"]
        refused = client.post("/v1/jobs", json=LANCZOS, headers=bob)
    assert assert_problem(refused, 422)["detail"].endswith(detail["error"])


def _budget_between_floor_and_measured(sqlite_url: str, redis_url: str) -> int:
    """Measure the profile in a store of its own, then a budget halfway between the plan's
    lower bound by counts and its measured peak."""
    with Store(sqlite_url) as side:
        side.migrate()
        settings = _settings(sqlite_url, redis_url)
        resolved = dry_run_job(side, JobSpec(**LANCZOS), "calibration", settings=settings)
        inputs = costs.CostInputs.from_resolved(resolved["resolved"])
        measured = resolved["plan"]["per_code"]["peak_bytes"]
    generator = cached_generator(WIDE, "cpu", "float32")
    counts = output_counts(generator, cached_distance("mse", "cpu", "float32"))
    assert counts is not None
    job = model.JobCounts(2, 1, "cpu", 2**40)
    floor, _ = model.plan_from_floor(counts, inputs.request(), job)
    assert floor.per_code.peak_bytes is not None and floor.per_code.peak_bytes < measured
    return int((floor.per_code.peak_bytes + measured) // 2)


# --------------------------------------------------------------------------- cost model


def _probe(**changes: Any) -> model.Probe:
    line = model.Linear(0.0, 1.0)
    values: dict[str, Any] = {
        "latent_dim": 1024,
        "features": 64,
        "itemsize": 4,
        "parameter_bytes": 0,
        "tangent_bytes": model.Linear(0.0, 10 * 1024**2),
        "tangent_seconds": line,
        "pullback_bytes": line,
        "pullback_seconds": line,
        "hvp_bytes": line,
        "hvp_seconds": line,
        "prepare_seconds": 0.0,
        "hvp_graph_seconds": 0.0,
        "hvp_single_seconds": 0.0,
        "gemm_flops_per_s": 1e12,
        "eigh_seconds_per_d3": 0.0,
        # per tangent: 8 -> 0.125 s, 32 -> 0.0625 s, 128 -> 0.09375 s: 32 is the fastest.
        "tangent_points": (
            (8, 8 * 1024**2, 1.0),
            (32, 32 * 1024**2, 2.0),
            (128, 128 * 1024**2, 12.0),
        ),
    }
    values.update(changes)
    return model.Probe(**values)


def test_the_tangent_batch_is_the_fastest_the_probe_found_among_those_that_fit() -> None:
    probe = _probe()
    request = model.Request("jacobian", "float32", None, None, None, "float32")
    roomy = 2**40
    chosen, fits = model.fitting_estimate(probe, request, "cpu", roomy)
    # Not the largest that fits (1024): the fastest per tangent the probe measured.
    assert fits and chosen.tangent_batch == 32
    assert chosen.seconds == pytest.approx(1024 / 32 * 2.0 + 2 * 1024 * 1024 * 64 / 1e12)
    # Where 32 does not fit, the fastest of those that do.
    batch_32 = model.estimate_code(probe, request, "cpu", 32).peak_bytes
    assert batch_32 is not None
    tight, fits = model.fitting_estimate(probe, request, "cpu", batch_32 - 1)
    # 16, between the measured 8 and 32 (interpolated), is faster per tangent than 8.
    assert fits and tight.tangent_batch == 16


def test_the_time_of_workers_sharing_a_host_is_scaled_by_the_measured_contention() -> None:
    request = model.Request("jacobian", "float32", None, 32, None, "float32")
    alone = model.estimate_code(_probe(), request, "cpu", 32)
    shared = model.estimate_code(_probe(contention=1.7, concurrent=2), request, "cpu", 32)
    assert shared.seconds == pytest.approx(1.7 * alone.seconds)
    assert shared.peak_bytes == alone.peak_bytes

    def work() -> None:
        a = torch.randn((384, 384), dtype=torch.float64)
        for _ in range(20):
            a = torch.tanh(a @ a / 384)

    device = torch.device("cpu")
    with compute_threads(1):
        factor = probing.contention_factor(work, device, 2)
    assert 1.0 <= factor < 20.0
    assert probing.contention_factor(work, device, 1) == 1.0

    # The other workers were forked and are gone: no child of this process is left.
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_a_probe_of_workers_sharing_a_host_measures_their_contention() -> None:
    """The whole probe with two workers per host, on a real model: every product kind
    measured at its batches, and the contention of two forward passes at once."""
    generator = cached_generator("dcgan-faces", "cpu", "float32")
    distance = cached_distance("mse", "cpu", "float32")
    measured = probing.probe(
        generator,
        distance,
        "float32",
        threads=1,
        counts=model_counts(generator, distance),
        concurrent=2,
    )
    assert measured.concurrent == 2 and measured.contention >= 1.0
    assert [b for b, _, _ in measured.tangent_points] == [8, 32, 100]  # d = 100 caps 128
    assert all(seconds > 0 for _, _, seconds in measured.hvp_points)


def test_a_profile_survives_its_stored_document() -> None:
    probe = _probe(contention=1.3, concurrent=2)
    assert model.Probe.from_document(probe.to_document()) == probe


def test_the_reaper_sends_a_lost_planning_message_again(
    pg_url: str, redis_url: str, store: Store, queue: redis.Redis
) -> None:
    """A job accepted unplanned whose planning message the broker lost (Redis restarted
    without its data) is planned again by the reaper; while the broker holds it, it is not."""
    from worker.reaper import broker_task_ids, reap

    settings = _settings(pg_url, redis_url)
    dispatcher = CeleryDispatcher(settings)
    app = create_app(settings=settings, store=store, dispatcher=dispatcher)
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    with TestClient(app) as client:
        job_id = client.post("/v1/jobs", json=LANCZOS, headers=headers).json()["id"]
    workers = costs.Workers.from_settings(settings)

    def sweep() -> list[str]:
        report = reap(
            store,
            lambda _ids: None,
            stale_after_s=60,
            in_flight=lambda: broker_task_ids(queue, CHUNK_QUEUE),
            queued_grace_s=0,
            plan=lambda job: dispatcher.plan_job(job, workers),
        )
        return report.replanned

    assert sweep() == []  # the message is still there
    queue.delete(CHUNK_QUEUE)  # lost
    assert sweep() == [job_id]
    assert queue.llen(CHUNK_QUEUE) == 1


def test_the_worker_refuses_from_its_fuller_counts_before_any_probe(
    pg_url: str, redis_url: str, store: Store
) -> None:
    """The submission counts each tangent as its output image; the worker's meta-device pass
    sees the largest activation (dcgan-faces: 4 x 128 x 128 against 3 x 64 x 64). With a
    budget between the two lower bounds, the job is accepted, then refused by the worker
    with the 422's message and no probe run (no profile stored)."""
    spec: dict[str, Any] = {
        "model": "dcgan-faces",
        "method": "hvp",
        "batch": 100,
        "latents": {"count": 1},
    }
    generator = cached_generator("dcgan-faces", "cpu", "float32", "z", None)
    distance = cached_distance("mse", "cpu", "float32")
    recorded, counted = output_counts(generator, distance), model_counts(generator, distance)
    assert recorded is not None and counted is not None
    request = model.Request("hvp", "float32", None, 100, None, "float32")
    job = model.JobCounts(1, 1, "cpu", 2**40)
    low = model.plan_from_floor(recorded, request, job)[0].per_code.peak_bytes
    high = model.plan_from_floor(counted, request, job)[0].per_code.peak_bytes
    assert low is not None and high is not None and low < high
    settings = _settings(
        pg_url, redis_url, worker_memory_gb=(low + high) / 2 / 1024**3, plan_probe_min_dim=1
    )
    app = create_app(settings=settings, store=store, dispatcher=InProcessDispatcher(store))
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    with TestClient(app) as client:
        submitted = client.post("/v1/jobs", json=spec, headers=headers)
        assert submitted.status_code == 202, submitted.text
        detail = client.get(f"/v1/jobs/{submitted.json()['id']}", headers=headers).json()
    assert detail["status"] == "refused", detail
    assert "at least (from the architecture's counts)" in detail["error"]
    assert _profiles(store) == 0
