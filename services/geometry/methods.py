"""Metric tensors H(z0) = ∂²/∂z² D(G(z0), G(z)) at z = z0, and their spectra.

Methods (all evaluate derivatives at exactly z0; D(G(z0), G(z0)) = 0 with zero gradient):

- ``jacobian`` (default): H = 2 Jᵀ W J, J the Jacobian of z ↦ φ(G(z)) from forward-mode
  products (`torch.func.jvp` under `vmap` over basis vectors, in chunks of ``batch``). The
  primal pass runs once per chunk (it also gives G(z0)), the d tangents as one batch: about
  one batched forward. Convolutions and linear layers skip torch's zero weight-tangent term
  (`forward_mode.skip_constant_weight_tangents`).
- ``hvp``: H from batched second-order products of D itself (forward-over-reverse: `jvp` of
  `grad` under `vmap`, in chunks of ``batch``), for distances that are not squared feature
  differences. Exact, like ``jacobian``; slower.
- ``lanczos``: top-k by ARPACK (`scipy.sparse.linalg.eigsh`, implicitly restarted Lanczos)
  over a double-backward HVP (the gradient's graph built once at z0, then `vjp` per
  product), always in float64, seeded start vector (option ``seed``), ``tol`` and
  ``max_iter`` passed through; non-convergence and residuals above √eps·λmax raise
  NotConvergedError, never assumed away.
- ``fd``: H e_i ≈ (∇D(z0 + h e_i) − ∇D(z0 − h e_i)) / (2h) with an absolute step h (option
  ``step``), full H, batched gradients. Correctly scaled (not halved) and fine at z0 = 0.
- ``bp``: the published serial loop — one gradient with a graph, then d double-backward
  passes, one row at a time. The slow, obviously correct reference.

Every spectrum goes through `spectrum_from_metric`: symmetrise, `eigh` in float64, eigenvalues
descending, each eigenvector's largest-|component| made positive, residuals ‖Hv − λv‖ reported.
Nothing here keeps state between calls: converted copies of the generator and distance live
only for the call. The one global torch setting touched is cuDNN's TF32 switch, turned off for
the duration of a call on a CUDA device and restored after it (see `_ieee_float32`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
from torch.func import grad, jvp, vjp, vmap

from .distances import Distance, LayerDistance
from .errors import (
    InvalidLatentError,
    InvalidOptionError,
    NonFiniteOutputError,
    NotConvergedError,
    UnknownMethodError,
)
from .forward_mode import skip_constant_weight_tangents
from .linalg import (
    SpectrumResult,
    check_top_k,
    fixed_signs,
    spectrum_from_metric,
    symmetrised,
)
from .models.generator import Generator
from .registry import CORE_OPTIONS, HESSIAN_METHODS

METHODS = HESSIAN_METHODS
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_BATCH = 128
DEFAULT_LANCZOS_K = 20
# Measured on dcgan-faces: larger steps cross ReLU kinks (1e-4: 2e-4 relative error in float64),
# smaller ones lose digits to rounding.
DEFAULT_STEP = {"float64": 1e-5, "float32": 1e-3}

_OPTIONS = CORE_OPTIONS


# Summary figures that need every eigenvalue (the trace); unknown for a top-k-only method.
TRACE_FIGURES = ("trace", "dims_99", "dims_999", "participation_ratio")


@dataclass
class _Problem:
    """One code's derivative problem, on the computation's device and dtype."""

    generator: Generator
    distance: Distance
    z0: torch.Tensor  # (1, d)
    # G(z0), (1, C, H, W), detached and checked finite. None for `jacobian`, which gets it from
    # its own primal pass instead of rendering it once more.
    reference: torch.Tensor | None

    @property
    def d(self) -> int:
        return self.generator.latent_dim

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.distance.features(self.generator.module(z))

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        assert self.reference is not None, "methods that differentiate D are prepared with G(z0)"
        return self.distance(self.reference, self.generator.module(z)).sum()

    def basis(self, start: int, stop: int) -> torch.Tensor:
        """Unit vectors e_start..e_stop-1 as (stop-start, 1, d)."""
        eye = torch.zeros((stop - start, 1, self.d), dtype=self.z0.dtype, device=self.z0.device)
        eye[torch.arange(stop - start), 0, torch.arange(start, stop)] = 1
        return eye


# --------------------------------------------------------------------------- public API

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def _cudnn_without_tf32(device: torch.device) -> Iterator[None]:
    if device.type != "cuda" or not torch.backends.cudnn.allow_tf32:
        yield
        return
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = True


def _ieee_float32(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a public entry point (generator first) with IEEE float32 convolutions on CUDA.
    torch lets cuDNN use TF32 (10 mantissa bits) by default: on an H200, float32 `jacobian`
    came out 1.4e-4 off `bp` (relative Frobenius; 1.5e-7 on the CPU) and `fd` 0.17 off."""

    @functools.wraps(function)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        generator = args[0] if args else kwargs["generator"]
        assert isinstance(generator, Generator)
        with _cudnn_without_tf32(generator.device):
            return function(*args, **kwargs)

    return wrapped


