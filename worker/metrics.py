"""Prometheus metrics of a worker: codes finished, failures by reason, chunk durations, and the
depth of the broker queue.

A Celery prefork worker computes in pool children that come and go (one is replaced every
MAX_TASKS_PER_CHILD chunks), so the counters use prometheus_client's multiprocess mode: each
child writes its values to files under PROMETHEUS_MULTIPROC_DIR (the launcher gives each
worker a fresh directory) and the worker's main process serves their sum on
SPECTRA_WORKER_METRICS_PORT. The queue depth is read from Redis at scrape time, so it is
right even when no chunk runs. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KOMBU_UNACKED_KEY = "unacked"
# A chunk is a few codes to an hour of work.
QUEUE_METRICS = frozenset({"spectra_queue_depth", "spectra_broker_up"})
CHUNK_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

CODES = Counter(
    "spectra_worker_codes_total",
    "Codes finished (spectrum stored or failure recorded), by model and method; rate() is codes/s.",
    ["model", "method"],
)
CODE_FAILURES = Counter(
    "spectra_worker_code_failures_total",
    "Codes whose spectrum failed, by model, method and reason (the error's type).",
    ["model", "method", "reason"],
)
CHUNKS = Counter(
    "spectra_worker_chunks_total",
    "Chunks this worker ran to an end, by the chunk's status afterwards.",
    ["model", "method", "status"],
)
CHUNK_SECONDS = Histogram(
    "spectra_worker_chunk_duration_seconds",
    "Wall time of one chunk in a pool child, by model, method and status.",
    ["model", "method", "status"],
    buckets=CHUNK_BUCKETS,
)


def failure_kind(reason: str) -> str:
    """The bounded label for a stored failure reason ("NonFiniteOutputError: ... (at f:12)"):
    its error type, so the label set stays small whatever the messages say."""
    kind = reason.split(":", 1)[0].strip()
    return kind if kind.isidentifier() and len(kind) <= 64 else "other"


def queue_depth(client: redis.Redis, queue: str) -> tuple[int, int]:
    """(waiting, unacknowledged) messages: the queue's lists (one per priority step, as kombu
    names them) and the deliveries workers hold but have not acknowledged (all queues)."""
    waiting = 0
    for key in client.scan_iter(match=f"{queue}*", count=100):
        name = key.decode() if isinstance(key, bytes) else key
        if (name == queue or name.startswith(f"{queue}\x06\x16")) and client.type(key) in (
            b"list",
            "list",
        ):
            waiting += int(client.llen(key))
    return waiting, int(client.hlen(KOMBU_UNACKED_KEY))


class QueueDepthCollector(Collector):
    def __init__(self, broker_url: str, queue: str) -> None:
        self.client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "spectra_queue_depth",
            "Chunk messages in the broker: waiting in the queue, or delivered and unacknowledged.",
            labels=["queue", "state"],
        )
        up = GaugeMetricFamily("spectra_broker_up", "1 if the broker answered the last scrape.")
        try:
            waiting, unacked = queue_depth(self.client, self.queue)
        except redis.RedisError as error:
            log.warning("queue depth unavailable: %s", error)
            up.add_metric([], 0.0)
        else:
            gauge.add_metric([self.queue, "waiting"], waiting)
            gauge.add_metric([self.queue, "unacked"], unacked)
            up.add_metric([], 1.0)
            yield gauge
        yield up


def exporter_registry(broker_url: str, queue: str) -> CollectorRegistry:
    """What the main process serves: the children's values summed (multiprocess mode), or this
    process's own (a solo pool), plus the queue depth."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    registry.register(QueueDepthCollector(broker_url, queue))
    return registry


def serve(port: int, broker_url: str, queue: str, host: str = "0.0.0.0") -> Any:
    """Start the /metrics HTTP server in a daemon thread of the calling (main) process."""
    server, _thread = start_http_server(
        port, addr=host, registry=exporter_registry(broker_url, queue)
    )
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server


def record_chunk(
    model: str, method: str, status: str, seconds: float, codes: int, failures: list[str]
) -> None:
    CODES.labels(model, method).inc(codes)
    for reason in failures:
        CODE_FAILURES.labels(model, method, failure_kind(reason)).inc()
    CHUNKS.labels(model, method, status).inc()
    CHUNK_SECONDS.labels(model, method, status).observe(seconds)


def measured_chunk(store: Any, chunk_id: str, run: Callable[[Callable[[int], None]], str]) -> str:
    """Run a chunk through ``run(on_latent)`` and record what it did. The failures counted are
    the ones this run recorded (a redelivered chunk does not count a code twice); a chunk
    that raises (time limit, database away) is recorded as "interrupted" and re-raised."""
    try:
        chunk = store.get_chunk(chunk_id)
        job = store.get_job(chunk.job_id)
    except Exception:  # the chunk function reports a missing chunk itself
        return run(lambda _index: None)
    model, method = job.model or "unknown", str(job.spec.get("method", "unknown"))
    indices = set(chunk.latent_indices)
    before = _failed_in(store, job.id, indices) if job.n_failed else {}
    finished = 0

    def on_latent(_index: int) -> None:
        nonlocal finished
        finished += 1

    started = time.perf_counter()
    status = "interrupted"
    try:
        status = run(on_latent)
        return status
    finally:
        try:
            after = _failed_in(store, job.id, indices)
            new = [reason for index, reason in after.items() if index not in before]
            record_chunk(model, method, status, time.perf_counter() - started, finished, new)
        except Exception:  # metrics never fail a chunk
            log.exception("could not record metrics of chunk %s", chunk_id)


def _failed_in(store: Any, job_id: str, indices: set[int]) -> dict[int, str]:
    return {
        f.latent_index: f.reason for f in store.latent_failures(job_id) if f.latent_index in indices
    }
