"""Issue 17's must-show, end to end through the real pipeline: a w+ job of a narrow random
StyleGAN2 at 128 px (d = 12 x 512 = 6144) by Lanczos top-20 and by the exact route split in
column blocks over two real Celery workers, each with a memory budget.

Real services: a PostgreSQL database of its own (on the shared server, migrated, dropped at
the end), a private redis-server on a free port, two `celery worker` processes (prefork,
concurrency 1, one thread each) started the way the deployment starts them. Reports the
top-20 relative agreement, each worker's peak RSS (VmHWM of its pool child) against its
budget, the plan's time and memory estimates against the measurement, and wall times.

    python bench/bench_must_show.py                         # the issue's case (long on 2 cores)
    python bench/bench_must_show.py --size 16 --style-dim 64 --width 8   # a quick rehearsal

Writes bench/results/bench_must_show.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "bench_must_show.json"
TERMINAL = ("succeeded", "failed", "cancelled")


def _peak_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from celery import Celery

    from services.config import Settings
    from services.pipeline import JobSpec, submit_job
    from services.pipeline.jobs import dry_run_job, plan_and_measurement
    from services.store import Store
    from tests.conftest import create_database, drop_database, sqlalchemy_pg_url
    from tests.pipeline.conftest import Cluster, PrivateRedis, free_port, worker_env
    from tests.support.checkpoints import write_random_checkpoint
    from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK, configure

    resolutions = [2**k for k in range(2, int(np.log2(args.size)) + 1)]
    channels = {r: args.width for r in resolutions}
    report: dict[str, Any] = {
        "size": args.size,
        "style_dim": args.style_dim,
        "n_mlp": args.n_mlp,
        "channels": channels,
        "budget_gb": args.budget_gb,
        "block_columns": args.block_columns,
        "batch": args.batch,
        "load_average_at_start": os.getloadavg(),
    }
    name = f"spectra_mustshow_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        checkpoint = directory / "narrow.pt"
        write_random_checkpoint(
            checkpoint,
            size=args.size,
            style_dim=args.style_dim,
            n_mlp=args.n_mlp,
            channels=channels,
        )
        create_database(name)
        url = sqlalchemy_pg_url(name)
        redis_server = PrivateRedis(free_port(), directory)
        cluster: Cluster | None = None
        store = Store(url)
        sender = Celery("must-show-sender")
        try:
            store.migrate()
            redis_server.start()
            configure(sender, Settings(broker_url=redis_server.url))
            (directory / "logs").mkdir()
            cluster = Cluster(worker_env(url, redis_server.url), directory / "logs")
            cluster.env["SPECTRA_WORKER_MEMORY_GB"] = str(args.budget_gb)
            cluster.env["SPECTRA_WORKER_THREADS"] = "1"  # as OMP_NUM_THREADS in worker_env
            cluster.env["SPECTRA_WORKERS_PER_HOST"] = "2"
            cluster.start("must-a")
            cluster.start("must-b")
            # The planner probes with the workers' one thread, and measures how much the two
            # workers computing at once on this host slow each other, so its times are theirs.
            settings = Settings(
                database_url=url,
                worker_memory_gb=args.budget_gb,
                worker_threads=1,
                workers_per_host=2,
            )

            def dispatch(chunk_ids: list[str]) -> None:
                for chunk_id in chunk_ids:
                    sender.send_task(
                        CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE
                    )

            common = {
                "model": f"stylegan2:{checkpoint}",
                "space": "w+",
                "top_k": args.top_k,
                "latents": {"count": 1, "seed": 3},
                "dtype": "float64",
            }
            jobs: dict[str, dict[str, Any]] = {}
            for label, spec in (
                (
                    "blocks",
                    {
                        "method": "jacobian",
                        "block_columns": args.block_columns,
                        "batch": args.batch,
                    },
                ),
                ("lanczos", {"method": "lanczos"}),
            ):
                started = time.perf_counter()
                # No profile of the model yet: submitted without a planning queue, the job is
                # planned here, at once (its profile measured and stored), as a worker would.
                job, _ = submit_job(
                    store, JobSpec(**spec, **common), "bench", dispatch, settings=settings
                )
                estimate = store.get_job(job.id).estimate or {}
                jobs[label] = {
                    "id": job.id,
                    "submitted": started,
                    "submit_s": time.perf_counter() - started,
                    "chunks": len(store.list_chunks(job.id)),
                    "latent_dim": job.resolved["generator"]["latent_dim"],
                    "planned_seconds": estimate.get("per_code", {}).get("seconds"),
                    "planned_total_seconds": estimate.get("total_seconds"),
                    "profile": estimate.get("profile"),
                }
                # Once profiled, a dry run of the same spec reads the stored profile: timed,
                # and it must give the same estimate.
                dry_started = time.perf_counter()
                dry = dry_run_job(store, JobSpec(**spec, **common), "bench", settings=settings)
                jobs[label]["dry_run_s"] = time.perf_counter() - dry_started
                jobs[label]["dry_run_same_estimate"] = dry["plan"] == estimate
                print(f"submitted {label}: {jobs[label]}", flush=True)
            loads: list[tuple[float, float]] = []
            pending = set(jobs)
            deadline = time.perf_counter() + args.timeout
            while pending and time.perf_counter() < deadline:
                loads.append(os.getloadavg()[:2])
                for label in list(pending):
                    record = store.get_job(jobs[label]["id"])
                    chunks = store.list_chunks(record.id)
                    if record.status in TERMINAL and all(c.status in TERMINAL for c in chunks):
                        jobs[label]["status"] = record.status
                        jobs[label]["error"] = record.error
                        jobs[label]["wall_s"] = time.perf_counter() - jobs[label]["submitted"]
                        jobs[label]["owners"] = sorted({str(c.lease_owner) for c in chunks})
                        pending.discard(label)
                        print(
                            f"{label} {record.status} after {jobs[label]['wall_s']:.0f} s",
                            flush=True,
                        )
                time.sleep(5)
            report["unfinished"] = sorted(pending)
            report["load_average_1min_during"] = {
                "median": float(np.median([one for one, _ in loads])) if loads else None,
                "max": max((one for one, _ in loads), default=None),
            }
            budget = args.budget_gb * 1024**3
            report["worker_peaks_bytes"] = [
                _peak_rss(child) for worker in cluster.workers for child in worker.pool_children()
            ]
            report["worker_budget_bytes"] = budget
            for job_info in jobs.values():
                job_info.update(plan_and_measurement(store, job_info["id"]))
                # The plan's seconds are one worker's serial work: compare them with the sum
                # of the chunks' durations (the block that completes the set also decomposes).
                job_info["chunk_runs"] = [
                    {
                        "block": c.column_block,
                        "owner": c.lease_owner,
                        "seconds": (
                            (c.finished_at - c.started_at).total_seconds()
                            if c.finished_at and c.started_at
                            else None
                        ),
                    }
                    for c in store.list_chunks(job_info["id"])
                ]
                job_info["chunk_seconds_sum"] = sum(
                    run["seconds"] or 0.0 for run in job_info["chunk_runs"]
                )
                spectra = store.list_spectra(job_id=job_info["id"])
                job_info["top_eigenvalues"] = (
                    [float(v) for v in spectra[0].eigenvalues] if spectra else None
                )
            report["jobs"] = jobs
            if jobs["blocks"]["top_eigenvalues"] and jobs["lanczos"]["top_eigenvalues"]:
                exact = np.asarray(jobs["blocks"]["top_eigenvalues"])
                approx = np.asarray(jobs["lanczos"]["top_eigenvalues"])
                report["top_k_relative_max"] = float(np.max(np.abs(approx - exact) / exact))
        finally:
            if cluster is not None:
                cluster.stop_all()
            sender.close()
            store.close()
            redis_server.stop()
            drop_database(name)
    report["load_average_at_end"] = os.getloadavg()
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        (
            "job",
            "d",
            "chunks",
            "status",
            "wall s",
            "s est",
            "chunk s sum",
            "ratio",
            "peak MiB est",
            "peak MiB",
            "ratio",
        )
    ]
    for label, job in report.get("jobs", {}).items():
        per_code = job.get("estimate", {}).get("per_code", {})
        measured = job.get("measured", {})
        ratios = job.get("measured_over_estimate", {})
        peak = measured.get("peak_device_bytes") or measured.get("peak_rss_bytes")

        def fmt(value: Any, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        lines.append(
            (
                label,
                str(job["latent_dim"]),
                str(job["chunks"]),
                job.get("status", "-"),
                fmt(job.get("wall_s"), ".0f"),
                fmt(job.get("planned_seconds"), ".0f"),
                fmt(job.get("chunk_seconds_sum"), ".0f"),
                fmt(
                    job.get("chunk_seconds_sum")
                    and job.get("planned_seconds")
                    and job["chunk_seconds_sum"] / job["planned_seconds"],
                    ".2f",
                ),
                fmt(per_code.get("peak_bytes") and per_code["peak_bytes"] / 2**20, ".0f"),
                fmt(peak and peak / 2**20, ".0f"),
                fmt(ratios.get("peak_bytes"), ".2f"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    body = "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )
    peaks = [round(p / 2**20) for p in report.get("worker_peaks_bytes", []) if p]
    return (
        f"{body}\nworker peak RSS {peaks} MiB of {report['budget_gb'] * 1024:.0f} MiB each; "
        f"top-{report.get('top_k', 20)} max relative difference "
        f"{report.get('top_k_relative_max', float('nan')):.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--style-dim", type=int, default=512)
    parser.add_argument("--n-mlp", type=int, default=1)
    parser.add_argument("--width", type=int, default=2, help="channels at every resolution")
    parser.add_argument("--budget-gb", type=float, default=4.0)
    parser.add_argument("--block-columns", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=3000.0)
    args = parser.parse_args()
    # A stop by SIGTERM still runs the clean-up (workers, redis-server, the database).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    report = run(args)
    report["top_k"] = args.top_k
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str))
    print(table(report))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
