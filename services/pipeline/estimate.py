"""The plan of a job before it is accepted: per code, the products, the peak memory of one
tangent batch, the time and the stored bytes, and the tangent batch that fits a worker.

The costs come from a short probe of the model on this process's device, computing with a
worker's thread count (SPECTRA_WORKER_THREADS): tangent batches of 8 (warm-up), 32 and 128
(forward-mode rows, the features' pull-back, double-backward products) timed, with the
resident memory they add sampled (on CUDA: torch's peak allocation), and single-vector
products timed as Lanczos runs them. Per-tangent memory and time are the slope between the
two largest batches, the fixed part the intercept; the linear algebra after the products
(the Gram matrix, `eigh`, ARPACK's basis) is counted from its shapes. A job whose smallest
tangent batch still exceeds the worker's memory budget is refused, naming what to change.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from typing import Any

import torch

from services.geometry import Distance, Generator
from services.geometry import methods as core
from services.pipeline.resources import resident_growth

GIB = 1024**3
# What a CPU worker holds before any model: the interpreter, torch's libraries, the store's
# driver, Celery (peak RSS of an idle `spectra worker` child, measured on this machine).
CPU_RUNTIME_BYTES = 450 * 1024**2
# Share of a device's memory a worker may plan for when SPECTRA_WORKER_MEMORY_GB is unset.
DEFAULT_MEMORY_SHARE = 0.8
# Tangent batches are powers of two (stable across probes, so the spec hash is too).
MAX_TANGENT_BATCH = 1024
# The probe's batch sizes: a warm-up at the first, costs fitted between the two largest.
# Below about ten tangents the fixed cost of a pass hides the per-tangent one, and past the
# caches the per-tangent cost rises: a slope fitted between 2 and 8 under-counted the
# 128-tangent batches jobs run by 3-4x. Fitting in the regime jobs run in is what holds.
PROBE_BATCHES = (8, 32, 128)
# Single-vector products (Lanczos) timed this many times, the median kept.
SINGLE_PRODUCT_RUNS = 5
# Float64 copies of a d x d matrix alive at once while it is decomposed: the metric, its
# symmetrised copy, eigh's vectors and workspace, the residual products.
EIGH_SQUARE_COPIES = 5
EIGH_PROBE_SIZE = 1024
# ARPACK's products for the top k of a smooth, decaying spectrum, in bases of ncv = 2k + 1
# vectors: one basis and a few restarts' worth (1.0-1.3 ncv measured for k = 20 on
# dcgan-faces and on StyleGAN2 w+; flatter spectra restart more). The k residual products
# that check convergence come on top.
LANCZOS_PRODUCTS_PER_NCV = 1.15
# torch's CPU profiler (kineto) writes a "USDT ... profiler_start/stop" line to stderr at
# every use unless its log level is above 5; the probe's memory counting is not worth a line.
KINETO_QUIET_LEVEL = "6"


@dataclass(frozen=True)
class Linear:
    """cost(b) = fixed + per_item * b, fitted between two probe batch sizes."""

    fixed: float
    per_item: float

    def at(self, batch: int) -> float:
        return max(0.0, self.fixed) + self.per_item * batch


@dataclass(frozen=True)
class Probe:
    """Measured costs of one generator and distance on one device and dtype."""

    latent_dim: int
    features: int
    itemsize: int
    parameter_bytes: int
    tangent_bytes: Linear  # forward-mode rows of a batch of tangents (jacobian)
    tangent_seconds: Linear
    pullback_bytes: Linear  # features' vjp of a batch (column blocks), graph included
    pullback_seconds: Linear
    hvp_bytes: Linear  # double-backward products (lanczos, hvp, fd, bp), graph included
    hvp_seconds: Linear
    prepare_seconds: float  # a code's set-up: the reference image rendered, the model readied
    hvp_graph_seconds: float  # building the gradient's graph once per code (Lanczos)
    hvp_single_seconds: float  # one single-vector double-backward product (Lanczos)
    gemm_flops_per_s: float  # this device's rate for the Gram matrix, in the probe's dtype
    eigh_seconds_per_d3: float  # float64 eigh, seconds per d³


@dataclass(frozen=True)
class CodeEstimate:
    """One code's costs under a plan (bytes and seconds; `peak_bytes` includes the worker's
    runtime and the model)."""

    route: str  # "jacobian", "column blocks", "lanczos", ...
    products: int
    tangent_batch: int | None
    tangent_batches: int
    peak_bytes: int | None  # None: not probed (a small latent, see SPECTRA_PLAN_PROBE_MIN_DIM)
    tangent_batch_bytes: int | None  # the working memory of one tangent batch alone
    seconds: float
    stored_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobEstimate:
    """A job's plan: per code, and in total for its codes, against a worker's budget."""

    per_code: CodeEstimate
    n_latents: int
    chunks: int
    budget_bytes: int
    device: str
    fits: bool
    probed: bool

    def as_dict(self) -> dict[str, Any]:
        n = self.n_latents
        return {
            "per_code": self.per_code.as_dict(),
            "n_latents": n,
            "chunks": self.chunks,
            "device": self.device,
            "probed": self.probed,
            "worker_budget_bytes": self.budget_bytes,
            "fits": self.fits,
            "total_seconds": self.per_code.seconds * n,
            "total_stored_bytes": self.per_code.stored_bytes * n,
            "total_products": self.per_code.products * n,
        }


# --------------------------------------------------------------------------- worker budget


def worker_budget_bytes(memory_gb: float | None, device: str) -> int:
    """The memory a worker may use: the setting, else most of the device's memory."""
    if memory_gb is not None:
        return int(memory_gb * GIB)
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch_device).total_memory
    else:
        total = _physical_memory_bytes()
    return int(total * DEFAULT_MEMORY_SHARE)


