"""Large-scale jobs: the planner's estimate against the measurement, per model and method.

Rows: dcgan-faces (d = 100, the baseline) and random-initialised StyleGAN2 checkpoints in the
real rosinality format (tests.support.checkpoints.write_random_checkpoint) in z, w and w+:
a narrow channel configuration on the CPU, the config-f widths on a GPU (1024 px rows only
there). Per row: time per code, peak memory (the process's peak RSS on the CPU, torch's peak
allocation on CUDA), products, stored bytes, and the plan's estimate of each beside it.

Each row runs in a fresh subprocess, so its peak memory is its own (as a worker's would be).

    python bench/bench_scale.py                      # CPU rows (narrow nets, small sizes)
    python bench/bench_scale.py --sizes 32,128 --spaces z,w,w+ --methods jacobian,lanczos
    python bench/bench_scale.py --must-show          # w+ at 128 px, d = 6144: lanczos top-20
                                                     # and column blocks; long on 2 cores
                                                     # (in one process; the same case through
                                                     # two Celery workers: bench_must_show.py)
    python bench/bench_scale.py --device cuda        # config-f widths, 128/256/1024 px

Writes bench/results/bench_scale.json (bench_scale_cuda.json on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
# Narrow widths for the CPU (the zoo's example for 128 px, halved): keep a 128-px w+ code
# within reach of two cores. Config-f (channel multiplier 2) is the default of the writer.
NARROW_CHANNELS = {4: 32, 8: 32, 16: 16, 32: 16, 64: 8, 128: 8, 256: 8}
STYLE_DIM = 512
# The 2-core machine's nominal float32 rate (bench/results/history.md states its floor); the
# measured rate of the same GEMM shape in the same run is the floor the ratio is taken to.
NOMINAL_FLOPS_PER_S = 200e9


def _checkpoint(directory: Path, size: int, device: str) -> str:
    from tests.support.checkpoints import write_random_checkpoint

    path = directory / f"stylegan2-{size}-{'configf' if device != 'cpu' else 'narrow'}.pt"
    if not path.exists():
        channels = (
            None if device != "cpu" else {r: w for r, w in NARROW_CHANNELS.items() if r <= size}
        )
        write_random_checkpoint(
            path,
            size=size,
            style_dim=STYLE_DIM,
            n_mlp=8 if device != "cpu" else 2,
            channels=channels,
        )
    return f"stylegan2:{path}"


def worker(case: dict[str, Any]) -> dict[str, Any]:
    """One row, in this (fresh) process: plan, then measure."""
    import numpy as np
    import torch

    from services.geometry import compute_spectrum, load_distance, load_generator, metric_columns
    from services.geometry.batched import spectrum_on_device
    from services.pipeline import estimate as planner
    from services.pipeline import probe as probing
    from services.pipeline.resources import measure_peak, worker_budget_bytes

    device = case["device"]
    generator = load_generator(case["model"], device=device, space=case["space"])
    distance = load_distance(case["distance"], device=device)
    method, dtype, top_k = case["method"], case["dtype"], case["top_k"]
    block_columns = case.get("block_columns")
    code = generator.sample(1, 1)[0]
    # Measured first, planned after: the probe's freed memory stays resident and would
    # otherwise count in the measured peak. The measurement uses the worker's default batch.
    batch = min(generator.latent_dim, case.get("batch") or 128)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    with measure_peak(device) as peak:
        if block_columns:
            d = generator.latent_dim
            metric = np.empty((d, d))
            for start in range(0, d, block_columns):
                stop = min(d, start + block_columns)
                metric[:, start:stop] = metric_columns(
                    generator,
                    distance,
                    code,
                    start,
                    stop,
                    dtype=dtype,
                    batch=batch,
                )
            result = spectrum_on_device(metric, top_k=top_k, device=device)
            products = 2 * d
        else:
            options = {"batch": batch} if method == "jacobian" else {}
            result = compute_spectrum(
                generator, distance, code, method=method, top_k=top_k, dtype=dtype, **options
            )
            products = int(result.diagnostics.get("products", 0))
    seconds = time.perf_counter() - started
    probe_dtype = "float64" if method == "lanczos" else dtype
    started = time.perf_counter()
    probe = probing.probe(generator, distance, probe_dtype)
    probe_s = time.perf_counter() - started
    budget = worker_budget_bytes(case.get("budget_gb"), device)
    request = planner.Request(method, dtype, top_k, batch, block_columns, dtype)
    estimate, fits = planner.fitting_estimate(probe, request, device, budget)
    vectors = np.asarray(result.eigenvectors, dtype=dtype)
    stored = vectors.nbytes + 16 * generator.latent_dim
    measured_peak = peak.device_bytes if peak.device_bytes is not None else peak.rss_bytes
    return {
        **case,
        "latent_dim": generator.latent_dim,
        "fits": fits,
        "probe_s": probe_s,
        "estimate": estimate.as_dict(),
        "measured": {
            "seconds": seconds,
            "peak_bytes": measured_peak,
            "products": products,
            "stored_bytes": int(stored),
        },
        "top_eigenvalues": [
            float(v) for v in result.eigenvalues[: min(20, len(result.eigenvalues))]
        ],
    }


def homogeneity_against_floor(n: int, d: int, repeats: int) -> dict[str, Any]:
    """Median time of homogeneity (N positions, k = d, float32: the packed route) against its
    floor, 2·N·T·N·k FLOP (T = d(d+1)/2) at the float32 GEMM rate of the same shape class
    measured in this run: (N, T) @ (T, b·k) with the block size the route uses."""
    import numpy as np
    import torch

    from services.geometry import analysis, homogeneity

    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.standard_normal((d, d)) + 0.3 * rng.standard_normal((n, d, d)))[0]
    values = -np.sort(-np.exp(2 * rng.standard_normal((n, d))), axis=1)
    vectors32, values32 = vectors.astype(np.float32), values.astype(np.float32)
    packed_size = d * (d + 1) // 2
    block = max(1, analysis._BLOCK_ELEMENTS // (d * packed_size))
    left = torch.randn((n, packed_size))
    right = torch.randn((packed_size, block * d))
    out = torch.empty((n, block * d))
    torch.matmul(left, right, out=out)  # warm-up: the output's pages, MKL's buffers
    gemm_times, times = [], []
    for _ in range(repeats):  # interleaved, so both see the same moments of a shared machine
        for _ in range(3):
            started = time.perf_counter()
            torch.matmul(left, right, out=out)
            gemm_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        homogeneity(values32, vectors32, dtype="float32")
        times.append(time.perf_counter() - started)
    rate = 2 * n * packed_size * block * d / float(np.median(gemm_times))
    floor = 2 * n * packed_size * n * d / rate
    nominal = 2 * n * packed_size * n * d / NOMINAL_FLOPS_PER_S
    return {
        "positions": n,
        "latent_dim": d,
        "gemm_flops_per_s": rate,
        "floor_s": floor,
        "time_s": float(np.median(times)),
        "times_s": times,
        "ratio": float(np.median(times)) / floor,
        "nominal_floor_s": nominal,
        "ratio_to_nominal": float(np.median(times)) / nominal,
        "load_average": os.getloadavg(),
    }


def run_case(case: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(case)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {**case, "error": f"over the {timeout_s:.0f} s limit of a row"}
    if done.returncode != 0:
        return {**case, "error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cases(args: argparse.Namespace, directory: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base = {
        "device": args.device,
        "distance": "mse",
        "dtype": "float32",
        "top_k": None,
        "budget_gb": args.budget_gb,
    }
    for method in args.methods:
        top_k = 20 if method == "lanczos" else None
        rows.append(
            {
                **base,
                "label": "dcgan-faces",
                "model": "dcgan-faces",
                "space": "z",
                "method": method,
                "top_k": top_k,
            }
        )
    if args.must_show:
        model = _checkpoint(directory, 128, "cpu")
        for method, block in (("lanczos", None), ("jacobian", 3072)):
            rows.append(
                {
                    **base,
                    "label": "stylegan2-128 narrow (must-show)",
                    "model": model,
                    "space": "w+",
                    "method": method,
                    "top_k": 20,
                    "dtype": "float64",
                    "block_columns": block,
                }
            )
        return rows
    for size in args.sizes:
        model = _checkpoint(directory, size, args.device)
        for space in args.spaces:
            for method in args.methods:
                if space == "w+" and method != "lanczos" and args.device == "cpu" and size > 32:
                    continue  # d = n_latent x 512 exact tangents: the --must-show route
                rows.append(
                    {
                        **base,
                        "label": f"stylegan2-{size}",
                        "model": model,
                        "space": space,
                        "method": method,
                        "top_k": 20 if method == "lanczos" else None,
                    }
                )
    return rows


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "model",
        "space",
        "d",
        "method",
        "s/code est",
        "s/code",
        "ratio",
        "peak MiB est",
        "peak MiB",
        "ratio",
        "products est",
        "products",
        "stored MiB est",
        "stored MiB",
    )
    lines = [header]
    for row in rows:
        if "error" in row:
            lines.append(
                (
                    row["label"],
                    row["space"],
                    "-",
                    row["method"],
                    row["error"][:60],
                    *[""] * (len(header) - 5),
                )
            )
            continue
        est, got = row["estimate"], row["measured"]
        method = row["method"] + (
            f" blocks {row['block_columns']}" if row.get("block_columns") else ""
        )
        peak_ratio = (
            f"{got['peak_bytes'] / est['peak_bytes']:.2f}"
            if got["peak_bytes"] and est["peak_bytes"]
            else "-"
        )
        lines.append(
            (
                row["label"],
                row["space"],
                str(row["latent_dim"]),
                method,
                f"{est['seconds']:.3g}",
                f"{got['seconds']:.3g}",
                f"{got['seconds'] / est['seconds']:.2f}",
                _mib(est["peak_bytes"]),
                _mib(got["peak_bytes"]),
                peak_ratio,
                str(est["products"]),
                str(got["products"]),
                f"{est['stored_bytes'] / 2**20:.2f}",
                f"{got['stored_bytes'] / 2**20:.2f}",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=None, help="StyleGAN2 sizes, e.g. 32,128")
    parser.add_argument("--spaces", default="z,w,w+")
    parser.add_argument("--methods", default="jacobian,lanczos")
    parser.add_argument("--budget-gb", type=float, default=None, help="worker budget for the plan")
    parser.add_argument("--must-show", action="store_true")
    parser.add_argument("--row-timeout", type=float, default=3600.0)
    parser.add_argument(
        "--homogeneity",
        type=int,
        default=0,
        metavar="N",
        help="also time homogeneity of N positions (d = 256) against its floor",
    )
    parser.add_argument("--homogeneity-only", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.homogeneity_only:
        result = homogeneity_against_floor(args.homogeneity or 100, 256, 3)
        print(json.dumps(result, indent=2))
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / "bench_homogeneity.json").write_text(json.dumps(result, indent=2))
        return
    on_gpu = args.device.startswith("cuda")
    args.sizes = [int(s) for s in (args.sizes or ("128,256,1024" if on_gpu else "32")).split(",")]
    args.spaces = args.spaces.split(",")
    args.methods = args.methods.split(",")
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = RESULTS_DIR / ("bench_scale.json" if not on_gpu else "bench_scale_cuda.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "rows": [],
        "homogeneity": None,
        "device": args.device,
        "load_average_at_start": load_before,
        "cpu_count": os.cpu_count(),
    }

    def save() -> None:  # after every row: a long run cut short keeps what it measured
        report.update(
            load_average_at_end=os.getloadavg(), total_time_s=time.perf_counter() - started
        )
        results.write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as directory:
        for case in cases(args, Path(directory)):
            print(f"  {case['label']} {case['space']} {case['method']} ...", flush=True)
            report["rows"].append(run_case(case, args.row_timeout))
            print(table(report["rows"][-1:]), flush=True)
            save()
    print(table(report["rows"]))
    if args.homogeneity:
        row = report["homogeneity"] = homogeneity_against_floor(args.homogeneity, 256, 3)
        print(
            f"homogeneity N = {args.homogeneity}, d = 256: {row['time_s']:.2f} s, "
            f"floor {row['floor_s']:.2f} s, ratio {row['ratio']:.2f}; nominal floor "
            f"{row['nominal_floor_s']:.1f} s, ratio {row['ratio_to_nominal']:.2f}"
        )
    save()
    print(
        f"\nwrote {results} in {report['total_time_s']:.0f} s "
        f"(load average {load_before[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end)"
    )


if __name__ == "__main__":
    main()
