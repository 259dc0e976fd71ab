"""The cost model of a job before it is accepted: per code, the products, the peak memory of
one tangent batch, the time and the stored bytes, and the tangent batch that fits a worker.

Pure arithmetic over a `Probe` (what services/pipeline/probe.py measured of a model) and the
job's counts: no torch, no I/O. The linear algebra after the products (the Gram matrix,
`eigh`, ARPACK's basis) is counted from its shapes. A job whose smallest tangent batch still
exceeds the worker's memory budget is refused, naming what to change. Below the probe's
threshold a job is planned from counts alone, with the coarse per-method table below: the one
cost table of the service (chunk sizes are chosen from it too).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

GIB = 1024**3
# What a CPU worker holds before any model: the interpreter, torch's libraries, the store's
# driver, Celery (the peak resident set of an idle `spectra worker` child).
CPU_RUNTIME_BYTES = 450 * 1024**2
# Tangent batches are powers of two (stable across probes, so the spec hash is too).
MAX_TANGENT_BATCH = 1024
# Float64 copies of a d x d matrix alive at once while it is decomposed: the metric, its
# symmetrised copy, eigh's vectors and workspace, the residual products.
EIGH_SQUARE_COPIES = 5
# ARPACK's products for the top k of a smooth, decaying spectrum, in bases of ncv = 2k + 1
# vectors: one basis and a few restarts' worth (flatter spectra restart more: the bench's
# measured products per code, bench/bench_scale.py, keep this in check). The k residual
# products that check convergence come on top.
LANCZOS_PRODUCTS_PER_NCV = 1.15
# Lanczos's top k when a job asks for none (services.geometry.methods.DEFAULT_LANCZOS_K).
DEFAULT_LANCZOS_K = 20

# The coarse, count-only cost model: seconds per code of dcgan-faces (d = 100) with squared
# error on a two-core CPU (bench/bench_pipeline.py); other dimensions scale as d² (d products
# of a cost that itself grows with the model), a GPU taken as GPU_SPEEDUP times faster.
SECONDS_PER_CODE_AT_D100 = {"jacobian": 0.25, "hvp": 0.3, "lanczos": 0.5, "fd": 0.5, "bp": 1.1}
GPU_SPEEDUP = 20.0


def coarse_seconds_per_code(method: str, latent_dim: int, device: str) -> float:
    """The count-only time of one code: what plans a small latent and sizes chunks."""
    per_code = SECONDS_PER_CODE_AT_D100.get(method, 1.0) * (latent_dim / 100.0) ** 2
    return per_code / GPU_SPEEDUP if device.startswith("cuda") else per_code


@dataclass(frozen=True)
class Linear:
    """cost(b) = fixed + per_item * b, fitted between two probe batch sizes."""

    fixed: float
    per_item: float

    def at(self, batch: int) -> float:
        return max(0.0, self.fixed) + self.per_item * batch


# (tangent batch, bytes it added, seconds it took): one measured batch of one product kind.
Point = tuple[int, int, float]
PRODUCT_KINDS = ("tangent", "pullback", "hvp")


@dataclass(frozen=True)
class Probe:
    """Measured costs of one generator and distance on one device and dtype (or, with
    `floor`, a lower bound of its memory from the architecture's shapes and no times)."""

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
    # The batches the probe measured, per product kind: the tangent batch is chosen among
    # them for time (beyond the largest, no faster per tangent than it is assumed).
    tangent_points: tuple[Point, ...] = ()
    pullback_points: tuple[Point, ...] = ()
    hvp_points: tuple[Point, ...] = ()
    # How much slower a product runs while `concurrent` workers compute at once on this
    # host (they share its cores' caches and memory bandwidth) than alone: times scale by it.
    contention: float = 1.0
    concurrent: int = 1
    floor: bool = False  # counts only: memory a lower bound, no times

    def seconds(self, kind: str, batch: int) -> float:
        """One batch of `kind` products: the measured figure at a measured batch, linear
        between two measured batches, the fitted line below the smallest and the largest's
        rate per tangent above it (larger batches were not seen to be faster)."""
        points: list[Point] = sorted(getattr(self, f"{kind}_points"))
        line: Linear = getattr(self, f"{kind}_seconds")
        if not points or batch <= points[0][0]:
            return line.at(batch)
        for (b1, _, s1), (b2, _, s2) in zip(points, points[1:], strict=False):
            if b1 <= batch <= b2:
                return s1 + (s2 - s1) * (batch - b1) / (b2 - b1)
        last_batch, _, last_seconds = points[-1]
        return batch * last_seconds / last_batch

    def to_document(self) -> dict[str, Any]:
        """The JSON a profile stores."""
        return asdict(self)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Probe:
        values = dict(document)
        for kind in PRODUCT_KINDS:
            for cost in ("bytes", "seconds"):
                values[f"{kind}_{cost}"] = Linear(**values[f"{kind}_{cost}"])
            values[f"{kind}_points"] = tuple(
                (int(b), int(m), float(t)) for b, m, t in values.get(f"{kind}_points", ())
            )
        return cls(**values)


@dataclass(frozen=True)
class Counts:
    """What the architecture's shapes say with no computation (a meta-device pass): the
    sizes of its weights, of its output features and of its activations, in elements."""

    latent_dim: int
    features: int
    parameters: int  # weights and buffers of the generator and the distance
    largest_activation: int  # the largest output of any one module for one code
    activations: int  # every module's output for one code, summed


def floor_probe(counts: Counts, itemsize: int) -> Probe:
    """A lower bound of every memory cost from counts: each tangent of a batch carries at
    least the largest activation, and a Jacobian row the features. No times (zero)."""
    per_tangent = float(counts.largest_activation * itemsize)
    zero = Linear(0.0, 0.0)
    return Probe(
        latent_dim=counts.latent_dim,
        features=counts.features,
        itemsize=itemsize,
        parameter_bytes=counts.parameters * itemsize,
        tangent_bytes=Linear(0.0, per_tangent),
        tangent_seconds=zero,
        pullback_bytes=Linear(0.0, per_tangent),
        pullback_seconds=zero,
        hvp_bytes=Linear(0.0, per_tangent),
        hvp_seconds=zero,
        prepare_seconds=0.0,
        hvp_graph_seconds=0.0,
        hvp_single_seconds=0.0,
        gemm_flops_per_s=math.inf,
        eigh_seconds_per_d3=0.0,
        floor=True,
    )


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
    # Which stored profile the plan read and when it was measured (None: counts only).
    profile: dict[str, Any] | None = None
    from_counts_floor: bool = False  # refused from the architecture's counts, no probe

    def as_dict(self) -> dict[str, Any]:
        n = self.n_latents
        return {
            "per_code": self.per_code.as_dict(),
            "n_latents": n,
            "chunks": self.chunks,
            "device": self.device,
            "probed": self.probed,
            "profile": self.profile,
            "worker_budget_bytes": self.budget_bytes,
            "fits": self.fits,
            "total_seconds": self.per_code.seconds * n,
            "total_stored_bytes": self.per_code.stored_bytes * n,
            "total_products": self.per_code.products * n,
        }


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
    on_cpu = not device.startswith(("cuda", "mps", "xpu"))
    return (CPU_RUNTIME_BYTES if on_cpu else 0) + probe.parameter_bytes


def estimate_code(probe: Probe, request: Request, device: str, batch: int) -> CodeEstimate:
    """One code's costs with tangent batch `batch`, its time as it runs beside the host's
    other workers (the probe's contention factor)."""
    alone = _estimate_alone(probe, request, device, batch)
    return replace(alone, seconds=alone.seconds * probe.contention)


def _estimate_alone(probe: Probe, request: Request, device: str, batch: int) -> CodeEstimate:
    """One code's costs with tangent batch `batch` on an otherwise idle host. A probe in
    another dtype than the computation's (lanczos is float64 always) is scaled by the item
    sizes."""
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
        k = request.top_k or min(DEFAULT_LANCZOS_K, d - 1)
        ncv = min(d, max(2 * k + 1, 20))
        products = min(d * 10, math.ceil(LANCZOS_PRODUCTS_PER_NCV * ncv))
        # One product at a time, then the k residual products as one batch: the larger.
        working = int(max(probe.hvp_bytes.at(1), probe.hvp_bytes.at(k)))
        peak = base + working + 3 * d * ncv * 8
        # The gradient's graph is built once per code, then each product is one single-vector
        # double-backward pass. The k residual checks run as one batch: its measured cost
        # where the probe timed batches that small or smaller, else k single products (the
        # fitted line is unreliable below its smallest batch).
        measured_batch = bool(probe.hvp_points) and min(b for b, _, _ in probe.hvp_points) <= k
        residuals = probe.seconds("hvp", k) if measured_batch else k * probe.hvp_single_seconds
        seconds = (
            probe.prepare_seconds
            + probe.hvp_graph_seconds
            + products * probe.hvp_single_seconds
            + residuals
        )
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
            + per_block * (probe.seconds("tangent", batch) + probe.seconds("pullback", batch))
        )
        return CodeEstimate(
            "column blocks",
            2 * d,
            batch,
            math.ceil(d / width) * per_block,
            max(block_peak, assemble_peak),
            tangent,
            seconds + eigh_seconds,
            stored + square,  # the blocks stay stored beside the spectrum
        )
    if request.method == "jacobian":
        tangent = int(probe.tangent_bytes.at(batch))
        rows = d * features * item
        product_peak = base + rows + tangent
        gram_peak = base + rows + d * d * item + square
        decompose_peak = base + EIGH_SQUARE_COPIES * square
        seconds = (
            probe.prepare_seconds
            + batches * probe.seconds("tangent", batch)
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
        probe.prepare_seconds
        + math.ceil(products / step) * probe.seconds("hvp", step)
        + eigh_seconds
    )
    return CodeEstimate(
        request.method,
        products,
        None if serial else step,
        math.ceil(products / step),
        peak,
        tangent,
        seconds,
        stored,
    )


