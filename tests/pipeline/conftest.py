"""Real services for the pipeline tests: a private redis-server on a free port (so a restart
hurts nobody else, and no other test's worker steals our messages), a PostgreSQL database
per module, and real `celery worker` subprocesses (prefork, concurrency 1) started through
worker.launcher exactly as `spectra worker --cpu` starts them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from celery import Celery

from services.config import Settings
from services.store import Store
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import wait_for
from worker.celery_app import configure
from worker.launcher import WorkerPlan, start_worker

REPO = Path(__file__).resolve().parents[2]
# Short enough that the reaper acts within seconds, long enough not to fire on a loaded CI box.
HEARTBEAT_S = 0.5
STALE_AFTER_S = 4.0
MAX_ATTEMPTS = 3


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path
    netns: str | None = None  # the network namespace (a lab host) it runs in, if any

    @property
    def pid(self) -> int:
        return self.process.pid

    def pool_children(self) -> list[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    """Workers of one test module, all on the private Redis and the module's database."""

    env: dict[str, str]
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)
    # Lab hosts' network namespaces: the nth worker started runs on the (n mod len)th.
    netns: list[str] = field(default_factory=list)

    def start(self, name: str = "cpu") -> Worker:
        log = self.log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        plan = WorkerPlan(
            f"{name}-{uuid.uuid4().hex[:6]}@test",
            "cpu",
            {"CUDA_VISIBLE_DEVICES": "", "SPECTRA_DEVICE": "cpu"},
        )
        netns = self.netns[len(self.workers) % len(self.netns)] if self.netns else None
        with log.open("wb") as out:
            process = start_worker(
                plan,
                extra_env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                command_prefix=["ip", "netns", "exec", netns] if netns else (),
            )
        worker = Worker(process, log, netns)
        self.workers.append(worker)
        try:
            wait_for(lambda: "ready." in worker.log_text() or not worker.alive(), 90, "a worker")
        except AssertionError:
            raise AssertionError(f"worker did not start:\n{worker.log_text()[-3000:]}") from None
        assert worker.alive(), f"worker exited at start:\n{worker.log_text()[-3000:]}"
        wait_for(worker.pool_children, 30, "the worker's pool child")
        return worker

    def running(self) -> Worker:
        """A live worker, starting one if an earlier test killed them all."""
        live = [w for w in self.workers if w.alive()]
        return live[0] if live else self.start()

    def kill(self, worker: Worker) -> None:
        """SIGKILL the worker and its pool child at once (no warm shutdown, no goodbye)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.process.wait()

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.alive():
                self.kill(worker)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sender(private_redis: PrivateRedis) -> Iterator[Celery]:
    """The API side: enqueues and revokes on the private Redis, with the workers' settings."""
    app = Celery("test-sender")
    configure(app, Settings(broker_url=private_redis.url))
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def module_store(module_pg_url: str) -> Iterator[Store]:
    store = Store(module_pg_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


def worker_env(database_url: str, broker_url: str) -> dict[str, str]:
    return {
        "SPECTRA_DATABASE_URL": database_url,
        "SPECTRA_BROKER_URL": broker_url,
        "SPECTRA_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
        "SPECTRA_STALE_AFTER_S": str(STALE_AFTER_S),
        "SPECTRA_MAX_CHUNK_ATTEMPTS": str(MAX_ATTEMPTS),
        "SPECTRA_DEVICE": "cpu",
        # Two cores shared with other test runs: one thread per worker keeps timings sane.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


@pytest.fixture(scope="module")
def cluster(
    module_pg_url: str,
    module_store: Store,
    private_redis: PrivateRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    group = Cluster(
        worker_env(module_pg_url, private_redis.url), tmp_path_factory.mktemp("workers")
    )
    try:
        yield group
    finally:
        group.stop_all()


def python_executable() -> str:
    return sys.executable


@pytest.fixture
def pg_url(migrated_pg_url: str) -> str:
    """These tests' databases start migrated: a clone of the session's template (the
    migrations themselves are tested in tests/store/test_migrations.py)."""
    return migrated_pg_url
