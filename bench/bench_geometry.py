"""Benchmark of the geometry core: metric-tensor methods on dcgan-faces, and homogeneity.

    .venv/bin/python bench/bench_geometry.py [--device cpu|cuda] [--repeats 3] [--quick]

For each method (jacobian, hvp, fd, lanczos, bp) and distance (mse; LPIPS-alex with a RANDOM
backbone, since the ImageNet backbone is not on this machine — same cost, not a perceptual
distance) at one code and at a batch of 8 codes: median wall time and process CPU time per
code, products per code, peak resident memory, and the relative Frobenius error of H against
`bp` in the same run (same dtype, first two codes; lanczos, always float64: max relative error
of its top-20 eigenvalues). The floor is one forward pass of the generator plus the distance's
features over a batch of d codes, timed alongside.

Timing runs the methods and the floor round-robin in one process (per repeat, per code), so
load from other processes on a shared machine hits them alike; at 8 codes there is one pass
(8 samples per method). Peak memory is measured per method in a fresh process. The jacobian /
bp / floor timings are repeated with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=16 GiB (glibc
keeps large blocks instead of returning them and faulting them in again). The homogeneity
matrix of 1000 positions at d = 256 (float32) is timed once. Prints the tables and writes
bench/results/geometry.json and geometry.md (geometry_cuda.* with --device cuda, where the
tuned-malloc table, a CPU matter, is left out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from results_io import Table, write_results  # noqa: E402

METHODS = ("jacobian", "hvp", "fd", "lanczos", "bp")
DISTANCES = ("mse", "lpips-alex")
ERROR_CODES = 2  # codes per measurement whose H is compared with bp's
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(16 * 1024**3)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --------------------------------------------------------------------------- worker side


def _load(distance_name: str, device: str) -> tuple[Any, Any]:
    from services.geometry import load_distance, load_generator

    generator = load_generator("dcgan-faces", device=device)
    random_backbone = distance_name.startswith("lpips")
    return generator, load_distance(distance_name, device=device, random_backbone=random_backbone)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def worker_timing(args: argparse.Namespace) -> dict[str, Any]:
    """Time the methods and the floor interleaved (round-robin per repeat and code), so that
    load from other processes hits them alike; wall and process CPU time per code."""
    import torch

    from services.geometry import compute_metric, compute_spectrum

    generator, distance = _load(args.distance, args.device)
    # The methods run float32 convolutions in IEEE precision (no TF32) on CUDA; so does the floor.
    torch.backends.cudnn.allow_tf32 = False
    methods = args.methods.split(",")
    codes = generator.sample(args.codes, seed=2024)
    torch_dtype = torch.float32 if args.dtype == "float32" else torch.float64
    floor_generator = generator.to(args.device, torch_dtype)
    floor_distance = distance.to(args.device, torch_dtype)
    floor_batch = torch.as_tensor(
        generator.sample(generator.latent_dim, seed=1), dtype=torch_dtype, device=args.device
    )

    def run(method: str, code: np.ndarray) -> tuple[int, np.ndarray | None]:
        if method == "floor":
            with torch.no_grad():
                floor_distance.features(floor_generator.module(floor_batch))
            return generator.latent_dim, None
        top_k = 20 if method == "lanczos" else None
        result = compute_spectrum(
            generator, distance, code, method=method, top_k=top_k, dtype=args.dtype
        )
        return int(result.diagnostics["products"]), result.eigenvalues

    wall: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    products: dict[str, int] = {}
    for method in methods:  # warm-up: allocator, kernels, lazy imports
        run(method, codes[0])
    lanczos_values: np.ndarray | None = None
    for repeat in range(args.repeats):
        for code in codes:
            for method in methods:
                if method == "lanczos" and repeat > 0:
                    continue  # float64 by design and slow with LPIPS: timed once
                _sync(args.device)
                started, started_cpu = time.perf_counter(), time.process_time()
                products[method], output = run(method, code)
                if method == "lanczos":
                    lanczos_values = output
                _sync(args.device)
                wall[method].append(time.perf_counter() - started)
                cpu[method].append(time.process_time() - started_cpu)
    errors: dict[str, float] = {}
    references = [
        compute_metric(generator, distance, c, method="bp", dtype=args.dtype)
        for c in codes[:ERROR_CODES]
    ]
    for method in methods:
        if method in ("floor", "bp"):
            continue
        worst = 0.0
        for code, bp in zip(codes[:ERROR_CODES], references, strict=False):
            if method == "lanczos":
                exact = np.linalg.eigvalsh((bp + bp.T) / 2)[::-1][:20]
                assert lanczos_values is not None and len(codes) == 1  # the timed run's answer
                values = lanczos_values
                worst = max(worst, float(np.max(np.abs(values - exact) / exact)))
            else:
                metric = compute_metric(generator, distance, code, method=method, dtype=args.dtype)
                worst = max(worst, float(np.linalg.norm(metric - bp) / np.linalg.norm(bp)))
        errors[method] = worst
    errors["bp"] = 0.0
    return {
        m: {
            "time_per_code_s": statistics.median(wall[m]),
            "cpu_per_code_s": statistics.median(cpu[m]),
            "samples": len(wall[m]),
            "products_per_code": products[m],
            "error_vs_bp": errors.get(m),
        }
        for m in methods
    }


def worker_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak resident memory of a process that loads the model and runs one method once."""
    import torch

    from services.geometry import compute_spectrum

    generator, distance = _load(args.distance, args.device)
    code = generator.sample(1, seed=2024)[0]
    before = peak_rss_mib()
    if args.methods == "floor":
        torch_dtype = torch.float32 if args.dtype == "float32" else torch.float64
        generator = generator.to(args.device, torch_dtype)
        batch = torch.as_tensor(
            generator.sample(generator.latent_dim, seed=1), dtype=torch_dtype, device=args.device
        )
        with torch.no_grad():
            distance.to(args.device, torch_dtype).features(generator.module(batch))
    else:
        top_k = 20 if args.methods == "lanczos" else None
        compute_spectrum(
            generator, distance, code, method=args.methods, top_k=top_k, dtype=args.dtype
        )
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    return {"peak_rss_mib": peak_rss_mib(), "rss_after_load_mib": before, "peak_gpu_mib": peak_gpu}


