"""Worker metrics for Prometheus, scraped from a real `celery worker` (prefork, so the values
come from the pool child through the multiprocess files): codes finished, failures by reason,
chunk durations, and the queue depth read from Redis."""

from __future__ import annotations

import urllib.request

import numpy as np
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from services.config import Settings
from services.pipeline import JobSpec, submit_job
from services.store import Store
from tests.pipeline.conftest import Cluster
from tests.pipeline.test_worker_scenarios import NAN_MODEL
from tests.pipeline.toy_generators import LATENT_DIM, TRIGGER
from tests.support.net import free_port
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import TERMINAL, wait_for
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK
from worker.metrics import failure_kind, queue_depth


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_queue_depth_counts_waiting_messages(private_redis: PrivateRedis, sender: Celery) -> None:
    client = redis.Redis.from_url(private_redis.url)
    queue = "metrics-depth-test"  # no worker consumes it
    for index in range(3):
        sender.send_task(CHUNK_TASK, args=[f"c{index}"], task_id=f"c{index}", queue=queue)
    try:
        assert queue_depth(client, queue) == (3, 0)
    finally:
        client.delete(queue)
    assert queue_depth(client, queue) == (0, 0)


def test_failure_kind_is_bounded() -> None:
    assert (
        failure_kind("NonFiniteOutputError: NaN in the image (at chunks.py:12)")
        == "NonFiniteOutputError"
    )
    assert failure_kind("a message: with colons") == "other"
    assert failure_kind("") == "other"


def test_worker_serves_codes_failures_durations_and_queue(
    cluster: Cluster, module_store: Store, sender: Celery
) -> None:
    port = free_port()
    cluster.env["SPECTRA_WORKER_METRICS_PORT"] = str(port)
    cluster.start("metrics")
    wait_for(lambda: _answers(port), 30, "the worker's metrics endpoint")

    codes = np.random.default_rng(0).standard_normal((4, LATENT_DIM))
    codes[2, 0] = TRIGGER  # this code fails with NaN images

    def dispatch(ids: list[str]) -> None:
        for chunk_id in ids:
            sender.send_task(CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE)

    job, _ = submit_job(
        module_store,
        JobSpec(model=NAN_MODEL, latents={"values": codes.tolist()}, chunk_size=2),  # type: ignore[arg-type]
        "metrics",
        dispatch,
        settings=Settings(),
    )
    wait_for(
        lambda: (
            module_store.get_job(job.id).status in TERMINAL
            and all(c.status in TERMINAL for c in module_store.list_chunks(job.id))
        ),
        120,
        "the job",
    )
    (failure,) = module_store.latent_failures(job.id)
    labels = (("method", "jacobian"), ("model", NAN_MODEL))

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        values = scrape(port)
        return values if values.get(("spectra_worker_codes_total", labels)) == 4 else None

    values = wait_for(counted, 10, "the codes to be counted")
    reason = tuple(sorted((*labels, ("reason", failure_kind(failure.reason)))))
    assert failure_kind(failure.reason) == "NonFiniteOutputError"
    assert values[("spectra_worker_code_failures_total", reason)] == 1
    succeeded = tuple(sorted((*labels, ("status", "succeeded"))))
    assert values[("spectra_worker_chunks_total", succeeded)] == 2
    assert values[("spectra_worker_chunk_duration_seconds_count", succeeded)] == 2
    assert 0 < values[("spectra_worker_chunk_duration_seconds_sum", succeeded)] < 120
    assert values[("spectra_queue_depth", (("queue", CHUNK_QUEUE), ("state", "waiting")))] == 0
    assert values[("spectra_broker_up", ())] == 1


def _answers(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False
