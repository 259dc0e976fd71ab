"""Analyses at campaign scale: one comparison of 10⁴ stored spectra at d = 512, submitted over
HTTP as a stored comparison and completed by a worker in bounded memory.

1. Writes N synthetic spectra (top-k eigenvectors float32, every eigenvalue recorded with them,
   as the full methods do) into an embedded SQLite store in a temporary directory through the
   store's batch insert path (save_spectra, one transaction per batch), plus one SeFa-like set of directions on the same model, so that the
   comparison also aligns the two average metrics.
2. Serves the real API (``create_app``, uvicorn, one process) on that store, with a dispatcher
   that only queues what it is handed (as Celery would), and times ``POST /v1/comparisons``
   from an HTTP client: the first submission (census of the spectra, the record written, the
   hand-off), then the same request again (the stored comparison found: idempotent).
3. Runs the worker's code path (``services.comparisons.stored.run_comparison``, what the Celery
   task calls) in a fresh process, so its peak RSS is the comparison's own, with the default
   settings (homogeneity's pair limit, chunked eigenvector reads, the analysis device) and
   max_positions = 500; then reads the stored comparison back over HTTP.

Each N given is measured in its own store: bounded memory shows as a worker peak RSS that
stays about the same from one N to the next while holding every position's eigenvectors
("vectors at once") would grow with N. Prints a table and writes
bench/results/bench_analysis_scale.json (with the date and machine) through bench/results_io.

numpy's BLAS runs single-threaded here (OPENBLAS_NUM_THREADS=1, as the tests and workers do):
with its default thread pool each small QR of the synthetic writer fights the other threads for
the cores and writing the spectra, not comparing them, dominated the run.

    python bench/bench_analysis_scale.py                   # N = 2500 and 10000, d = 512, k = 64
    python bench/bench_analysis_scale.py --n 2000 --d 256 --k 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

for _blas in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas, "1")  # before numpy loads; the worker's process inherits it

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from results_io import Table, write_results  # noqa: E402  (bench/ is not a package)

if TYPE_CHECKING:
    from services.pipeline.costs import Workers

REPEATS = 5


def write(url: str, n: int, d: int, k: int) -> dict[str, Any]:
    from services.store import Store
    from tests.scale import synthetic_spectra as synthetic

    with Store(url) as store:
        store.migrate()
        started = time.perf_counter()
        hessians = synthetic.write_job(store, n=n, d=d, k=k, seed=1)
        written = time.perf_counter() - started
        directions = synthetic.write_job(store, n=1, d=d, k=k, seed=2, method="sefa")
    return {"hessians": hessians, "directions": directions, "write_s": written}


class QueueingDispatcher:
    """Accepts work and keeps it (as a broker would); nothing runs in the server process."""

    def __init__(self) -> None:
        self.comparisons: list[str] = []

    def dispatch(self, chunk_ids: list[str]) -> None:
        return None

    def dispatch_comparison(self, comparison_id: str) -> None:
        self.comparisons.append(comparison_id)

    def revoke(self, chunk_ids: list[str]) -> None:
        return None

    def plan_job(self, job_id: str, workers: Workers) -> None:
        return None

    def measure_profile(self, inputs: dict[str, Any], workers: Workers) -> None:
        return None

    def ping(self, timeout_s: float) -> None:
        return None

    def devices(self) -> set[str] | None:
        return {"cpu"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_and_submit(url: str, jobs: dict[str, Any], max_positions: int) -> dict[str, Any]:
    """The real API over the store; the submission's latency as an HTTP client sees it."""
    import httpx
    import uvicorn

    from api.app import create_app
    from services.config import Settings
    from services.store import Store

    store = Store(url)
    settings = Settings(mode="development", database_url=url)
    dispatcher = QueueingDispatcher()
    app = create_app(settings=settings, store=store, dispatcher=dispatcher)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    # The synthetic jobs belong to the embedded owner ("local"): an admin key sees them.
    token = store.create_api_key("bench", ["read", "submit", "admin"])[1]
    body = {
        "selections": [
            {"job_id": jobs["hessians"], "label": "hessians"},
            {"job_id": jobs["directions"], "label": "directions"},
        ],
        "k": 10,
        "max_positions": max_positions,
    }
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
        ) as client:
            client.get("/v1/comparisons")  # a warm connection and key cache, as a client has
            started = time.perf_counter()
            first = client.post("/v1/comparisons", json=body)
            first_ms = (time.perf_counter() - started) * 1000
            assert first.status_code == 202, first.text
            again_ms = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                repeat = client.post("/v1/comparisons", json=body)
                again_ms.append((time.perf_counter() - started) * 1000)
                assert repeat.status_code == 200 and repeat.json()["id"] == first.json()["id"]
            comparison_id = first.json()["id"]
            assert dispatcher.comparisons == [comparison_id]
            worker = run_worker(url, comparison_id)
            started = time.perf_counter()
            stored = client.get(f"/v1/comparisons/{comparison_id}")
            get_ms = (time.perf_counter() - started) * 1000
            view = stored.json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
    return {
        "comparison_id": comparison_id,
        "submit_first_ms": first_ms,
        "submit_again_ms_median": statistics.median(again_ms),
        "get_ms": get_ms,
        "status": view["status"],
        "n_spectra": view["n_spectra"],
        "figures": sorted(view["links"]["figures"]),
        "worker": worker,
        "document_homogeneity": view["document"]["members"][0]["homogeneity"]
        if view["document"]
        else None,
        "notes": (view["document"] or {}).get("notes", []),
    }


