"""Analyses at campaign scale: one comparison of 10⁴ stored spectra at d = 512.

Writes N synthetic spectra (top-k eigenvectors float32, every eigenvalue recorded with them,
as the full methods do) into an embedded SQLite store in a temporary directory through the
store's insert path (save_spectrum, one transaction per spectrum, as an import writes), plus
one SeFa-like set of directions on the same model so that the comparison also aligns the
two average metrics. Then, in a fresh process (its peak RSS is the comparison's own), runs
the comparison use case once with the default settings (homogeneity's pair limit, chunked
eigenvector reads, the analysis device) and max_positions = 500.

Prints a table (N, d, k, seconds per stage, peak RSS, the homogeneity's sample) and writes
bench/results/bench_analysis_scale.json.

    python bench/bench_analysis_scale.py                   # N = 10000, d = 512, k = 64
    python bench/bench_analysis_scale.py --n 2000 --d 256 --k 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


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


def compare(url: str, jobs: dict[str, Any], max_positions: int) -> dict[str, Any]:
    """One comparison, in this (fresh) process."""
    from services.comparisons import Selection, compare
    from services.config import get_settings
    from services.store import Store

    settings = get_settings()
    with Store(url) as store:
        started = time.perf_counter()
        result = compare(
            store,
            [Selection(job_id=jobs["hessians"], label="hessians"),
             Selection(job_id=jobs["directions"], label="directions")],
            owner=None, k=10, max_positions=max_positions, settings=settings,
        )  # fmt: skip
        total = time.perf_counter() - started
    h = result.homogeneity[0] or {}
    a = result.anisotropy[0]
    (alignment,) = result.alignments
    return {
        "total_s": total,
        "stages_s": result.timings,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "homogeneity": {key: h.get(key) for key in (
            "sampled", "seed", "n_positions_total", "n_positions_used", "n_pairs",
            "n_pairs_total", "limited_by", "log_offdiag_mean")},  # fmt: skip
        "anisotropy": {"n_positions": a["n_positions"], "rank": a["rank"],
                       "dims_99_mean": a["dims_99_mean"],
                       "participation_ratio_mean": a["participation_ratio_mean"]},  # fmt: skip
        "alignment_smallest_angle_deg": alignment["smallest_principal_angle_deg"],
        "settings": {"homogeneity_max_pairs": settings.homogeneity_max_pairs,
                     "analysis_device": settings.analysis_device,
                     "analysis_chunk_mb": settings.analysis_chunk_mb},  # fmt: skip
        "notes": result.notes,
    }


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--max-positions", type=int, default=500)
    parser.add_argument("--compare", help=argparse.SUPPRESS)  # the fresh process's arguments
    args = parser.parse_args()
    if args.compare:
        case = json.loads(args.compare)
        print(json.dumps(compare(case["url"], case["jobs"], case["max_positions"])))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as directory:
        url = f"sqlite:///{directory}/spectra.db"
        jobs = write(url, args.n, args.d, args.k)
        size = os.path.getsize(f"{directory}/spectra.db")
        case = {"url": url, "jobs": jobs, "max_positions": args.max_positions}
        run = subprocess.run(
            [sys.executable, __file__, "--compare", json.dumps(case)],
            cwd=REPO, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return run.returncode
        measured = json.loads(run.stdout.strip().splitlines()[-1])
    stages = measured["stages_s"]
    h = measured["homogeneity"]
    at_once_mib = args.n * args.d * min(args.k, 128) * 4 / 2**20
    rows = [
        ("N", "d", "k", "write s", "load s", "anisotropy s", "homogeneity s", "avg metric s",
         "alignment s", "total s", "peak RSS MiB", "vectors at once MiB", "homogeneity sample"),
        (str(args.n), str(args.d), str(args.k), f"{jobs['write_s']:.1f}",
         *(f"{stages[key]:.2f}" for key in
           ("load", "anisotropy", "homogeneity", "average_metric", "alignment")),
         f"{measured['total_s']:.1f}", f"{measured['peak_rss_mib']:.0f}", f"{at_once_mib:.0f}",
         f"{h['n_positions_used']} of {h['n_positions_total']} positions, {h['n_pairs']} pairs"
         + (f" (seed {h['seed']}, {h['limited_by']})" if h["sampled"] else " (all)")),
    ]  # fmt: skip
    print(_table(rows))
    for note in measured["notes"]:
        print(f"note: {note}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "bench_analysis_scale.json"
    out.write_text(json.dumps({
        "n": args.n, "d": args.d, "k": args.k, "max_positions": args.max_positions,
        "write_s": jobs["write_s"], "store_bytes": size, "eigenvectors_at_once_mib": at_once_mib,
        **measured,
    }, indent=1))  # fmt: skip
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