def _rescaled(probe: Probe, factor: float) -> Probe:
    """The probe's byte and second costs as if measured in an item size `factor` times its
    own (float32 <-> float64: memory scales exactly, CPU time about as much)."""

    def scaled(cost: Linear) -> Linear:
        return Linear(cost.fixed * factor, cost.per_item * factor)

    def points(measured: tuple[Point, ...]) -> tuple[Point, ...]:
        return tuple((b, int(m * factor), t * factor) for b, m, t in measured)

    return Probe(
        latent_dim=probe.latent_dim,
        features=probe.features,
        itemsize=int(probe.itemsize * factor),
        parameter_bytes=int(probe.parameter_bytes * factor),
        tangent_bytes=scaled(probe.tangent_bytes),
        tangent_seconds=scaled(probe.tangent_seconds),
        pullback_bytes=scaled(probe.pullback_bytes),
        pullback_seconds=scaled(probe.pullback_seconds),
        hvp_bytes=scaled(probe.hvp_bytes),
        hvp_seconds=scaled(probe.hvp_seconds),
        prepare_seconds=probe.prepare_seconds * factor,
        hvp_graph_seconds=probe.hvp_graph_seconds * factor,
        hvp_single_seconds=probe.hvp_single_seconds * factor,
        gemm_flops_per_s=probe.gemm_flops_per_s / factor,
        eigh_seconds_per_d3=probe.eigh_seconds_per_d3,
        tangent_points=points(probe.tangent_points),
        pullback_points=points(probe.pullback_points),
        hvp_points=points(probe.hvp_points),
        contention=probe.contention,
        concurrent=probe.concurrent,
        floor=probe.floor,
    )


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
    """The fastest tangent batch whose code fits `budget` (of equally fast ones the smallest;
    the asked batch, if one was asked), and whether any fits; when none does, the smallest
    batch's estimate."""
    candidates = _batch_candidates(probe.latent_dim, request.batch)
    estimates = [estimate_code(probe, request, device, batch) for batch in candidates]
    fitting = [e for e in estimates if e.peak_bytes is not None and e.peak_bytes <= budget]
    if not fitting:
        return estimates[-1], False
    return min(fitting, key=lambda e: (round(e.seconds, 9), e.tangent_batch or 0)), True