@_ieee_float32
def compute_spectrum(
    generator: Generator,
    distance: Distance,
    code: np.ndarray,
    *,
    method: str = "jacobian",
    top_k: int | None = None,
    dtype: str = "float32",
    **options: Any,
) -> SpectrumResult:
    """Eigen-decomposition of H at `code` (d,). options: batch (jacobian, hvp, fd), step (fd),
    tol / max_iter / seed (lanczos)."""
    _check_method(method)
    _check_dtype(dtype)
    options = _check_options(method, options, generator.latent_dim, dtype)
    top_k = check_top_k(top_k, generator.latent_dim)
    started = time.perf_counter()
    if method == "lanczos":
        if generator.latent_dim < 3:
            raise InvalidOptionError("lanczos needs d >= 3; use method='jacobian' for tiny latents")
        problem = _prepare(generator, distance, code, "float64")
        result = _lanczos(problem, top_k or min(DEFAULT_LANCZOS_K, problem.d - 1), **options)
    else:
        problem = _prepare(generator, distance, code, dtype, render=method != "jacobian")
        metric, diagnostics = _METRIC_BUILDERS[method](problem, **options)
        result = spectrum_from_metric(metric, top_k=top_k)
        result.diagnostics.update(diagnostics)
        if dtype == "float32":
            result.eigenvectors = result.eigenvectors.astype(np.float32)
        result.diagnostics["dtype"] = dtype
    result.diagnostics.update(
        method=method,
        device=str(problem.z0.device),
        latent_dim=problem.d,
        wall_time_s=time.perf_counter() - started,
    )
    return result


@_ieee_float32
def compute_metric(
    generator: Generator,
    distance: Distance,
    code: np.ndarray,
    *,
    method: str = "jacobian",
    top_k: int | None = None,
    dtype: str = "float32",
    **options: Any,
) -> np.ndarray:
    """The full symmetrised (d, d) metric H as float64 (computed in `dtype`). `top_k` is
    accepted for signature symmetry with compute_spectrum and ignored."""
    _check_method(method)
    _check_dtype(dtype)
    if method == "lanczos":
        raise InvalidOptionError(
            "lanczos gives top-k eigenpairs, not a full metric; use jacobian, hvp, fd or bp"
        )
    options = _check_options(method, options, generator.latent_dim, dtype)
    problem = _prepare(generator, distance, code, dtype, render=method != "jacobian")
    metric, _ = _METRIC_BUILDERS[method](problem, **options)
    return symmetrised(metric)