def worker_homogeneity(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from services.geometry import homogeneity

    n, d = args.positions, 256
    generator = torch.Generator().manual_seed(0)
    # Realistic structure: a shared basis perturbed per position, log-spread eigenvalues.
    shared = torch.randn(d, d, generator=generator)
    vectors = torch.linalg.qr(shared + 0.3 * torch.randn(n, d, d, generator=generator))[0]
    values = torch.sort(
        torch.exp(2 * torch.randn(n, d, generator=generator)), dim=1, descending=True
    )[0]
    values_np, vectors_np = values.numpy().astype(np.float32), vectors.numpy().astype(np.float32)
    del vectors, shared
    # Warm-up on the device: CUDA context and library handles are not part of the work.
    homogeneity(values_np[:2, :8], vectors_np[:2, :8, :8], dtype="float32", device=args.device)
    baseline = peak_rss_mib()
    _sync(args.device)
    started = time.perf_counter()
    result = homogeneity(values_np, vectors_np, dtype="float32", device=args.device)
    _sync(args.device)
    elapsed = time.perf_counter() - started
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    return {
        "device": args.device,
        "positions": n,
        "latent_dim": d,
        "time_s": elapsed,
        "log_offdiag_mean": result["log_offdiag_mean"],
        "linear_offdiag_mean": result["linear_offdiag_mean"],
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_setup_mib": baseline,
        "peak_gpu_mib": peak_gpu,
    }


# --------------------------------------------------------------------------- parent side


def run_worker(kind: str, env_extra: dict[str, str], **fields: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", kind]
    for key, value in fields.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    # The repository first, then whatever the caller's path holds (packages installed with
    # pip --target on a machine without the project's virtual environment).
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **env_extra, "PYTHONPATH": python_path}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} {fields} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def method_table(args: argparse.Namespace, env_extra: dict[str, str], label: str) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for distance in DISTANCES:
        for n_codes in (1, 8):
            methods = list(METHODS) + ["floor"]
            if n_codes > 1 or args.quick:
                methods.remove("lanczos")  # float64 by design; one code shows its cost
            if label != "default":  # bp with LPIPS is slow: its ratio is in the default table
                methods = (
                    ["jacobian", "bp", "floor"] if distance == "mse" else ["jacobian", "floor"]
                )
            repeats = args.repeats if n_codes == 1 else 1  # 8 codes: one pass, 8 samples each
            timings = run_worker(
                "timing",
                env_extra,
                methods=",".join(methods),
                distance=distance,
                codes=n_codes,
                repeats=repeats,
                dtype=args.dtype,
                device=args.device,
            )
            for method in methods:
                memory = memory_of(args, env_extra, distance, method)
                rows.append(
                    {
                        "malloc": label,
                        "distance": distance,
                        "codes": n_codes,
                        "method": method,
                        **timings[method],
                        **memory,
                    }
                )
                print(
                    f"  {label:12s} {distance:10s} codes={n_codes} {method:9s} "
                    f"{timings[method]['time_per_code_s']:.3f} s/code",
                    flush=True,
                )
    return rows


