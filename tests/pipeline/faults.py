"""The faults an outside tester injected, as functions both the fixed fault matrix
(test_fault_matrix.py) and the randomised schedule (fault_schedule.py) call, and the rig they
act on: a PostgreSQL of our own (its data on a small disk of its own, so that it can be
filled), a Redis of our own (with and without an append-only file), and real workers
started as `spectra worker --cpu` starts them, with the DEFAULT lease settings.

Also what both measure with: waits, the clean in-process reference run, the job specs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import torch
from celery import Celery

from services.config import Settings
from services.pipeline import JobSpec, run_job_inprocess, submit_job
from services.pipeline import cache as generator_cache
from services.store import JobRecord, Store
from tests.pipeline import toy_generators
from tests.pipeline.conftest import REPO, Cluster, Worker
from tests.pipeline.hosts import Lab, PrivatePostgres
from tests.support.net import free_port
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import wait_for
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK, configure

TOY_FILE = Path(toy_generators.__file__).resolve()
SLOW_MODEL = f"python:{TOY_FILE}:slow"
WIDE_MODEL = f"python:{TOY_FILE}:wide"
TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULTS = Settings()  # the lease settings every scenario runs with
# The data directory's own disk: PostgreSQL's files after initdb and the migrations take a
# few tens of megabytes; the rest is what fill_disk fills.
PG_DISK_MB = 160


@dataclass
class Rig:
    store: Store
    broker: PrivateRedis
    cluster: Cluster
    sender: Celery
    postgres: PrivatePostgres
    lab: Lab | None = None  # when the workers run on lab hosts (their links can be cut)

    def dispatch(self, chunk_ids: list[str]) -> None:
        for chunk_id in chunk_ids:
            self.sender.send_task(CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE)

    def revoke(self, chunk_ids: list[str]) -> None:
        self.sender.control.revoke(chunk_ids)

    def submit(self, owner: str, **spec: Any) -> JobRecord:
        job, created = submit_job(
            self.store, JobSpec(**spec), owner, self.dispatch, settings=Settings()
        )
        assert created
        return job


def private_postgres(host: str = "127.0.0.1") -> PrivatePostgres:
    """A started private PostgreSQL whose data lives on a small disk of its own."""
    server = PrivatePostgres(host, free_port(), disk_mb=PG_DISK_MB)
    try:
        server.init()
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@contextlib.contextmanager
def open_rig(
    store: Store,
    postgres: PrivatePostgres,
    tmp: Path,
    aof: bool,
    slow_s: float | None = None,
    lab: Lab | None = None,
) -> Iterator[Rig]:
    """``slow_s``: the toys' sleep per forward pass in the workers (default: the toys').
    ``lab``: the workers run on its hosts, in turn, and reach the PostgreSQL and the Redis
    (on the lab's address here, postgres.host) over their own links."""
    broker = PrivateRedis(tmp, aof=aof, host=postgres.host)
    broker.start()
    env = {
        **({"SPECTRA_TEST_SLOW_S": str(slow_s)} if slow_s is not None else {}),
        "SPECTRA_DATABASE_URL": postgres.url(),
        "SPECTRA_BROKER_URL": broker.url,
        "SPECTRA_DEVICE": "cpu",
        "SPECTRA_EXTRA_MODELS": f"{SLOW_MODEL},{WIDE_MODEL}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cluster = Cluster(env, tmp, netns=[h.netns for h in lab.hosts.values()] if lab else [])
    sender = Celery(f"fault-rig-{uuid.uuid4().hex[:4]}")
    configure(sender, Settings(broker_url=broker.url))
    try:
        yield Rig(store, broker, cluster, sender, postgres, lab)
    finally:
        cluster.stop_all()
        sender.close()
        broker.stop()
        postgres.free_disk()


# -- the faults ------------------------------------------------------------------------------
# Each takes the rig (and how long, where the fault lasts) and returns when it is over: the
# workers, servers and disk are back as they were, so the work can recover.


def kill_pool_child(rig: Rig) -> None:
    """SIGKILL the pool children (the processes computing) of every live worker."""
    for worker in live_workers(rig):
        for child in worker.pool_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def kill_worker(rig: Rig, victim: Worker | None = None) -> None:
    """SIGKILL a whole worker (main process and pool child), then start a replacement."""
    victim = victim or live_workers(rig)[0]
    rig.cluster.kill(victim)
    rig.cluster.start()


def restart_redis(rig: Rig, aof: bool) -> None:
    """Restart the broker: without an append-only file every queued message is lost."""
    if rig.broker.aof != aof:
        rig.broker.set_aof(aof)
    rig.broker.restart()


def restart_postgres(rig: Rig) -> None:
    """A fast restart: every session ended, the server down for a moment."""
    rig.postgres.restart("fast")


def postgres_outage(rig: Rig, seconds: float) -> None:
    """PostgreSQL stopped for ``seconds`` (every session ended), then started again."""
    rig.postgres.stop("fast")
    time.sleep(seconds)
    rig.postgres.start()


def terminate_backends(rig: Rig) -> None:
    """pg_terminate_backend on every other session: pooled connections die under their
    owners, the server stays up."""
    with psycopg.connect(rig.postgres.dsn(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )


def disk_full(rig: Rig, seconds: float) -> None:
    """PostgreSQL's data disk full for ``seconds`` (writes that need space fail, reads go
    on), then freed."""
    rig.postgres.fill_disk()
    try:
        time.sleep(seconds)
    finally:
        rig.postgres.free_disk()


def cut_host_link(rig: Rig, seconds: float) -> None:
    """The link of a live worker's host cut for ``seconds`` (its packets to the PostgreSQL
    and the Redis go nowhere, its connections hang, it computes on), then restored: its
    chunk may have gone to another worker meanwhile, and it must then write nothing more
    for it. Needs a rig whose workers run on lab hosts."""
    assert rig.lab is not None, "a host link cut needs the workers on lab hosts (open_rig lab)"
    victim = live_workers(rig)[-1]
    host = next(h for h in rig.lab.hosts.values() if h.netns == victim.netns)
    rig.lab.cut(host)
    try:
        time.sleep(seconds)
    finally:
        rig.lab.restore(host)


def freeze_worker(rig: Rig, seconds: float) -> None:
    """A worker frozen for ``seconds`` (SIGSTOP of its processes, as a stalled VM or a swap
    storm: no beat, no write, no message), then thawed: its chunk may have gone to another
    worker meanwhile, and it must then write nothing more for it."""
    victim = live_workers(rig)[-1]
    group = os.getpgid(victim.pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGCONT)


def live_workers(rig: Rig) -> list[Worker]:
    live = [w for w in rig.cluster.workers if w.alive()]
    return live or [rig.cluster.start()]


# -- measuring -----------------------------------------------------------------------------


def seconds_until(condition: Callable[[], object], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    wait_for(condition, timeout_s, what, poll_s=0.05)
    return time.monotonic() - started


def tolerant(condition: Callable[[], object]) -> Callable[[], object]:
    """The condition, False while our own connection is still reconnecting."""

    def check() -> object:
        try:
            return condition()
        except Exception:
            return False

    return check


def part_way_chunk(store: Store, job_id: str, timeout_s: float = 60, spare: int = 1) -> Any:
    """A running chunk with some of its latents stored and more than ``spare`` still to do."""

    def find() -> Any:
        stored = store.stored_latent_indices(job_id)
        for chunk in store.list_chunks(job_id):
            done = len(stored & set(chunk.latent_indices))
            if chunk.status == "running" and 0 < done < len(chunk.latent_indices) - spare:
                return chunk
        return None

    return wait_for(find, timeout_s, "a chunk part-way through", poll_s=0.02)


def next_latent_of(store: Store, job_id: str, indices: list[int]) -> Callable[[], bool]:
    before = store.stored_latent_indices(job_id) & set(indices)
    return lambda: bool((store.stored_latent_indices(job_id) & set(indices)) - before)


def clean_eigenvalues(spec: dict[str, Any], tmp: Path) -> dict[int, np.ndarray]:
    """The same job run in-process on an embedded store, with no faults (and no sleeps), on
    one thread as the workers compute."""
    embedded = Store(f"sqlite:///{tmp / f'clean-{uuid.uuid4().hex[:6]}.db'}")
    embedded.migrate()
    previous = os.environ.get("SPECTRA_TEST_SLOW_S")
    os.environ["SPECTRA_TEST_SLOW_S"] = "0"
    os.environ["SPECTRA_TEST_CRASH_RAISES"] = "1"  # a poison latent fails here, not the test
    generator_cache.clear()  # the toy reads its sleep when loaded
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        job, _ = submit_job(embedded, JobSpec(**spec), "clean", None, settings=Settings())
        run_job_inprocess(embedded, job.id)
        return {
            s.latent_index: np.asarray(s.eigenvalues)
            for s in embedded.list_spectra(job_id=job.id, limit=1000)
        }
    finally:
        torch.set_num_threads(threads)
        os.environ.pop("SPECTRA_TEST_CRASH_RAISES", None)
        if previous is None:
            os.environ.pop("SPECTRA_TEST_SLOW_S", None)
        else:
            os.environ["SPECTRA_TEST_SLOW_S"] = previous
        generator_cache.clear()
        embedded.close()


def slow_spec(
    seed: int, count: int = 16, chunk_size: int = 4, model: str = SLOW_MODEL
) -> dict[str, Any]:
    return dict(
        model=model,
        latents={"count": count, "seed": seed},
        chunk_size=chunk_size,
        distance="mse",
        method="jacobian",
    )