@_ieee_float32
def metric_columns(
    generator: Generator,
    distance: Distance,
    code: np.ndarray,
    start: int,
    stop: int,
    *,
    dtype: str = "float64",
    batch: int = DEFAULT_BATCH,
) -> np.ndarray:
    """H[:, start:stop] as (d, stop - start) float64, from Jacobian-vector products followed by
    vector-Jacobian products (2 Jᵀ W (J E)), so a worker pays only for its block of columns,
    `batch` tangents at a time (what bounds its memory). Blocks from different workers
    assemble to the same H that `jacobian` computes."""
    _check_dtype(dtype)
    batch = _positive_int("batch", batch)
    d = generator.latent_dim
    for value in (start, stop):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidOptionError(f"column bounds must be integers, got {value!r}")
    if not 0 <= start < stop <= d:
        raise InvalidOptionError(
            f"column block [{start}, {stop}) must satisfy 0 <= start < stop <= d = {d}"
        )
    problem = _prepare(generator, distance, code, dtype, render=False)
    # Each tangent batch's columns go straight into the result: one (d, width) copy held,
    # not a list of batches, their concatenation and its transpose besides.
    result = np.empty((d, stop - start), dtype=np.float64)
    with torch.no_grad():
        pull_back = vjp(problem.features, problem.z0)[1]
        for chunk_start in range(start, stop, batch):
            chunk_stop = min(stop, chunk_start + batch)
            image, pushed = _jacobian_rows(problem, chunk_start, chunk_stop)  # (b, F)
            if chunk_start == start:  # one host sync for the shared primal
                _check_reference(problem.generator, image)
            weights = problem.distance.feature_weights(tuple(image.shape))
            (block,) = vmap(pull_back)((2 * weights * pushed).unsqueeze(1))  # (b, 1, d)
            result[:, chunk_start - start : chunk_stop - start] = (
                block.squeeze(1).T.double().cpu().numpy()
            )
    _require_finite(result, problem)
    return result


# --------------------------------------------------------------------------- validation


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UnknownMethodError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise InvalidOptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _positive_int(name: str, value: Any, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
    return int(value) if upper is None else min(int(value), upper)


def _check_options(method: str, options: dict[str, Any], d: int, dtype: str) -> dict[str, Any]:
    unknown = set(options) - _OPTIONS[method]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[method])) or "none"
        raise InvalidOptionError(
            f"option(s) {', '.join(sorted(unknown))} do not apply to {method}; allowed: {allowed}"
        )
    checked: dict[str, Any] = {}
    if "batch" in _OPTIONS[method]:
        checked["batch"] = _positive_int("batch", options.get("batch", DEFAULT_BATCH), upper=d)
    if method == "fd":
        step = options.get("step", DEFAULT_STEP[dtype])
        if (
            isinstance(step, bool)
            or not isinstance(step, int | float)
            or not math.isfinite(step)
            or step <= 0
        ):
            raise InvalidOptionError(
                f"fd step must be a finite number > 0 (an absolute step in latent units), got {step!r}"
            )
        checked["step"] = float(step)
    if method == "lanczos":
        tol = options.get("tol", 0.0)
        if (
            isinstance(tol, bool)
            or not isinstance(tol, int | float)
            or not math.isfinite(tol)
            or not 0 <= tol < 1
        ):
            raise InvalidOptionError(
                f"lanczos tol must be in [0, 1) (0 = machine precision), got {tol!r}"
            )
        checked["tol"] = float(tol)
        checked["max_iter"] = _positive_int("max_iter", options.get("max_iter", max(1000, 10 * d)))
        seed = options.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InvalidOptionError(f"lanczos seed must be an integer >= 0, got {seed!r}")
        checked["seed"] = int(seed)
    return checked


def _prepare(
    generator: Generator, distance: Distance, code: np.ndarray, dtype: str, *, render: bool = True
) -> _Problem:
    """The problem at `code` in `dtype`; with `render`, G(z0) too (checked finite)."""
    code = generator.validate_codes(code)
    if code.ndim != 1:
        raise InvalidLatentError(
            f"one latent code of shape ({generator.latent_dim},) is needed here, got shape {code.shape}"
        )
    torch_dtype = DTYPES[dtype]
    device = generator.device
    if isinstance(distance, LayerDistance):
        generator = generator.at_layer(distance.layer)  # φ = that layer's activations
    generator = generator.to(device, torch_dtype)
    distance = distance.to(device, torch_dtype)
    z0 = torch.as_tensor(code, dtype=torch_dtype, device=device).reshape(1, -1)
    reference = None
    if render:
        with torch.no_grad():
            reference = generator.module(z0).detach()
        _check_reference(generator, reference)
    return _Problem(generator=generator, distance=distance, z0=z0, reference=reference)


