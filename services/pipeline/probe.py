"""The probe: a short measurement of one generator and distance on this process's device,
computing with a worker's thread count (SPECTRA_WORKER_THREADS). Tangent batches of 8
(warm-up), 32 and 128 (forward-mode rows, the features' pull-back, double-backward products)
are timed, with the resident memory they add sampled (on CUDA: torch's peak allocation), and
single-vector products timed as Lanczos runs them. Per-tangent memory and time are the slope
between the two largest batches, the fixed part the intercept. What it returns is a `Probe`,
the input of the pure cost model in services/pipeline/estimate.py.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import torch

from services.geometry import Distance, Generator
from services.geometry import methods as core
from services.pipeline.estimate import Counts, Linear, Point, Probe
from services.pipeline.resources import compute_threads, resident_growth

# The probe's batch sizes: a warm-up at the first, costs fitted between the two largest.
# Below about ten tangents the fixed cost of a pass hides the per-tangent one, and past the
# caches the per-tangent cost rises: a slope fitted between very small batches under-counts
# the batches jobs run. Fitting in the regime jobs run in is what holds.
PROBE_BATCHES = (8, 32, 128)
# Single-vector products (Lanczos) timed this many times, the median kept.
SINGLE_PRODUCT_RUNS = 5
EIGH_PROBE_SIZE = 1024
# torch's CPU profiler (kineto) writes a "USDT ... profiler_start/stop" line to stderr at
# every use unless its log level is above 5; the probe's memory counting is not worth a line.
KINETO_QUIET_LEVEL = "6"
# Of a worker's budget, the most one probe batch may take (the probe runs where jobs are
# planned, beside whatever else that process holds).
PROBE_BUDGET_SHARE = 0.25
# The contention of workers sharing a host: runs timed alone, then beside the others, over
# at least this many seconds each (at most CONTENTION_MAX_RUNS runs).
CONTENTION_WINDOW_S = 2.0
CONTENTION_MAX_RUNS = 20
# The others stop by themselves after this many times the runs' expected time alone.
CONTENTION_CHILD_LIMIT = 20


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
    oneDNN's scratch space and the heap's overhead, and so under-count a batch of
    convolution tangents. Sampling the resident set costs the run nothing measurable, so
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


class ProbeOverBudgetError(ValueError):
    """Even the probe's smallest batch would exceed its share of the budget, by counts."""


@dataclass(frozen=True)
class KindCosts:
    """One product kind's measured memory and time lines and the batches behind them."""

    bytes: Linear
    seconds: Linear
    points: tuple[Point, ...]


def _probe_costs(
    run_at: Callable[[int], Callable[[], Any]],
    device: torch.device,
    d: int,
    limit: int | None,
    floor: Linear,
) -> KindCosts:
    """Memory and time per batch of one product kind. Only batches whose lower bound by
    counts (`floor`) fits `limit` are tried; the first is a warm-up (first-call allocations
    and kernel choices); each larger batch is measured only where the batches measured
    before it predict it within `limit` bytes (so the probe itself never exhausts the
    process that runs it), and every batch that does is measured."""
    batches = sorted({min(b, d) for b in PROBE_BATCHES})
    if limit is not None:
        batches = [b for b in batches if floor.at(b) <= limit] or [1]
        if floor.at(batches[0]) > limit:
            raise ProbeOverBudgetError(
                f"one tangent needs at least {floor.at(1):.0f} bytes by the model's counts, "
                f"more than the probe's {limit} bytes"
            )
    first = batches[0]
    warm_bytes, _ = _measure(run_at(first), device)
    measured: tuple[Point, ...] = ()
    for batch in batches:
        over = limit is not None and _predicted_bytes(measured, first, warm_bytes, batch) > limit
        if measured and over:  # the first (the warm-up's batch) is measured whatever it took
            break
        measured += ((batch, *_measure(run_at(batch), device)),)
    if len(measured) == 1:
        (b, peak, seconds) = measured[0]
        return KindCosts(Linear(0.0, peak / b), Linear(0.0, seconds / b), measured)
    (b1, m1, s1), (b2, m2, s2) = measured[-2:]
    return KindCosts(_fit((b1, m1), (b2, m2)), _fit((b1, s1), (b2, s2)), measured)


def _predicted_bytes(measured: tuple[Point, ...], first: int, warm: int, batch: int) -> float:
    """What `batch` will take by the batches measured so far: the line through the last two
    (the fixed part, the model's graph and buffers, is not charged per tangent: a batch that
    fits is not left unmeasured, and the plan not left to extrapolate to it), or, before
    two, the warm-up's bytes scaled as if they were all per tangent (an upper bound)."""
    if len(measured) < 2:
        return warm * batch / first
    (b1, m1, _), (b2, m2, _) = measured[-2:]
    return m2 + max(m2 - m1, 0) / (b2 - b1) * (batch - b2)


