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

Writes bench/results/must_show.json and its dated table (bench/results/must_show.md).
"""

from __future__ import annotations

import argparse
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
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # run as a script: tests' helpers, results_io

from bench_api import group_cpu_seconds  # noqa: E402
from results_io import Table, write_results  # noqa: E402

TERMINAL = ("succeeded", "failed", "cancelled")


def _peak_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _wait_until_idle(groups: list[int], timeout_s: float = 120.0) -> None:
    """Until these process groups (a worker and its pool child each) together use under 5 %
    of a core over a second."""

    def cpu_seconds() -> float:
        return sum(group_cpu_seconds(group) for group in groups)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds()
        time.sleep(1.0)
        if cpu_seconds() - before < 0.05:
            return
    raise RuntimeError(f"the workers did not go idle within {timeout_s:g} s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from celery import Celery

    from services.config import Settings
    from services.pipeline import JobSpec, submit_job
    from services.pipeline.jobs import dry_run_job, plan_and_measurement
    from services.store import Store
    from tests.conftest import create_database, drop_database, sqlalchemy_pg_url
    from tests.pipeline.conftest import Cluster, worker_env
    from tests.support.checkpoints import write_random_checkpoint
    from tests.support.redis_server import PrivateRedis
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
        redis_server = PrivateRedis(directory)
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
            # A pool child is still importing its libraries for seconds after its worker says
            # ready: a probe then would measure that as the workers' contention.
            _wait_until_idle([w.pid for w in cluster.workers])  # each leads its own group
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
                profile = store.cost_profile(estimate.get("profile", {}).get("key_sha256", ""))
                if profile is not None:  # what the plan's times rest on
                    measured_probe = profile.profile
                    jobs[label]["probe"] = {
                        key: measured_probe.get(key)
                        for key in (
                            "contention",
                            "concurrent",
                            "tangent_points",
                            "pullback_points",
                            "eigh_seconds_per_d3",
                            "prepare_seconds",
                        )
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
                # A narrow generator's H has a small rank: past it both routes return rounding
                # noise, so the relative agreement is taken over the eigenvalues above noise,
                # and the difference over all k relative to the largest eigenvalue.
                above_noise = exact > 1e-10 * exact[0]
                report["top_k_rank"] = int(above_noise.sum())
                report["top_k_relative_max"] = float(
                    np.max(np.abs(approx - exact)[above_noise] / exact[above_noise])
                )
                report["top_k_difference_over_lambda1"] = float(
                    np.max(np.abs(approx - exact)) / exact[0]
                )
        finally:
            if cluster is not None:
                cluster.stop_all()
            sender.close()
            store.close()
            redis_server.stop()
            drop_database(name)
    report["load_average_at_end"] = os.getloadavg()
    return report


def table(report: dict[str, Any]) -> Table:
    """One row per job: the plan's time and memory against the measurement, and their ratio."""
    rows: list[list[Any]] = []
    for label, job in report.get("jobs", {}).items():
        per_code = job.get("estimate", {}).get("per_code", {})
        measured = job.get("measured", {})
        peak = measured.get("peak_device_bytes") or measured.get("peak_rss_bytes")
        planned_s = job.get("planned_seconds")
        chunk_s = job.get("chunk_seconds_sum")
        planned_peak = per_code.get("peak_bytes")
        rows.append(
            [
                label,
                job["latent_dim"],
                job["chunks"],
                job.get("status"),
                job.get("wall_s"),
                planned_s,
                chunk_s,
                chunk_s / planned_s if chunk_s and planned_s else None,
                planned_peak / 2**20 if planned_peak else None,
                peak / 2**20 if peak else None,
                job.get("measured_over_estimate", {}).get("peak_bytes"),
                job.get("submit_s"),
                job.get("dry_run_s"),
                job.get("dry_run_same_estimate"),
            ]
        )
    peaks = [round(p / 2**20) for p in report.get("worker_peaks_bytes", []) if p]
    during = report.get("load_average_1min_during", {})
    return Table(
        title=(
            f"Must-show: w+ StyleGAN2 at {report['size']} px, d = {report.get('latent_dim')}, "
            "two workers computing at once"
        ),
        columns=[
            "job",
            "d",
            "chunks",
            "status",
            "wall s",
            "s planned",
            "chunk s sum",
            "s measured / planned",
            "peak MiB planned",
            "peak MiB measured",
            "peak measured / planned",
            "submit s",
            "dry run s (profiled)",
            "dry run = submission",
        ],
        rows=rows,
        notes=[
            f"Two celery workers (prefork, one thread each, {report['budget_gb']:g} GiB budget "
            f"each) on this host; worker peak RSS {peaks} MiB. Top-{report.get('top_k', 20)} "
            "Lanczos against the exact blocks: max relative difference "
            f"{report.get('top_k_relative_max', float('nan')):.2e} over the "
            f"{report.get('top_k_rank')} eigenvalues above 1e-10·λ₁ (the rest are rounding "
            f"noise of a low-rank H), max difference over all of them "
            f"{report.get('top_k_difference_over_lambda1', float('nan')):.2e}·λ₁.",
            "s planned: the plan's serial seconds for the job (its profile measured with two "
            "workers computing at once); chunk s sum: the chunks' own durations.",
            f"Load average (1 min) while the jobs ran: median {during.get('median')}, "
            f"max {during.get('max')}.",
        ],
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
    report["latent_dim"] = next(iter(report.get("jobs", {}).values()), {}).get("latent_dim")
    write_results("must_show", report, table(report))


if __name__ == "__main__":
    main()