_MEMORY: dict[tuple[str, str, str], dict[str, Any]] = {}


def memory_of(
    args: argparse.Namespace, env_extra: dict[str, str], distance: str, method: str
) -> dict[str, Any]:
    """Peak memory per (malloc, distance, method), measured once in its own process (one code;
    a batch of codes runs the same computation one code at a time)."""
    key = (json.dumps(env_extra, sort_keys=True), distance, method)
    if key not in _MEMORY:
        _MEMORY[key] = run_worker(
            "memory",
            env_extra,
            methods=method,
            distance=distance,
            dtype=args.dtype,
            device=args.device,
        )
    return _MEMORY[key]


def summarise(rows: list[dict]) -> list[dict]:
    """jacobian vs bp and vs floor, per (malloc, distance, codes)."""
    verdicts = []
    keys = sorted({(r["malloc"], r["distance"], r["codes"]) for r in rows})
    for key in keys:
        group = {r["method"]: r for r in rows if (r["malloc"], r["distance"], r["codes"]) == key}
        jac, floor = group["jacobian"], group["floor"]
        bp = group.get("bp")  # not run in every configuration (the tuned-malloc LPIPS rows)
        verdicts.append(
            {
                "malloc": key[0],
                "distance": key[1],
                "codes": key[2],
                "bp_over_jacobian": bp and bp["time_per_code_s"] / jac["time_per_code_s"],
                "bp_over_jacobian_cpu": bp and bp["cpu_per_code_s"] / jac["cpu_per_code_s"],
                "jacobian_over_floor_cpu": jac["cpu_per_code_s"] / floor["cpu_per_code_s"],
                "jacobian_over_floor": jac["time_per_code_s"] / floor["time_per_code_s"],
                "jacobian_peak_rss_mib": jac["peak_rss_mib"],
                "meets_10x": bp and bp["time_per_code_s"] / jac["time_per_code_s"] >= 10,
                "meets_1_3x_floor": jac["time_per_code_s"] / floor["time_per_code_s"] <= 1.3,
                "meets_2gib": jac["peak_rss_mib"] < 2048,
            }
        )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", choices=["timing", "memory", "homogeneity"])
    parser.add_argument("--methods", default="jacobian")
    parser.add_argument("--distance", default="mse")
    parser.add_argument("--codes", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument(
        "--quick", action="store_true", help="skip lanczos and the tuned-malloc table"
    )
    args = parser.parse_args()

    if args.worker:
        workers = {
            "timing": worker_timing,
            "memory": worker_memory,
            "homogeneity": worker_homogeneity,
        }
        work = workers[args.worker]
        print(json.dumps(work(args)))
        return

    started = time.perf_counter()
    rows = method_table(args, {}, "default")
    if not args.quick and args.device == "cpu":  # glibc's malloc settings matter on the CPU only
        rows += method_table(args, TUNED_MALLOC, "tuned malloc")
    verdicts = summarise(rows)
    print(f"  homogeneity of {args.positions} positions ...", flush=True)
    homogeneity_row = run_worker("homogeneity", {}, positions=args.positions, device=args.device)
    # One name per device, so a GPU run does not overwrite the CPU figures.
    name = "geometry" if args.device == "cpu" else f"geometry_{args.device.split(':')[0]}"
    report = {
        "model": "dcgan-faces",
        "lpips_backbone": "random (pnet_rand): ImageNet weights not on this machine; same cost",
        "device": args.device,
        "dtype": args.dtype,
        "tuned_malloc_env": TUNED_MALLOC,
        "methods": rows,
        "jacobian_targets": verdicts,
        "homogeneity": homogeneity_row,
        "total_time_s": time.perf_counter() - started,
    }
    write_results(name, report, tables(args, rows, verdicts, homogeneity_row))


def tables(
    args: argparse.Namespace, rows: list[dict], verdicts: list[dict], homogeneity_row: dict | None
) -> list[Table]:
    """The methods' times beside the floor, and jacobian's ratios to bp and to the floor."""
    methods = Table(
        title=f"Geometry: dcgan-faces (d = 100), {args.dtype}, {args.device}, per code",
        columns=[
            "malloc",
            "distance",
            "codes",
            "method",
            "wall s",
            "CPU s",
            "products",
            "peak RSS MiB",
            "peak GPU MiB",
            "error vs bp",
        ],
        rows=[
            [
                r["malloc"],
                r["distance"],
                r["codes"],
                r["method"],
                r["time_per_code_s"],
                r["cpu_per_code_s"],
                r["products_per_code"],
                r["peak_rss_mib"],
                r.get("peak_gpu_mib"),
                r.get("error_vs_bp"),
            ]
            for r in rows
        ],
        notes=[
            "The floor is one forward pass of the generator and the distance's features over "
            "a batch of d codes. LPIPS with a random backbone: the same cost as the real one. "
            "Error: relative Frobenius error of H against bp in the same run (lanczos: the "
            "largest relative error of its top-20 eigenvalues)."
        ],
    )
    ratios = Table(
        title=f"Geometry: jacobian against bp and its floor ({args.device})",
        columns=[
            "malloc",
            "distance",
            "codes",
            "bp / jacobian",
            "jacobian / floor",
            "jacobian / floor (CPU time)",
            "jacobian peak RSS MiB",
        ],
        rows=[
            [
                v["malloc"],
                v["distance"],
                v["codes"],
                v["bp_over_jacobian"],
                v["jacobian_over_floor"],
                v["jacobian_over_floor_cpu"],
                v["jacobian_peak_rss_mib"],
            ]
            for v in verdicts
        ],
        notes=["Target (issue 24): every exact route ≤ 1.2× its floor on the CPU."]
        + (
            [
                f"Homogeneity of {homogeneity_row['positions']} positions at d = "
                f"{homogeneity_row['latent_dim']} (float32, {homogeneity_row['device']}): "
                f"{homogeneity_row['time_s']:.3g} s, peak RSS {homogeneity_row['peak_rss_mib']:.0f} MiB "
                "(published: 582 s for 1000 positions on a GPU)."
            ]
            if homogeneity_row
            else []
        ),
    )
    return [methods, ratios]


if __name__ == "__main__":
    main()
