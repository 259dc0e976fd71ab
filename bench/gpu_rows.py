"""The GPU rows, each beside its floor, in one call (bench/gpu.sh runs this on a CUDA device).

    python bench/gpu_rows.py [--device cuda] [--budget-s 420] [--out-dir bench/results]

Rows (issue 24):
  - jacobian per code at ≥ 8 codes (dcgan-faces, mse and LPIPS) against its floor: one forward
    pass of the generator and the distance's features over a batch of d codes; target ≤ 2×.
  - a worker's codes/s (a job run by the chunk function, spectra written to a store) against
    the geometry-only rate of the same codes; target ≥ 90 %.
  - StyleGAN2 at rosinality's config-f widths (random weights, style 512, 8 mapping layers) at
    256 and 1024 px: W by jacobian, W+ by Lanczos top-20 (d = 9216 at 1024 px), against one
    forward pass per product.
  - homogeneity of 1000 positions at d = 512 on the device against its GEMM floor.
  - whether torch.compile (default, and "reduce-overhead", i.e. CUDA graphs) pays on the
    jacobian route.

Each row function takes its sizes as arguments, so the tests run every one on the CPU at
small sizes. A row that fails records its error (the others still run); a row that would
start after the budget is spent is recorded as not run, so the call ends in time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from results_io import RESULTS_DIR, Table, write_results  # noqa: E402

from services.config import Settings  # noqa: E402
from services.geometry import compute_spectrum, homogeneity, load_distance, load_generator  # noqa: E402
from services.geometry.batched import jacobian_spectra  # noqa: E402


@dataclass
class Row:
    """One measured figure beside its floor: ratio = seconds / floor_s (or a rate's share)."""

    row: str
    seconds: float | None = None
    floor_s: float | None = None
    ratio: float | None = None
    target: str = ""
    meets: bool | None = None
    detail: str = ""


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, call: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of `call` after one warm-up call (kernels, allocator, lazy imports)."""
    call()
    times = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def peak_memory(device: str) -> Iterator[dict[str, float]]:
    """The device's peak allocation (MiB) over the block, where the device tracks it."""
    found: dict[str, float] = {}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    yield found
    if device.startswith("cuda"):
        found["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20


def forward_floor(generator: Any, distance: Any, device: str, repeats: int = 3) -> float:
    """One forward pass of the generator and the distance's features over a batch of d codes:
    what one exact metric cannot go below (its d products each cost at least a forward)."""
    batch = torch.as_tensor(generator.sample(generator.latent_dim, seed=1), device=device)
    batch = batch.to(generator.dtype)

    def forward() -> None:
        with torch.no_grad():
            distance.features(generator.module(batch))

    return timed(device, forward, repeats)


def ratio_row(name: str, seconds: float, floor_s: float, limit: float, detail: str = "") -> Row:
    ratio = seconds / floor_s
    return Row(name, seconds, floor_s, ratio, f"≤ {limit:g}× floor", ratio <= limit, detail)


# --------------------------------------------------------------------------- rows


def jacobian_rows(
    device: str,
    *,
    codes: int = 8,
    distances: Sequence[str] = ("mse", "lpips-alex"),
    repeats: int = 3,
    model: str = "dcgan-faces",
) -> list[Row]:
    """jacobian per code at `codes` codes (one batched pass, as a GPU worker runs a chunk)
    against the forward floor; LPIPS with a random backbone (no download; the same cost)."""
    rows = []
    generator = load_generator(model, device=device)
    z = generator.sample(codes, seed=2024)
    for name in distances:
        distance = load_distance(name, device=device, random_backbone=name.startswith("lpips"))
        with peak_memory(device) as peak:
            per_code = timed(device, lambda d=distance: jacobian_spectra(generator, d, z), repeats)
        per_code /= codes
        floor = forward_floor(generator, distance, device, repeats)
        detail = f"{codes} codes" + (f", peak {peak['peak_mib']:.0f} MiB" if peak else "")
        rows.append(ratio_row(f"jacobian, {model}, {name}", per_code, floor, 2.0, detail))
    return rows


def worker_rate_row(
    device: str, *, codes: int = 64, chunk_size: int = 16, model: str = "dcgan-faces"
) -> Row:
    """A job's codes/s through the chunk function that a worker runs (store writes and all)
    against the geometry-only rate of the same codes in the same chunks."""
    from services.pipeline import JobSpec, run_job_inprocess, submit_job
    from services.store import Store

    generator = load_generator(model, device=device)
    distance = load_distance("mse", device=device)
    spec = dict(model=model, distance="mse", method="jacobian", chunk_size=chunk_size)
    with tempfile.TemporaryDirectory() as directory, Store(f"sqlite:///{directory}/g.db") as store:
        store.migrate()
        warm, _ = submit_job(
            store,
            JobSpec(**spec, latents={"count": chunk_size, "seed": 1}),
            "bench",
            None,
            settings=Settings(),
        )
        run_job_inprocess(store, warm.id, device=device)  # model load, kernels
        job, _ = submit_job(
            store,
            JobSpec(**spec, latents={"count": codes, "seed": 2}),
            "bench",
            None,
            settings=Settings(),
        )
        sync(device)
        started = time.perf_counter()
        finished = run_job_inprocess(store, job.id, device=device)
        sync(device)
        worker_s = time.perf_counter() - started
    if finished.status != "succeeded":
        raise RuntimeError(f"the job ended {finished.status}")
    z = generator.sample(codes, seed=2)  # the job's count and seed

    def geometry_only() -> None:
        for first in range(0, codes, chunk_size):
            jacobian_spectra(generator, distance, z[first : first + chunk_size])

    geometry_s = timed(device, geometry_only, repeats=1)
    share = geometry_s / worker_s
    return Row(
        f"worker codes/s against geometry only ({model}, mse, jacobian)",
        worker_s,
        geometry_s,
        share,
        "≥ 0.9 of geometry-only rate",
        share >= 0.9,
        f"{codes / worker_s:.1f} against {codes / geometry_s:.1f} codes/s, {codes} codes in "
        f"chunks of {chunk_size}",
    )


def stylegan2_rows(
    device: str,
    workdir: Path,
    *,
    sizes: Sequence[int] = (256, 1024),
    style_dim: int = 512,
    n_mlp: int = 8,
    channels: dict[int, dict[int, int]] | None = None,
    top_k: int = 20,
) -> list[Row]:
    """Random StyleGAN2 checkpoints (the tests' writer; config-f widths unless `channels`
    gives a size's widths): W by jacobian, W+ by Lanczos top-k, float32, one code each, against
    the forward cost of the products they take."""
    from tests.support.checkpoints import write_random_checkpoint

    rows = []
    distance = load_distance("mse", device=device)
    for size in sizes:
        path = write_random_checkpoint(
            workdir / f"sg2-{size}.pt",
            size=size,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channels=(channels or {}).get(size),
            exercise_zeros=False,
        )
        for space, method in (("w", "jacobian"), ("w+", "lanczos")):
            generator = load_generator(f"stylegan2:{path}", device=device, space=space, psi=0.7)
            d = generator.latent_dim
            code = generator.sample(1, seed=3)[0]
            options: dict[str, Any] = {"top_k": top_k} if method == "lanczos" else {}
            with peak_memory(device) as peak:
                started = time.perf_counter()
                result = compute_spectrum(generator, distance, code, method=method, **options)
                sync(device)
                seconds = time.perf_counter() - started
            products = int(result.diagnostics["products"])
            one = torch.as_tensor(generator.sample(min(d, 32), seed=1), device=device)
            one = one.to(generator.dtype)

            def forward(batch: torch.Tensor = one, g: Any = generator) -> None:
                with torch.no_grad():
                    distance.features(g.module(batch))

            floor = timed(device, forward) / len(one) * products
            detail = f"d = {d}, {products} products" + (
                f", peak {peak['peak_mib']:.0f} MiB" if peak else ""
            )
            label = f"StyleGAN2 {size} px, {space}, {method}" + (
                f" top-{top_k}" if method == "lanczos" else ""
            )
            rows.append(Row(label, seconds, floor, seconds / floor, "reported", None, detail))
    return rows


def homogeneity_row(device: str, *, n: int = 1000, d: int = 512, repeats: int = 3) -> Row:
    """homogeneity of n positions (every eigenpair, float32) on the device against its floor:
    2·n·T·n·d FLOP (T = d(d+1)/2, the packed route) at the device's float32 GEMM rate of the
    shape (n, T) @ (T, 8d), measured here."""
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.standard_normal((d, d)) + 0.3 * rng.standard_normal((n, d, d)))[0]
    values = -np.sort(-np.exp(2 * rng.standard_normal((n, d))), axis=1)
    vectors32, values32 = vectors.astype(np.float32), values.astype(np.float32)
    del vectors
    packed = d * (d + 1) // 2
    left = torch.randn((n, packed), device=device)
    right = torch.randn((packed, 8 * d), device=device)
    gemm = timed(device, lambda a=left, b=right: torch.matmul(a, b), repeats)
    rate = 2 * n * packed * 8 * d / gemm
    del left, right  # the GEMM's operands leave room for the homogeneity itself
    with peak_memory(device) as peak:
        seconds = timed(
            device,
            lambda: homogeneity(values32, vectors32, dtype="float32", device=device),
            repeats,
        )
    floor = 2 * n * packed * n * d / rate
    detail = f"{n} positions, d = {d}, GEMM {rate / 1e9:.4g} GFLOP/s" + (
        f", peak {peak['peak_mib']:.0f} MiB" if peak else ""
    )
    return Row(
        f"homogeneity, {n} positions, d = {d}",
        seconds,
        floor,
        seconds / floor,
        "reported",
        None,
        detail,
    )


COMPILE_VARIANTS: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] = {
    "torch.compile": lambda module: torch.compile(module),
    "torch.compile reduce-overhead (CUDA graphs)": lambda module: torch.compile(
        module, mode="reduce-overhead"
    ),
}