def _physical_memory_bytes() -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:  # a container's limit, where it is lower
        with open("/sys/fs/cgroup/memory.max") as limit:
            text = limit.read().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return int(total)


# --------------------------------------------------------------------------- probe


def _timed(run: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _measure(run: Callable[[], Any], device: torch.device) -> tuple[int, float]:
    """(peak bytes `run` added while it ran, its seconds). On the CPU the bytes are resident
    memory, what a worker's budget and the kernel count: torch's own allocations miss
    oneDNN's scratch space and the heap's overhead (two to three times less for a batch of
    convolution tangents). Sampling the resident set costs the run nothing measurable, so
    one run gives both figures; the profiler fallback is timed in a second run."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = _timed(run, device)
        return int(torch.cuda.max_memory_allocated(device) - before), seconds
    timings: list[float] = []
    resident = resident_growth(lambda: timings.append(_timed(run, device)))
    if resident is not None:
        return int(resident), timings[0]
    else:  # no /proc: torch's own allocations, which leave out oneDNN's and the heap's
        from torch.profiler import ProfilerActivity, profile

        os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET_LEVEL)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
            run()
        # Self (not inclusive) allocations per event, frees as "[memory]" events: their
        # running sum in time order is the live total.
        changes = sorted(
            (event.time_range.start, event.self_cpu_memory_usage)
            for event in recorded.events()
            if event.self_cpu_memory_usage
        )
        live = peak = 0
        for _, change in changes:
            live += change
            peak = max(peak, live)
    return int(peak), _timed(run, device)


def _fit(small: tuple[int, float], large: tuple[int, float]) -> Linear:
    (b1, y1), (b2, y2) = small, large
    slope = max((y2 - y1) / (b2 - b1), y2 / b2 / 4)  # never below a quarter of the mean
    return Linear(fixed=y2 - slope * b2, per_item=slope)


def _probe_costs(
    run_at: Callable[[int], Callable[[], Any]], device: torch.device, d: int, limit: int | None
) -> tuple[Linear, Linear]:
    """Memory and time per batch of one product kind. The first batch is a warm-up (first-call
    allocations and kernel choices) whose memory bounds the larger ones: none is probed that
    would need more than `limit` bytes at that batch's cost per item (so the probe itself never
    exhausts the process that plans)."""
    batches = sorted({min(b, d) for b in PROBE_BATCHES})
    first = batches[0]
    warm_bytes, _ = _measure(run_at(first), device)
    if limit is not None:
        affordable = max(first, int(limit * first / max(warm_bytes, 1)))
        batches = [b for b in batches if b <= affordable]
    measured = [(b, *_measure(run_at(b), device)) for b in batches[-2:]]
    if len(measured) == 1:
        (b, peak, seconds) = measured[0]
        return Linear(0.0, peak / b), Linear(0.0, seconds / b)
    (b1, m1, s1), (b2, m2, s2) = measured
    return _fit((b1, m1), (b2, m2)), _fit((b1, s1), (b2, s2))


def _single_products(problem: Any, device: torch.device) -> tuple[float, float]:
    """(seconds to build the gradient's graph, median seconds of one single-vector product),
    as Lanczos runs them: batched products are cheaper per vector and would under-count."""
    apply = core._hvp_function(problem)
    apply(problem.basis(0, 1).squeeze(1))  # warm-up
    graph = _timed(lambda: core._hvp_function(problem), device)
    # Fresh random directions, as ARPACK's are: a basis vector's sparsity flatters the time.
    generator = torch.Generator(device=problem.z0.device).manual_seed(0)
    vectors = torch.randn(
        (SINGLE_PRODUCT_RUNS, 1, problem.d), generator=generator, dtype=problem.z0.dtype,
        device=problem.z0.device,
    )  # fmt: skip
    runs = sorted(_timed(partial(apply, vector), device) for vector in vectors)
    return graph, runs[len(runs) // 2]


@contextmanager
def compute_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` (None: left alone) for the block."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(before)


# Of a worker's budget, the most one probe batch may take (the probe runs where jobs are
# planned, beside whatever else that process holds).
PROBE_BUDGET_SHARE = 0.25


def probe(
    generator: Generator, distance: Distance, dtype: str, *, seed: int = 0,
    threads: int | None = None, budget: int | None = None,
) -> Probe:  # fmt: skip
    """Time and measure a few tangent batches at one sampled code, computing with `threads`
    threads (a worker's count; None: this process's); no batch above a quarter of `budget`."""
    limit = None if budget is None else int(budget * PROBE_BUDGET_SHARE)
    with compute_threads(threads):
        return _probe(generator, distance, dtype, seed, limit)


def _probe(
    generator: Generator, distance: Distance, dtype: str, seed: int, limit: int | None
) -> Probe:
    code = generator.sample(1, seed)[0]
    started = time.perf_counter()
    problem = core._prepare(generator, distance, code, dtype, render=True)
    prepare_seconds = time.perf_counter() - started
    d = problem.d
    device = problem.z0.device

    def tangents(batch: int) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad(), core._cudnn_without_tf32(device):
                return core._jacobian_rows(problem, 0, batch)

        return run

    def pullbacks(batch: int) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad(), core._cudnn_without_tf32(device):
                pull_back = torch.func.vjp(problem.features, problem.z0)[1]
                image = problem.reference
                assert image is not None
                cotangents = torch.ones(
                    (batch, 1, problem.distance.feature_weights(tuple(image.shape)).numel()),
                    dtype=problem.z0.dtype,
                    device=device,
                )
                return torch.func.vmap(pull_back)(cotangents)

        return run

    def hvps(batch: int) -> Callable[[], Any]:
        def run() -> Any:
            with core._cudnn_without_tf32(device):
                apply = core._hvp_function(problem)
                return apply(problem.basis(0, batch).squeeze(1)).detach()

        return run

    tangent_bytes, tangent_seconds = _probe_costs(tangents, device, d, limit)
    pullback_bytes, pullback_seconds = _probe_costs(pullbacks, device, d, limit)
    hvp_bytes, hvp_seconds = _probe_costs(hvps, device, d, limit)
    with core._cudnn_without_tf32(device):
        hvp_graph_seconds, hvp_single_seconds = _single_products(problem, device)
    image = problem.reference
    assert image is not None
    features = int(problem.distance.feature_weights(tuple(image.shape)).numel())
    parameters = sum(
        t.numel() * t.element_size()
        for module in (problem.generator.module, getattr(problem.distance, "model", None))
        if isinstance(module, torch.nn.Module)
        for t in (*module.parameters(), *module.buffers())
    )
    return Probe(
        latent_dim=d,
        features=features,
        itemsize=problem.z0.element_size(),
        parameter_bytes=int(parameters),
        tangent_bytes=tangent_bytes,
        tangent_seconds=tangent_seconds,
        pullback_bytes=pullback_bytes,
        pullback_seconds=pullback_seconds,
        hvp_bytes=hvp_bytes,
        hvp_seconds=hvp_seconds,
        prepare_seconds=prepare_seconds,
        hvp_graph_seconds=hvp_graph_seconds,
        hvp_single_seconds=hvp_single_seconds,
        gemm_flops_per_s=_gemm_rate(device, problem.z0.dtype),
        eigh_seconds_per_d3=_eigh_rate(device),
    )


def _gemm_rate(device: torch.device, dtype: torch.dtype) -> float:
    return _cached_gemm_rate(device, dtype, torch.get_num_threads())


@lru_cache(maxsize=8)
def _cached_gemm_rate(device: torch.device, dtype: torch.dtype, threads: int) -> float:
    size = 1024 if device.type == "cpu" else 4096
    a = torch.randn((size, size), dtype=dtype, device=device)
    (a @ a).sum().item()
    started = time.perf_counter()
    (a @ a).sum().item()
    return 2 * size**3 / max(time.perf_counter() - started, 1e-9)


def _eigh_rate(device: torch.device) -> float:
    return _cached_eigh_rate(device, torch.get_num_threads())


@lru_cache(maxsize=8)
def _cached_eigh_rate(device: torch.device, threads: int) -> float:
    """Seconds per d³ of a float64 eigh: the best of two at 1024², large enough to be past
    the small sizes' overheads (a 384² one, a few ms, read up to twice the rate of a 6144²)."""
    size = EIGH_PROBE_SIZE
    a = torch.randn((size, size), dtype=torch.float64, device=device)
    a = a + a.T
    times = []
    for _ in range(2):
        started = time.perf_counter()
        torch.linalg.eigh(a)[0].sum().item()
        times.append(time.perf_counter() - started)
    return min(times) / size**3


_probes: dict[tuple[Any, ...], Probe] = {}


def cached_probe(
    key: tuple[Any, ...], generator: Generator, distance: Distance, dtype: str,
    threads: int | None = None, budget: int | None = None,
) -> Probe:  # fmt: skip
    """One probe per (model, distance, options, device, dtype, threads) per process."""
    found = _probes.get((*key, threads))
    if found is None:
        found = _probes[(*key, threads)] = probe(
            generator, distance, dtype, threads=threads, budget=budget
        )
    return found


# --------------------------------------------------------------------------- per-code costs


@dataclass(frozen=True)
class Request:
    """The parts of a job spec that decide its costs."""

    method: str
    dtype: str  # the job's (lanczos computes in float64 whatever is asked)
    top_k: int | None
    batch: int | None  # tangent batch asked for; None = the largest that fits
    block_columns: int | None
    vector_dtype: str  # what the eigenvectors are stored in


def runtime_bytes(probe: Probe, device: str) -> int:
    """What a worker holds before its first tangent: runtime (CPU) and the models' weights."""
    on_cpu = torch.device(device).type == "cpu"
    return (CPU_RUNTIME_BYTES if on_cpu else 0) + probe.parameter_bytes


def estimate_code(probe: Probe, request: Request, device: str, batch: int) -> CodeEstimate:
    """One code's costs with tangent batch `batch`. A probe in another dtype than the
    computation's (lanczos is float64 always) is scaled by the item sizes."""
    d, features = probe.latent_dim, probe.features
    item = 8 if request.method == "lanczos" or request.dtype == "float64" else 4
    if item != probe.itemsize:
        probe = _rescaled(probe, item / probe.itemsize)
    base = runtime_bytes(probe, device)
    square = d * d * 8
    k = request.top_k or d
    vector_bytes = d * k * (8 if request.vector_dtype == "float64" else 4)
    stored = vector_bytes + 16 * d  # eigenvectors, eigenvalues, the code
    eigh_seconds = probe.eigh_seconds_per_d3 * d**3
    batches = math.ceil(d / batch)
    if request.method == "lanczos":
        k = request.top_k or min(core.DEFAULT_LANCZOS_K, d - 1)
        ncv = min(d, max(2 * k + 1, 20))
        products = min(d * 10, math.ceil(LANCZOS_PRODUCTS_PER_NCV * ncv))
        # One product at a time, then the k residual products as one batch: the larger.
        working = int(max(probe.hvp_bytes.at(1), probe.hvp_bytes.at(k)))
        peak = base + working + 3 * d * ncv * 8
        # The gradient's graph is built once per code, then each product is one single-vector
        # double-backward pass. The k residual checks run as one batch, counted at the single
        # product's cost: the fitted line is unreliable below its smallest batch.
        seconds = (
            probe.prepare_seconds + probe.hvp_graph_seconds
            + (products + k) * probe.hvp_single_seconds
        )  # fmt: skip
        stored = d * k * (8 if request.vector_dtype == "float64" else 4) + 16 * d
        return CodeEstimate("lanczos", products, None, products, peak, working, seconds, stored)
    if request.method == "jacobian" and request.block_columns is not None:
        width = request.block_columns
        batch = min(batch, width)
        tangent = int(probe.tangent_bytes.at(batch) + probe.pullback_bytes.at(batch))
        block_peak = base + tangent + batch * features * item + d * width * (8 + item)
        # The worker that completes the set reads every block and decomposes H.
        assemble_peak = base + 2 * square + EIGH_SQUARE_COPIES * square
        per_block = math.ceil(width / batch)
        seconds = math.ceil(d / width) * (
            probe.prepare_seconds
            + per_block * (probe.tangent_seconds.at(batch) + probe.pullback_seconds.at(batch))
        )
        return CodeEstimate(
            "column blocks", 2 * d, batch, math.ceil(d / width) * per_block,
            max(block_peak, assemble_peak), tangent, seconds + eigh_seconds,
            stored + square,  # the blocks stay stored beside the spectrum
        )  # fmt: skip
    if request.method == "jacobian":
        tangent = int(probe.tangent_bytes.at(batch))
        rows = d * features * item
        product_peak = base + rows + tangent
        gram_peak = base + rows + d * d * item + square
        decompose_peak = base + EIGH_SQUARE_COPIES * square
        seconds = (
            probe.prepare_seconds
            + batches * probe.tangent_seconds.at(batch)
            + 2 * d * d * features / probe.gemm_flops_per_s
            + eigh_seconds
        )
        peak = max(product_peak, gram_peak, decompose_peak)
        return CodeEstimate("jacobian", d, batch, batches, peak, tangent, seconds, stored)
    # hvp, fd, bp: double-backward products of D, d (fd: 2d) of them, then the same eigh.
    products = 2 * d if request.method == "fd" else d
    serial = request.method == "bp"
    step = 1 if serial else batch
    tangent = int(probe.hvp_bytes.at(step))
    peak = max(base + tangent + d * d * item + square, base + EIGH_SQUARE_COPIES * square)
    seconds = (
        probe.prepare_seconds + math.ceil(products / step) * probe.hvp_seconds.at(step)
        + eigh_seconds
    )  # fmt: skip
    return CodeEstimate(
        request.method, products, None if serial else step, math.ceil(products / step),
        peak, tangent, seconds, stored,
    )  # fmt: skip


def _rescaled(probe: Probe, factor: float) -> Probe:
    """The probe's byte and second costs as if measured in an item size `factor` times its
    own (float32 <-> float64: memory scales exactly, CPU time about as much)."""

    def scaled(cost: Linear) -> Linear:
        return Linear(cost.fixed * factor, cost.per_item * factor)

    return Probe(
        latent_dim=probe.latent_dim, features=probe.features,
        itemsize=int(probe.itemsize * factor), parameter_bytes=int(probe.parameter_bytes * factor),
        tangent_bytes=scaled(probe.tangent_bytes), tangent_seconds=scaled(probe.tangent_seconds),
        pullback_bytes=scaled(probe.pullback_bytes),
        pullback_seconds=scaled(probe.pullback_seconds),
        hvp_bytes=scaled(probe.hvp_bytes), hvp_seconds=scaled(probe.hvp_seconds),
        prepare_seconds=probe.prepare_seconds * factor,
        hvp_graph_seconds=probe.hvp_graph_seconds * factor,
        hvp_single_seconds=probe.hvp_single_seconds * factor,
        gemm_flops_per_s=probe.gemm_flops_per_s / factor,
        eigh_seconds_per_d3=probe.eigh_seconds_per_d3,
    )  # fmt: skip


def _batch_candidates(d: int, asked: int | None) -> list[int]:
    if asked is not None:
        return [min(asked, d)]
    sizes, size = [], 1
    while size < min(d, MAX_TANGENT_BATCH):
        sizes.append(size)
        size *= 2
    sizes.append(min(d, MAX_TANGENT_BATCH))
    return sorted(set(sizes), reverse=True)


def fitting_estimate(
    probe: Probe, request: Request, device: str, budget: int
) -> tuple[CodeEstimate, bool]:
    """The largest tangent batch whose code fits `budget` (the asked batch, if one was
    asked), and whether it fits at all; when nothing fits, the smallest batch's estimate."""
    candidates = _batch_candidates(probe.latent_dim, request.batch)
    estimate = estimate_code(probe, request, device, candidates[0])
    for batch in candidates:
        estimate = estimate_code(probe, request, device, batch)
        if estimate.peak_bytes is not None and estimate.peak_bytes <= budget:
            return estimate, True
    return estimate, False


def alternatives(probe: Probe, request: Request, device: str, budget: int) -> list[str]:
    """What to change so that a job that fits no worker fits one, as spec edits."""
    d = probe.latent_dim
    tried: list[tuple[str, Request]] = []
    if request.batch is not None:
        tried.append(("leave out batch (the planner picks one that fits)",
                      _replace(request, batch=None)))  # fmt: skip
    if request.method == "jacobian" and request.block_columns is None:
        for width in (d // 2, d // 4, d // 8, d // 16):
            if width >= 1:
                tried.append((f"block_columns={width}", _replace(request, block_columns=width)))
    if request.method != "lanczos" and d >= 3:
        k = min(request.top_k or core.DEFAULT_LANCZOS_K, d - 1)
        tried.append((f"method='lanczos' with top_k={k}",
                      _replace(request, method="lanczos", top_k=k, block_columns=None)))  # fmt: skip
    if request.dtype == "float64" and request.method != "lanczos":
        tried.append(("dtype='float32'", _replace(request, dtype="float32")))
    advice = []
    for text, candidate in tried:
        estimate, fits = fitting_estimate(probe, candidate, device, budget)
        if fits and estimate.peak_bytes is not None:
            advice.append(f"{text} (about {describe_bytes(estimate.peak_bytes)} per code)")
    return advice


def _replace(request: Request, **changes: Any) -> Request:
    return Request(**{**asdict(request), **changes})


def describe_bytes(value: float) -> str:
    if value >= GIB / 10:
        return f"{value / GIB:.2f} GiB"
    return f"{value / 1024**2:.1f} MiB" if value >= 1024**2 / 10 else f"{value / 1024:.1f} KiB"


def unprobed_estimate(request: Request, d: int, seconds: float) -> CodeEstimate:
    """Counts that need no probe (products, stored bytes); time from the coarse cost model."""
    k = request.top_k or (min(core.DEFAULT_LANCZOS_K, d - 1) if request.method == "lanczos" else d)
    stored = d * k * (8 if request.vector_dtype == "float64" else 4) + 16 * d
    products = 2 * d if request.method == "fd" else d
    return CodeEstimate(request.method, products, request.batch, 0, None, None, seconds, stored)


def plan_job(
    probe_of: Callable[[], Probe] | None,
    request: Request,
    *,
    latent_dim: int,
    n_latents: int,
    chunks: int,
    device: str,
    budget: int,
    coarse_seconds: float,
) -> tuple[JobEstimate, list[str]]:
    """The job's estimate and, when it fits no worker, what to change. `probe_of` None: a
    small latent planned from counts alone (every tangent batch of it fits any worker)."""
    if probe_of is None:
        per_code = unprobed_estimate(request, latent_dim, coarse_seconds)
        return JobEstimate(per_code, n_latents, chunks, budget, device, True, False), []
    measured = probe_of()
    per_code, fits = fitting_estimate(measured, request, device, budget)
    advice = [] if fits else alternatives(measured, request, device, budget)
    return JobEstimate(per_code, n_latents, chunks, budget, device, fits, True), advice


def refusal_message(estimate: JobEstimate, advice: list[str]) -> str:
    per_code = estimate.per_code
    assert per_code.peak_bytes is not None
    batch = f" even at tangent batch {per_code.tangent_batch}" if per_code.tangent_batch else ""
    change = (
        "; change one of: " + "; ".join(advice)
        if advice
        else "; no route fits: lower top_k, use method='lanczos', set block_columns, "
        "or run it on a worker with more memory"
    )
    return (
        f"one code needs about {describe_bytes(per_code.peak_bytes)} by the {per_code.route} "
        f"route{batch}, more than a worker's {describe_bytes(estimate.budget_bytes)} "
        f"(SPECTRA_WORKER_MEMORY_GB){change}"
    )
