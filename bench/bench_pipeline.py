"""Pipeline benchmark: queue overhead per chunk and throughput with one and two CPU workers.

dcgan-faces, mse, jacobian, float32, 8 latents per chunk. Each run is a fresh job (new seed)
submitted through the pipeline to real `celery worker` processes (prefork, concurrency 1,
one torch thread each) on a private redis-server, with a fresh PostgreSQL database. The
in-process runner (one torch thread, no broker) runs the same jobs as the baseline.

    compute   = sum of the per-latent compute times the core measured (compute_spectrum)
    e2e       = submit -> job finished (the job's finished_at, written by the last chunk)
    overhead  = workers * e2e - compute: every worker-second not spent computing (queueing,
                claiming, loading codes, saving results, idle tails), per chunk and as a share
                of compute. Target: under 5 % at 8 latents per chunk.

Reported as medians over repeats, all ratios from the same run.

    .venv/bin/python bench/bench_pipeline.py [--latents 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import torch  # noqa: E402
from celery import Celery  # noqa: E402

from services.config import Settings  # noqa: E402
from services.pipeline import JobSpec, run_job_inprocess, submit_job  # noqa: E402
from services.store import Store  # noqa: E402
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK, configure  # noqa: E402
from worker.launcher import WorkerPlan, start_worker, stop_workers  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from results_io import Table, write_results  # noqa: E402

from tests.support.redis_server import PrivateRedis  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

PG_ADMIN = os.environ.get("SPECTRA_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
CHUNK_SIZE = 8
TARGET_OVERHEAD = 0.05


class Services:
    """A private redis-server and a fresh PostgreSQL database, removed afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.redis = PrivateRedis(workdir)
        self.redis.start()
        self.broker_url = self.redis.url
        self.database = f"spectra_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        self.database_url = f"{base}/{self.database}"

    def close(self) -> None:
        self.redis.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def start_workers(n: int, services: Services, logdir: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        "SPECTRA_DATABASE_URL": services.database_url,
        "SPECTRA_BROKER_URL": services.broker_url,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    processes, logs = [], []
    for i in range(n):
        log = logdir / f"worker{n}-{i}.log"
        plan = WorkerPlan(
            f"bench{i}-{uuid.uuid4().hex[:4]}@{socket.gethostname()}",
            "cpu",
            {"CUDA_VISIBLE_DEVICES": "", "SPECTRA_DEVICE": "cpu"},
        )
        with log.open("wb") as out:
            processes.append(
                start_worker(plan, extra_env=env, stdout=out, stderr=subprocess.STDOUT)
            )
        logs.append(log)
    for log in logs:
        wait_for(lambda log=log: "ready." in log.read_text(errors="replace"), 120, f"{log.name}")
    return processes


def measure(store: Store, job_id: str, started: datetime, workers: int) -> dict[str, Any]:
    job = store.get_job(job_id)
    assert job.status == "succeeded", f"job {job_id} ended {job.status}: {job.error}"
    assert job.finished_at is not None
    spectra = store.list_spectra(job_id=job_id, limit=1000)
    chunks = store.list_chunks(job_id)
    compute = sum(s.wall_time_s or 0.0 for s in spectra)
    e2e = (job.finished_at - started).total_seconds()
    spans = sum((c.finished_at - c.started_at).total_seconds() for c in chunks)  # type: ignore[operator]
    overhead = workers * e2e - compute
    return {
        "latents": len(spectra),
        "chunks": len(chunks),
        "e2e_s": e2e,
        "compute_s": compute,
        "compute_per_latent_s": compute / len(spectra),
        "in_chunk_overhead_s": spans - compute,  # claim, reads, saves inside the chunk function
        "overhead_s": overhead,
        "overhead_per_chunk_ms": 1000 * overhead / len(chunks),
        "overhead_fraction": overhead / compute,
        "throughput_latents_per_s": len(spectra) / e2e,
        "first_chunk_start_s": min(
            (c.started_at - started).total_seconds() for c in chunks if c.started_at
        ),
    }


def spec(n: int, seed: int) -> JobSpec:
    return JobSpec(
        model="dcgan-faces",
        distance="mse",
        method="jacobian",
        dtype="float32",
        latents={"count": n, "seed": seed},
        chunk_size=CHUNK_SIZE,
    )


def run_celery(store: Store, sender: Celery, n: int, seed: int, workers: int) -> dict[str, Any]:
    def dispatch(chunk_ids: list[str]) -> None:
        for chunk_id in chunk_ids:
            sender.send_task(CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE)

    started = datetime.now(UTC)
    job, _ = submit_job(store, spec(n, seed), "bench", dispatch, settings=Settings())
    wait_for(
        lambda: store.get_job(job.id).status in ("succeeded", "failed", "cancelled"),
        1800,
        f"job {job.id}",
        poll_s=0.05,
    )
    return measure(store, job.id, started, workers)


def run_inprocess(store: Store, n: int, seed: int) -> dict[str, Any]:
    started = datetime.now(UTC)
    job, _ = submit_job(store, spec(n, seed), "bench", None, settings=Settings())
    run_job_inprocess(store, job.id)
    return measure(store, job.id, started, 1)


def median_row(name: str, workers: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    row: dict[str, Any] = {"executor": name, "workers": workers, "repeats": len(runs)}
    row.update({k: statistics.median(r[k] for r in runs) for k in keys})
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=32, help="latents per job (default 32)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the baseline computes like one worker does

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    services = Services(workdir)
    store = Store(services.database_url)
    store.migrate()
    sender = Celery("bench-sender")
    configure(sender, Settings(broker_url=services.broker_url))
    rows: list[dict[str, Any]] = []
    seed = 1000
    try:
        run_inprocess(store, 2, seed)  # warm-up: model load, first-call costs
        runs = []
        for _ in range(args.repeats):
            seed += 1
            runs.append(run_inprocess(store, args.latents, seed))
        rows.append(median_row("in-process", 1, runs))

        for workers in (1, 2):
            processes = start_workers(workers, services, workdir)
            try:
                seed += 1  # warm-up job: one chunk per worker loads the model there
                run_celery(store, sender, CHUNK_SIZE * workers, seed, workers)
                runs = []
                for _ in range(args.repeats):
                    seed += 1
                    runs.append(run_celery(store, sender, args.latents, seed, workers))
                rows.append(median_row("celery", workers, runs))
            finally:
                stop_workers(processes)
    finally:
        store.close()
        services.close()
        shutil.rmtree(workdir, ignore_errors=True)

    one = next(r for r in rows if r["executor"] == "celery" and r["workers"] == 1)
    for row in rows:
        row["speedup_vs_1_worker"] = (
            row["throughput_latents_per_s"] / one["throughput_latents_per_s"]
        )
    print_table(rows, args)
    verdict = one["overhead_fraction"] < TARGET_OVERHEAD
    print(
        f"\nqueue overhead, 1 worker, {CHUNK_SIZE} latents/chunk: "
        f"{100 * one['overhead_fraction']:.2f} % of compute "
        f"(target < {100 * TARGET_OVERHEAD:.0f} %): {'PASS' if verdict else 'FAIL'}"
    )
    write_results(
        "pipeline",
        {
            "model": "dcgan-faces",
            "distance": "mse",
            "method": "jacobian",
            "dtype": "float32",
            "chunk_size": CHUNK_SIZE,
            "latents_per_job": args.latents,
            "repeats": args.repeats,
            "torch_threads_per_worker": 1,
            "target_overhead_fraction": TARGET_OVERHEAD,
            "target_met": verdict,
            "rows": rows,
        },
        Table(
            title=f"Pipeline: dcgan-faces, mse, jacobian, float32, {args.latents} codes per job, "
            f"{CHUNK_SIZE} per chunk, one torch thread per worker, median of {args.repeats}",
            columns=[
                "executor",
                "workers",
                "end to end s",
                "compute s",
                "s per code",
                "overhead per chunk ms",
                "overhead % of compute",
                "codes/s",
                "speed-up over 1 worker",
            ],
            rows=[
                [
                    r["executor"],
                    r["workers"],
                    r["e2e_s"],
                    r["compute_s"],
                    r["compute_per_latent_s"],
                    r["overhead_per_chunk_ms"],
                    100 * r["overhead_fraction"],
                    r["throughput_latents_per_s"],
                    r["speedup_vs_1_worker"],
                ]
                for r in rows
            ],
            notes=[
                f"Target: queue overhead < {100 * TARGET_OVERHEAD:.0f} % of compute with one "
                f"Celery worker ({'met' if verdict else 'NOT met'})."
            ],
        ),
    )
    return 0


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\npipeline: dcgan-faces, mse, jacobian, float32, {args.latents} latents/job, "
        f"{CHUNK_SIZE}/chunk, medians of {args.repeats}"
    )
    header = (
        f"{'executor':<11}{'workers':>8}{'e2e s':>9}{'compute s':>11}{'s/latent':>10}"
        f"{'overhead/chunk ms':>19}{'overhead %':>12}{'latents/s':>11}{'speedup':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['executor']:<11}{r['workers']:>8}{r['e2e_s']:>9.2f}{r['compute_s']:>11.2f}"
            f"{r['compute_per_latent_s']:>10.3f}{r['overhead_per_chunk_ms']:>19.1f}"
            f"{100 * r['overhead_fraction']:>12.2f}{r['throughput_latents_per_s']:>11.2f}"
            f"{r['speedup_vs_1_worker']:>9.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