def contention_factor(run: Callable[[], Any], device: torch.device, concurrent: int) -> float:
    """How much slower `run` is while `concurrent` - 1 other processes compute the same at
    once than alone, as `concurrent` workers on one host do: the per-worker probe cannot see
    that workers sharing the host's cores, caches and memory bandwidth slow each other. The
    others are forks of this process (the model already loaded, its pages shared), each
    computing with this process's thread count until they are killed. Processes, not
    threads: threads of one process would also contend for its interpreter lock, which
    workers do not share. 1.0 on a GPU (one worker per device), with one worker, or where
    the system cannot fork."""
    if concurrent <= 1 or device.type != "cpu" or not hasattr(os, "fork"):
        return 1.0
    run()  # warm-up
    first = _timed(run, device)
    # The fastest of at least CONTENTION_WINDOW_S of runs, alone and shared: contention slows
    # every shared run alike, while load from outside the host's workers (the process that
    # plans, a test beside it) comes and goes and would make a median's ratio say
    # contention where the workers themselves do not slow each other.
    runs = max(3, min(CONTENTION_MAX_RUNS, math.ceil(CONTENTION_WINDOW_S / max(first, 1e-3))))
    alone = min(_timed(run, device) for _ in range(runs))
    threads = torch.get_num_threads()
    start_read, start_write = os.pipe()
    others: list[int] = []
    try:
        for _ in range(concurrent - 1):
            pid = os.fork()
            if pid == 0:  # the other worker: wait for the start, compute until killed
                try:
                    torch.set_num_threads(threads)  # a fork's thread pool starts afresh
                    os.close(start_write)
                    os.read(start_read, 1)
                    # Bounded even if this process dies before killing it: never an orphan
                    # computing on.
                    deadline = time.monotonic() + CONTENTION_CHILD_LIMIT * runs * alone + 10
                    while time.monotonic() < deadline:
                        run()
                finally:
                    os._exit(0)
            others.append(pid)
        os.write(start_write, b"x" * len(others))
        shared = min(_timed(run, device) for _ in range(runs))
    finally:
        for pid in others:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(start_read)
        os.close(start_write)
    return max(1.0, shared / max(alone, 1e-9))


def _single_products(problem: Any, device: torch.device) -> tuple[float, float]:
    """(seconds to build the gradient's graph, median seconds of one single-vector product),
    as Lanczos runs them: batched products are cheaper per vector and would under-count."""
    apply = core._hvp_function(problem)
    apply(problem.basis(0, 1).squeeze(1))  # warm-up
    graph = _timed(lambda: core._hvp_function(problem), device)
    # Fresh random directions, as ARPACK's are: a basis vector's sparsity flatters the time.
    generator = torch.Generator(device=problem.z0.device).manual_seed(0)
    vectors = torch.randn(
        (SINGLE_PRODUCT_RUNS, 1, problem.d),
        generator=generator,
        dtype=problem.z0.dtype,
        device=problem.z0.device,
    )
    runs = sorted(_timed(partial(apply, vector), device) for vector in vectors)
    return graph, runs[len(runs) // 2]


def probe(
    generator: Generator,
    distance: Distance,
    dtype: str,
    *,
    seed: int = 0,
    threads: int | None = None,
    budget: int | None = None,
    counts: Counts | None = None,
    concurrent: int = 1,
) -> Probe:
    """Time and measure a few tangent batches at one sampled code, computing with `threads`
    threads (a worker's count; None: this process's); no batch above a quarter of `budget`,
    none tried whose lower bound by `counts` (the architecture's shapes) exceeds it. With
    `concurrent` > 1, also how much `concurrent` workers computing at once slow each other."""
    limit = None if budget is None else int(budget * PROBE_BUDGET_SHARE)
    with compute_threads(threads):
        return _probe(generator, distance, dtype, seed, limit, counts, max(1, concurrent))


def _probe(
    generator: Generator,
    distance: Distance,
    dtype: str,
    seed: int,
    limit: int | None,
    counts: Counts | None,
    concurrent: int,
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

    item = problem.z0.element_size()
    per_tangent = float((counts.largest_activation if counts else 0) * item)
    graph = float((counts.activations if counts else 0) * item)
    tangent = _probe_costs(tangents, device, d, limit, Linear(0.0, per_tangent))
    pullback = _probe_costs(pullbacks, device, d, limit, Linear(graph, per_tangent))
    hvp = _probe_costs(hvps, device, d, limit, Linear(graph, per_tangent))
    # Contention measured on the tangent batch the probe found fastest per tangent, with
    # room for `concurrent` of them in the probe's share of the budget.
    affordable = [
        p for p in tangent.points if limit is None or concurrent * p[1] <= limit
    ] or tangent.points[:1]
    batch = min(affordable, key=lambda p: p[2] / p[0])[0]
    contention = contention_factor(tangents(batch), device, concurrent)
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
        tangent_bytes=tangent.bytes,
        tangent_seconds=tangent.seconds,
        pullback_bytes=pullback.bytes,
        pullback_seconds=pullback.seconds,
        hvp_bytes=hvp.bytes,
        hvp_seconds=hvp.seconds,
        prepare_seconds=prepare_seconds,
        hvp_graph_seconds=hvp_graph_seconds,
        hvp_single_seconds=hvp_single_seconds,
        gemm_flops_per_s=_gemm_rate(device, problem.z0.dtype),
        eigh_seconds_per_d3=_eigh_rate(device),
        tangent_points=tangent.points,
        pullback_points=pullback.points,
        hvp_points=hvp.points,
        contention=contention,
        concurrent=concurrent,
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
    the small sizes' fixed overheads, which make a small eigh's rate flatter the large ones
    jobs decompose."""
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
    key: tuple[Any, ...],
    generator: Generator,
    distance: Distance,
    dtype: str,
    threads: int | None = None,
    budget: int | None = None,
) -> Probe:
    """One probe per (model, distance, options, device, dtype, threads) per process."""
    found = _probes.get((*key, threads))
    if found is None:
        found = _probes[(*key, threads)] = probe(
            generator, distance, dtype, threads=threads, budget=budget
        )
    return found