def run_worker(url: str, comparison_id: str) -> dict[str, Any]:
    """The worker's code path in a fresh process (its peak RSS is the comparison's own)."""
    run = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps({"url": url, "id": comparison_id})],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def worker(url: str, comparison_id: str) -> dict[str, Any]:
    from services.comparisons.stored import run_comparison
    from services.config import Settings
    from services.store import Store

    settings = Settings(database_url=url)
    with Store(url) as store:
        started = time.perf_counter()
        record = run_comparison(store, comparison_id, settings)
        total = time.perf_counter() - started
    return {
        "status": record.status,
        "error": record.error,
        "total_s": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "settings": {
            "homogeneity_max_pairs": settings.homogeneity_max_pairs,
            "analysis_device": settings.analysis_device,
            "analysis_chunk_mb": settings.analysis_chunk_mb,
        },
    }


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def measure(n: int, d: int, k: int, max_positions: int) -> dict[str, Any]:
    """One size: write, submit over HTTP, complete on the worker's code path, read back."""
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as directory:
        url = f"sqlite:///{directory}/spectra.db"
        jobs = write(url, n, d, k)
        size = os.path.getsize(f"{directory}/spectra.db")
        measured = serve_and_submit(url, jobs, max_positions)
    return {
        "n": n,
        "d": d,
        "k": k,
        "write_s": jobs["write_s"],
        "store_bytes": size,
        "eigenvectors_at_once_mib": n * d * min(k, 128) * 4 / 2**20,
        **measured,
    }


def _row(run: dict[str, Any]) -> tuple[str, ...]:
    w = run["worker"]
    h = (run["document_homogeneity"] or {}).get("sample") or {}
    sample = (
        f"{h.get('n_positions_used')} of {h.get('n_positions_total')} positions, "
        f"{h.get('n_pairs')} pairs"
        + (f" (seed {h.get('seed')}, {h.get('limited_by')})" if h.get("sampled") else " (all)")
    )
    return (
        str(run["n"]),
        str(run["d"]),
        str(run["k"]),
        f"{run['write_s']:.1f}",
        f"{run['submit_first_ms']:.1f}",
        f"{run['submit_again_ms_median']:.1f}",
        f"{run['get_ms']:.1f}",
        f"{w['total_s']:.1f}",
        f"{w['peak_rss_mib']:.0f}",
        f"{run['eigenvectors_at_once_mib']:.0f}",
        w["status"],
        sample,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[2_500, 10_000])
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--max-positions", type=int, default=500)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the fresh process's arguments
    args = parser.parse_args()
    if args.worker:
        case = json.loads(args.worker)
        print(json.dumps(worker(case["url"], case["id"])))
        return 0
    load_at_start = os.getloadavg()

    header: tuple[str, ...] = (
        "N",
        "d",
        "k",
        "write s",
        "POST ms (first)",
        f"POST ms (again, median of {REPEATS})",
        "GET ms",
        "worker s",
        "worker peak RSS MiB",
        "vectors at once MiB",
        "status",
        "homogeneity sample",
    )
    rows: list[tuple[str, ...]] = [header]
    runs = []
    for n in args.n:
        run = measure(n, args.d, args.k, args.max_positions)
        runs.append(run)
        rows.append(_row(run))
        print(_table([header, rows[-1]]), flush=True)
    print(_table(rows))
    for note in runs[-1]["notes"]:
        print(f"note: {note}")
    payload = {
        "d": args.d,
        "k": args.k,
        "max_positions": args.max_positions,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average_at_start": load_at_start,
        "runs": runs,
    }
    table = Table(
        title="A campaign-sized comparison submitted over HTTP, completed by a worker",
        columns=rows[0],
        rows=rows[1:],
        notes=[
            "POST: POST /v1/comparisons to the real API (uvicorn) from an HTTP client; "
            "worker: services.comparisons.stored.run_comparison (the Celery task's code) in a "
            "fresh process, its peak RSS the comparison's own; vectors at once: what holding "
            "every position's eigenvectors would take",
            f"{os.cpu_count()} cores shared with other work (load average at start "
            f"{load_at_start[0]:.1f}): the seconds are a loaded machine's",
        ],
    )
    json_path, _ = write_results("bench_analysis_scale", payload, table)
    print(f"wrote {json_path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