def _check_reference(generator: Generator, image: torch.Tensor) -> None:
    if not torch.isfinite(image).all():
        raise NonFiniteOutputError(
            f"{generator.name} produced NaN/inf at this latent code; no metric can be computed there"
        )


def _require_finite(array: np.ndarray, problem: _Problem) -> None:
    if not np.isfinite(array).all():
        raise NonFiniteOutputError(
            f"derivatives of {problem.distance.name} through {problem.generator.name} are NaN/inf at this code"
        )


# --------------------------------------------------------------------------- full-metric methods


def _jacobian_rows(problem: _Problem, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """G(z0) (1, C, H, W) and the rows e_iᵀ Jᵀ (b, F) for i in [start, stop): forward-mode
    products through the generator, then the features; the primal pass runs once, unbatched."""

    def push_forward(tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, image_tangent = jvp(problem.generator.module, (problem.z0,), (tangent,))[:2]
        return image, jvp(problem.distance.features, (image,), (image_tangent,))[1]

    with skip_constant_weight_tangents():
        # out_dims None: the image does not depend on the tangent (torch's stub omits this form)
        unbatched_image: Any = (None, 0)
        image, rows = vmap(push_forward, out_dims=unbatched_image)(problem.basis(start, stop))
    return image, rows.squeeze(1)


def _jacobian_metric(problem: _Problem, *, batch: int) -> tuple[np.ndarray, dict[str, Any]]:
    with torch.no_grad():
        chunks = []
        for start in range(0, problem.d, batch):
            image, rows = _jacobian_rows(problem, start, min(problem.d, start + batch))
            if start == 0:  # the primal is the same in every chunk: one host sync, not d/batch
                _check_reference(problem.generator, image)
            chunks.append(rows)
        weights = problem.distance.feature_weights(tuple(image.shape))
        rows = chunks[0] if len(chunks) == 1 else torch.cat(chunks)  # cat would copy one chunk
        metric = _weighted_gram(rows, weights)
    result = metric.double().cpu().numpy()
    _require_finite(result, problem)
    return result, {
        "products": problem.d,
        "product": "jvp",
        "batch": batch,
        "features": int(weights.numel()),
    }


def _weighted_gram(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """2 R diag(w) Rᵀ for Jacobian rows R (d, F). Uniform weights (mse) scale the (d, d)
    result instead of R: one pass over the d x F rows fewer."""
    if bool((weights == weights[0]).all()):
        return (rows @ rows.T) * (2 * weights[0])
    return (rows * (2 * weights)) @ rows.T


def _hvp_function(problem: _Problem) -> Callable[[torch.Tensor], torch.Tensor]:
    """V (b, d) -> (H V)ᵀ rows (b, d): the gradient's graph is built once at z0, then
    double-backward products run batched."""
    pull_back = vjp(grad(problem.loss), problem.z0)[1]

    def apply(vectors: torch.Tensor) -> torch.Tensor:
        products: torch.Tensor
        (products,) = vmap(pull_back)(vectors.unsqueeze(1))
        return products.squeeze(1)

    return apply


def _hvp_metric(problem: _Problem, *, batch: int) -> tuple[np.ndarray, dict[str, Any]]:
    # Batched, forward-over-reverse (jvp of the gradient): faster (bench/bench_geometry.py)
    # than vmap over the reverse-over-reverse product that Lanczos uses one vector at a time.
    def product(tangent: torch.Tensor) -> torch.Tensor:
        tangent_out: torch.Tensor = jvp(grad(problem.loss), (problem.z0,), (tangent,))[1]
        return tangent_out

    rows = [
        vmap(product)(problem.basis(s, min(problem.d, s + batch))).squeeze(1)
        for s in range(0, problem.d, batch)
    ]
    result = torch.cat(rows).detach().double().cpu().numpy()
    _require_finite(result, problem)
    return result, {"products": problem.d, "product": "hvp (forward-over-reverse)", "batch": batch}


def _fd_metric(problem: _Problem, *, step: float, batch: int) -> tuple[np.ndarray, dict[str, Any]]:
    gradient = vmap(grad(problem.loss))
    rows = []
    for start in range(0, problem.d, batch):
        offsets = step * problem.basis(start, min(problem.d, start + batch))
        both = gradient(torch.cat([problem.z0 + offsets, problem.z0 - offsets]))
        plus, minus = both.chunk(2)
        rows.append(((plus - minus) / (2 * step)).squeeze(1))
    result = torch.cat(rows).detach().double().cpu().numpy()
    _require_finite(result, problem)
    return result, {"products": 2 * problem.d, "product": "gradient", "batch": batch, "step": step}


def _bp_metric(problem: _Problem) -> tuple[np.ndarray, dict[str, Any]]:
    with torch.enable_grad():
        z = problem.z0.clone().requires_grad_(True)
        value = problem.loss(z)
        (gradient,) = torch.autograd.grad(value, z, create_graph=True)
        gradient = gradient.flatten()
        rows = [
            torch.autograd.grad(gradient[i], z, retain_graph=True)[0].flatten()
            for i in range(problem.d)
        ]
    result = torch.stack(rows).detach().double().cpu().numpy()
    _require_finite(result, problem)
    return result, {"products": problem.d, "product": "double backward (serial)"}


_METRIC_BUILDERS: dict[str, Callable[..., tuple[np.ndarray, dict[str, Any]]]] = {
    "jacobian": _jacobian_metric,
    "hvp": _hvp_metric,
    "fd": _fd_metric,
    "bp": _bp_metric,
}


# --------------------------------------------------------------------------- Lanczos


def _lanczos(
    problem: _Problem, top_k: int, *, tol: float, max_iter: int, seed: int
) -> SpectrumResult:
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    apply = _hvp_function(problem)
    counter = {"products": 0}

    def matvec(vector: np.ndarray) -> np.ndarray:
        counter["products"] += 1
        tangent = torch.as_tensor(
            np.ascontiguousarray(vector).reshape(1, -1), device=problem.z0.device
        )
        out = apply(tangent.to(problem.z0.dtype)).detach().double().cpu().numpy().reshape(-1)
        if not np.isfinite(out).all():
            _require_finite(out, problem)
        return out

    operator = LinearOperator((problem.d, problem.d), matvec=matvec, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(problem.d)
    try:
        values, vectors = eigsh(operator, k=top_k, which="LA", v0=start, tol=tol, maxiter=max_iter)
    except ArpackNoConvergence as error:
        raise NotConvergedError(
            f"Lanczos found {len(error.eigenvalues)} of {top_k} eigenpairs within max_iter={max_iter} "
            f"({counter['products']} products); raise max_iter, loosen tol, or use method='jacobian'"
        ) from None
    order = np.argsort(values)[::-1]
    values, vectors = values[order], fixed_signs(vectors[:, order])
    # Residuals against the operator itself: a check of the answer, not ARPACK's word for it.
    applied = (
        apply(torch.as_tensor(vectors.T.copy(), device=problem.z0.device))
        .detach()
        .double()
        .cpu()
        .numpy()
        .T
    )
    residuals = np.linalg.norm(applied - vectors * values, axis=0)
    scale = max(abs(float(values[0])), np.finfo(np.float64).tiny)
    relative = float(residuals.max() / scale)
    limit = max(tol, math.sqrt(np.finfo(np.float64).eps))
    if relative > limit:
        raise NotConvergedError(
            f"Lanczos eigenpairs have relative residual {relative:.2e} > {limit:.1e}; "
            "raise max_iter, or use method='jacobian'"
        )
    return SpectrumResult(
        eigenvalues=np.ascontiguousarray(values),
        eigenvectors=np.ascontiguousarray(vectors),
        diagnostics={
            "products": counter["products"],
            "residual_products": top_k,
            "product": "hvp (double backward)",
            "residual_max": float(residuals.max()),
            "residual_max_relative": relative,
            "converged": True,
            "dtype": "float64",
            "tol": tol,
            "max_iter": max_iter,
            "seed": seed,
            "top_k": top_k,
        },
        summary={**dict.fromkeys(TRACE_FIGURES), "top_eigenvalue": float(values[0])},
    )