def alternatives(probe: Probe, request: Request, device: str, budget: int) -> list[str]:
    """What to change so that a job that fits no worker fits one, as spec edits."""
    d = probe.latent_dim
    tried: list[tuple[str, Request]] = []
    if request.batch is not None:
        tried.append(
            ("leave out batch (the planner picks one that fits)", _replace(request, batch=None))
        )
    if request.method == "jacobian" and request.block_columns is None:
        for width in (d // 2, d // 4, d // 8, d // 16):
            if width >= 1:
                tried.append((f"block_columns={width}", _replace(request, block_columns=width)))
    if request.method != "lanczos" and d >= 3:
        k = min(request.top_k or DEFAULT_LANCZOS_K, d - 1)
        tried.append(
            (
                f"method='lanczos' with top_k={k}",
                _replace(request, method="lanczos", top_k=k, block_columns=None),
            )
        )
    if request.dtype == "float64" and request.method != "lanczos":
        tried.append(("dtype='float32'", _replace(request, dtype="float32")))
    advice = []
    for text, candidate in tried:
        estimate, fits = fitting_estimate(probe, candidate, device, budget)
        if fits and estimate.peak_bytes is not None:
            size = describe_bytes(estimate.peak_bytes)
            advice.append(f"{text} ({'at least' if probe.floor else 'about'} {size} per code)")
    return advice


def _replace(request: Request, **changes: Any) -> Request:
    return Request(**{**asdict(request), **changes})


def describe_bytes(value: float) -> str:
    if value >= GIB / 10:
        return f"{value / GIB:.2f} GiB"
    return f"{value / 1024**2:.1f} MiB" if value >= 1024**2 / 10 else f"{value / 1024:.1f} KiB"


def unprobed_estimate(request: Request, d: int, seconds: float) -> CodeEstimate:
    """Counts that need no probe (products, stored bytes); time from the coarse cost model."""
    k = request.top_k or (min(DEFAULT_LANCZOS_K, d - 1) if request.method == "lanczos" else d)
    stored = d * k * (8 if request.vector_dtype == "float64" else 4) + 16 * d
    products = 2 * d if request.method == "fd" else d
    return CodeEstimate(request.method, products, request.batch, 0, None, None, seconds, stored)


@dataclass(frozen=True)
class JobCounts:
    """A job's counts and the worker it is planned for."""

    n_latents: int
    chunks: int
    device: str
    budget: int


def plan_from_counts(request: Request, latent_dim: int, job: JobCounts) -> JobEstimate:
    """A small latent's plan from counts alone (every tangent batch of it fits any worker),
    its time from the coarse cost model."""
    seconds = coarse_seconds_per_code(request.method, latent_dim, job.device)
    per_code = unprobed_estimate(request, latent_dim, seconds)
    return JobEstimate(per_code, job.n_latents, job.chunks, job.budget, job.device, True, False)


def plan_from_floor(
    counts: Counts, request: Request, job: JobCounts
) -> tuple[JobEstimate, list[str]]:
    """Whether the job can fit at all, from the architecture's counts (no probe): `fits`
    False means even the lower bound of its memory exceeds the budget at every tangent batch;
    then the advice names what would fit by the same bound."""
    item = 8 if request.method == "lanczos" or request.dtype == "float64" else 4
    floor = floor_probe(counts, item)
    per_code, fits = fitting_estimate(floor, request, job.device, job.budget)
    advice = [] if fits else alternatives(floor, request, job.device, job.budget)
    estimate = JobEstimate(
        per_code,
        job.n_latents,
        job.chunks,
        job.budget,
        job.device,
        fits,
        False,
        from_counts_floor=True,
    )
    return estimate, advice


def plan_from_probe(
    probe: Probe, request: Request, job: JobCounts, profile: dict[str, Any] | None = None
) -> tuple[JobEstimate, list[str]]:
    """The job's estimate from a measured profile and, when it fits no worker, what to
    change. `profile` names the stored profile (id, when it was measured)."""
    per_code, fits = fitting_estimate(probe, request, job.device, job.budget)
    advice = [] if fits else alternatives(probe, request, job.device, job.budget)
    estimate = JobEstimate(
        per_code, job.n_latents, job.chunks, job.budget, job.device, fits, True, profile
    )
    return estimate, advice


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
    about = "at least (from the architecture's counts)" if estimate.from_counts_floor else "about"
    return (
        f"one code needs {about} {describe_bytes(per_code.peak_bytes)} by the {per_code.route} "
        f"route{batch}, more than a worker's {describe_bytes(estimate.budget_bytes)} "
        f"(SPECTRA_WORKER_MEMORY_GB){change}"
    )
