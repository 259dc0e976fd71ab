"""The reaper against the real store and real Redis; the worker's Celery configuration and
launcher plan (no subprocess needed for those)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis
from celery import Celery

from services.config import Settings
from services.store import ChunkPlan, Store, StoreUnavailable
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK, app, time_limits
from worker.launcher import plan_workers, worker_command
from worker.reaper import StoreOutages, broker_task_ids, reap


def _job_with_chunks(store: Store, n_chunks: int) -> list[str]:
    codes = np.random.default_rng(0).standard_normal((n_chunks, 3))
    latent_set = store.create_latent_set("owner", codes)
    job, _ = store.create_job(
        "owner",
        {"test": uuid.uuid4().hex},
        {"model": "none"},
        uuid.uuid4().hex,
        latent_set.id,
        n_chunks,
        [ChunkPlan(i, [i]) for i in range(n_chunks)],
    )
    return [chunk.id for chunk in store.list_chunks(job.id)]


def test_stale_chunk_is_requeued_and_dispatched_but_a_live_one_is_not(store: Store) -> None:
    stale, live = _job_with_chunks(store, 2)
    assert store.claim_chunk(stale, "dead-worker", 3) is not None
    time.sleep(0.4)
    assert store.claim_chunk(live, "live-worker", 3) is not None
    sent: list[str] = []

    report = reap(store, sent.extend, stale_after_s=0.3)

    assert report.requeued == [stale] and sent == [stale]
    assert store.get_chunk(stale).status == "queued"
    assert store.get_chunk(stale).lease_owner is None
    assert store.get_chunk(live).status == "running"
    # The requeued chunk is claimable again, with its attempt counted.
    again = store.claim_chunk(stale, "new-worker", 3)
    assert again is not None and again.attempts == 2


def test_a_lease_that_went_silent_during_a_store_outage_is_not_judged_stale(store: Store) -> None:
    """Heartbeats cannot be written while the store is down or full: a lease is judged stale
    only once the store has answered for a whole staleness period since its last outage. A
    sweep that finds the store unable to answer remembers it, and says so."""
    (chunk_id,) = _job_with_chunks(store, 1)
    assert store.claim_chunk(chunk_id, "waiting-worker", 3) is not None
    time.sleep(0.4)
    sent: list[str] = []
    outages = StoreOutages()
    with (
        Store("postgresql+psycopg://postgres@127.0.0.1:1/down") as down,
        pytest.raises(StoreUnavailable),
    ):
        reap(down, sent.extend, stale_after_s=0.3, outages=outages)
    report = reap(store, sent.extend, stale_after_s=0.3, outages=outages)
    assert report.deferred == [chunk_id] and report.requeued == [] and sent == []
    assert store.get_chunk(chunk_id).status == "running"
    time.sleep(0.35)  # the store has answered for a staleness period: judged as usual now
    report = reap(store, sent.extend, stale_after_s=0.3, outages=outages)
    assert report.requeued == [chunk_id] and sent == [chunk_id]


def test_poison_chunk_ends_failed_with_its_reason_after_max_attempts(store: Store) -> None:
    (chunk_id,) = _job_with_chunks(store, 1)
    sent: list[str] = []
    for _ in range(3):  # every worker that takes it dies: its heartbeat goes stale
        assert store.claim_chunk(chunk_id, "doomed", 3) is not None
        time.sleep(0.25)
        reap(store, sent.extend, stale_after_s=0.2)
    assert sent == [chunk_id] * 3

    assert store.claim_chunk(chunk_id, "doomed", 3) is None
    chunk = store.get_chunk(chunk_id)
    assert chunk.status == "failed" and chunk.attempts == 3
    assert chunk.error is not None and "attempts exhausted" in chunk.error
    job = store.refresh_job_status(chunk.job_id)
    assert job.status == "failed" and "attempts exhausted" in (job.error or "")


def test_queued_chunk_without_a_message_is_redispatched(store: Store) -> None:
    orphan, held, fresh = _job_with_chunks(store, 3)
    later = datetime.now(UTC) + timedelta(seconds=10)
    sent: list[str] = []

    report = reap(
        store,
        sent.extend,
        stale_after_s=5,
        in_flight=lambda: {held},
        now=later,
        queued_grace_s=5,
    )
    assert sorted(report.redispatched) == sorted([orphan, fresh]) and sorted(sent) == sorted(
        [orphan, fresh]
    )
    # Within the grace period a just-created chunk's message may still be on its way.
    assert (
        reap(store, sent.extend, stale_after_s=5, in_flight=set, queued_grace_s=60).redispatched
        == []
    )
    # Without knowledge of the broker, queued chunks are left alone.
    assert reap(store, sent.extend, stale_after_s=5, now=later).redispatched == []


def test_cancelled_jobs_are_not_resurrected(store: Store) -> None:
    chunk_ids = _job_with_chunks(store, 2)
    job_id = store.get_chunk(chunk_ids[0]).job_id
    store.request_cancel(job_id)
    later = datetime.now(UTC) + timedelta(seconds=10)
    sent: list[str] = []
    report = reap(store, sent.extend, stale_after_s=1, in_flight=set, now=later, queued_grace_s=0)
    assert report.requeued == [] and report.redispatched == [] and sent == []
    assert {c.status for c in store.list_chunks(job_id)} == {"cancelled"}


def test_broker_task_ids_sees_waiting_and_unacknowledged_messages(redis_url: str) -> None:
    queue = f"test-reaper-{uuid.uuid4().hex[:8]}"
    sender = Celery("probe", broker=redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for task_id in ids:
            sender.send_task(CHUNK_TASK, args=[task_id], task_id=task_id, queue=queue)
        assert set(ids) <= broker_task_ids(client, queue)
        # A delivered, unacknowledged message moves to kombu's "unacked" hash.
        with sender.connection_for_read() as connection:
            simple = connection.SimpleQueue(queue, no_ack=False)
            message = simple.get(timeout=5)
            assert message.headers["id"] in broker_task_ids(client, queue)
            message.ack()
            simple.close()
        assert broker_task_ids(client, queue) == set(ids) - {message.headers["id"]}
    finally:
        client.delete(queue)
        client.close()


def test_celery_configuration_keeps_the_delivery_contract() -> None:
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility > conf.task_time_limit
    assert conf.result_backend_transport_options["visibility_timeout"] == visibility
    assert conf.task_routes[CHUNK_TASK]["queue"] == CHUNK_QUEUE == "gpu"
    assert conf.worker_max_tasks_per_child >= 1
    for hard in (10, 60, 3600, 86_400):
        soft, hard_limit, visibility = time_limits(Settings(chunk_time_limit_s=hard))
        assert 0 < soft < hard_limit == hard < visibility


def test_launcher_gives_each_gpu_its_own_worker_and_device() -> None:
    plans = plan_workers(["0", "3"], cpu=False, host="h")
    assert [p.node_name for p in plans] == ["gpu0@h", "gpu3@h"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "3"]
    assert {p.env["SPECTRA_DEVICE"] for p in plans} == {"cuda:0"}
    (cpu,) = plan_workers(None, cpu=True, host="h")
    assert cpu.env["CUDA_VISIBLE_DEVICES"] == "" and cpu.env["SPECTRA_DEVICE"] == "cpu"
    command = worker_command("gpu0@h")
    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--pool") + 1] == "prefork"
    assert command[command.index("--queues") + 1] == "gpu"
    for gpus, cpu_flag in ((None, False), (["0"], True), (["0", "0"], False), ([""], False)):
        with pytest.raises(ValueError):
            plan_workers(gpus, cpu=cpu_flag)