def compile_rows(
    device: str,
    *,
    codes: int = 8,
    repeats: int = 3,
    variants: dict[str, Callable[[torch.nn.Module], torch.nn.Module]] | None = None,
    model: str = "dcgan-faces",
) -> list[Row]:
    """jacobian of `model` (mse, `codes` codes) with the generator compiled, against eager:
    a ratio under 1 means it pays. A variant that does not compose with the forward-mode
    route records why."""
    generator = load_generator(model, device=device)
    distance = load_distance("mse", device=device)
    z = generator.sample(codes, seed=2024)
    eager = timed(device, lambda: jacobian_spectra(generator, distance, z), repeats) / codes
    rows = [Row("jacobian, eager (the reference of the compile rows)", eager, None, 1.0)]
    for name, wrap in (variants or COMPILE_VARIANTS).items():
        compiled = load_generator(model, device=device)
        try:
            compiled.module = wrap(compiled.module)
            started = time.perf_counter()
            jacobian_spectra(compiled, distance, z)  # compiles
            first = time.perf_counter() - started
            seconds = timed(device, lambda g=compiled: jacobian_spectra(g, distance, z), repeats)
        except Exception as error:  # a backend that cannot trace the route is an answer too
            rows.append(
                Row(
                    f"jacobian, {name}",
                    detail=f"fails: {type(error).__name__}: {str(error).splitlines()[0][:160]}",
                )
            )
            continue
        seconds /= codes
        rows.append(
            Row(
                f"jacobian, {name}",
                seconds,
                eager,
                seconds / eager,
                "< 1× eager pays",
                seconds < eager,
                f"first call (compiling) {first:.1f} s",
            )
        )
    return rows


# --------------------------------------------------------------------------- the call


def run_rows(steps: Sequence[tuple[str, Callable[[], list[Row]]]], budget_s: float) -> list[Row]:
    """Runs each step while the budget lasts; a failing step is a row with its error."""
    started = time.perf_counter()
    rows: list[Row] = []
    for name, step in steps:
        if time.perf_counter() - started > budget_s:
            rows.append(Row(name, detail=f"not run: the {budget_s:g} s budget was spent"))
            continue
        print(f"  {name} ...", flush=True)
        try:
            rows += step()
        except Exception as error:
            traceback.print_exc()
            rows.append(Row(name, detail=f"fails: {type(error).__name__}: {error}"[:240]))
    return rows


def table(rows: Sequence[Row], device: str) -> Table:
    return Table(
        title=f"GPU rows ({device}): each beside its floor",
        columns=["row", "seconds", "floor s", "ratio", "target", "meets", "detail"],
        rows=[[r.row, r.seconds, r.floor_s, r.ratio, r.target, r.meets, r.detail] for r in rows],
        notes=[
            "Floors: the forward pass of the generator and the distance's features over the "
            "products a route takes (jacobian: d of them), a worker's rate: the geometry-only "
            "rate of the same codes; homogeneity: its FLOP at the device's float32 GEMM rate. "
            "Compile rows: ratio to eager jacobian (under 1 pays). StyleGAN2: random weights at "
            "rosinality's config-f widths, float32, ψ 0.7.",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"no CUDA device visible to torch {torch.__version__}: nothing measured",
            file=sys.stderr,
        )
        return 2
    device = args.device
    torch.backends.cudnn.allow_tf32 = False  # IEEE float32, as the service computes
    with tempfile.TemporaryDirectory() as directory:
        steps: list[tuple[str, Callable[[], list[Row]]]] = [
            ("jacobian against its floor", lambda: jacobian_rows(device)),
            ("worker rate", lambda: [worker_rate_row(device)]),
            ("homogeneity", lambda: [homogeneity_row(device)]),
            ("StyleGAN2 config-f", lambda: stylegan2_rows(device, Path(directory))),
            ("torch.compile and CUDA graphs", lambda: compile_rows(device)),
        ]
        rows = run_rows(steps, args.budget_s)
    name = "gpu" if device.startswith("cuda") else f"gpu_rows_{device}"
    write_results(
        name,
        {"device": device, "rows": [asdict(r) for r in rows]},
        table(rows, device),
        args.out_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
