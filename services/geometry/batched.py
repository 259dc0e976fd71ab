"""`jacobian` for several codes in one vectorised pass, and a float64 `eigh` on the device.

The per-code route (methods.compute_spectrum) pays per call for the primal pass, for the
Python loop over tangent chunks and for moving H to the host for `eigh`. On a GPU those fixed
costs are most of the time at dcgan-faces sizes. Here the codes ride along in the batch
dimension of one primal pass, every chunk of tangents covers all codes at once, finiteness is
accumulated on the device (no host synchronisation per chunk), and the Gram matrices and
their float64 eigen-decompositions run batched where the rows are. The host sees the results
once, at the end. On the CPU the same code runs (and is what the CPU tests check); it is the
route the worker takes on CUDA.

Codes are independent only for generators without cross-batch coupling (eval-mode BatchNorm,
no minibatch statistics), which every loader here guarantees (eval mode, frozen).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch.func import jvp, vmap

from .distances import Distance
from .errors import GeometryError, NonFiniteOutputError
from .forward_mode import skip_constant_weight_tangents
from .linalg import SpectrumResult, check_top_k, spectrum_from_metric, summary_of
from .methods import DEFAULT_BATCH, DTYPES, _check_dtype, _cudnn_without_tf32, _positive_int
from .models.generator import Generator


def jacobian_spectra(
    generator: Generator,
    distance: Distance,
    codes: np.ndarray,
    *,
    top_k: int | None = None,
    dtype: str = "float32",
    batch: int = DEFAULT_BATCH,
) -> list[SpectrumResult | GeometryError]:
    """The `jacobian` spectrum of each code (n, d), in order; a code whose image or metric is
    not finite gives a NonFiniteOutputError in its place (the others are unaffected).
    `batch` is tangent images per pass, shared between the codes."""
    _check_dtype(dtype)
    codes = generator.validate_codes(np.atleast_2d(codes))
    n, d = codes.shape
    top_k = check_top_k(top_k, d)
    batch = _positive_int("batch", batch)
    started = time.perf_counter()
    torch_dtype = DTYPES[dtype]
    device = generator.device
    generator = generator.to(device, torch_dtype)
    distance = distance.to(device, torch_dtype)
    z0 = torch.as_tensor(codes, dtype=torch_dtype, device=device)
    with _cudnn_without_tf32(device), torch.no_grad():
        metrics, finite = _metrics(generator, distance, z0, max(1, batch // n))
        values, vectors, residuals = _decompose(metrics, top_k)
    # The one transfer to the host.
    values_np = values.cpu().numpy()
    vectors_np = vectors.cpu().numpy()
    residuals_np = residuals.cpu().numpy()
    finite_np = finite.cpu().numpy()
    elapsed = time.perf_counter() - started
    results: list[SpectrumResult | GeometryError] = []
    for i in range(n):
        if not finite_np[i]:
            results.append(
                NonFiniteOutputError(
                    f"{generator.name} gave NaN/inf images or derivatives at code {i} of the batch"
                )
            )
            continue
        all_values = values_np[i]
        kept = all_values if top_k is None else all_values[:top_k]
        scale = max(abs(float(kept[0])), np.finfo(np.float64).tiny)
        result = SpectrumResult(
            eigenvalues=np.ascontiguousarray(kept),
            eigenvectors=np.ascontiguousarray(
                vectors_np[i].astype(np.float32) if dtype == "float32" else vectors_np[i]
            ),
            diagnostics={
                "products": d,
                "product": "jvp (codes batched)",
                "batch": batch,
                "codes_in_pass": n,
                "residual_max": float(residuals_np[i].max()),
                "residual_max_relative": float(residuals_np[i].max() / scale),
                "min_eigenvalue_relative": float(all_values[-1]) / scale,
                "converged": True,
                "dtype": dtype,
                "method": "jacobian",
                "device": str(device),
                "latent_dim": d,
                # The pass is shared: each code is charged its share of the wall time.
                "wall_time_s": elapsed / n,
            },
            summary=summary_of(all_values),
        )
        if top_k is not None:
            result.diagnostics["eigenvalues_all"] = all_values.tolist()
        results.append(result)
    return results


def _metrics(
    generator: Generator, distance: Distance, z0: torch.Tensor, tangents_per_pass: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """H of every code (n, d, d) in the computation dtype, and per-code finiteness (n,)."""
    n, d = z0.shape

    def push_forward(tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, image_tangent = jvp(generator.module, (z0,), (tangent,))[:2]
        return image, jvp(distance.features, (image,), (image_tangent,))[1]

    rows: torch.Tensor | None = None
    finite = torch.ones(n, dtype=torch.bool, device=z0.device)
    image: torch.Tensor | None = None
    unbatched_image: Any = (None, 0)
    with skip_constant_weight_tangents():
        for start in range(0, d, tangents_per_pass):
            stop = min(d, start + tangents_per_pass)
            basis = torch.zeros((stop - start, n, d), dtype=z0.dtype, device=z0.device)
            basis[torch.arange(stop - start), :, torch.arange(start, stop)] = 1
            image, pushed = vmap(push_forward, out_dims=unbatched_image)(basis)  # (b, n, F)
            if rows is None:
                rows = torch.empty((n, d, pushed.shape[-1]), dtype=z0.dtype, device=z0.device)
            rows[:, start:stop] = pushed.transpose(0, 1)
            if start == 0:
                finite &= torch.isfinite(image).flatten(1).all(1)
    assert rows is not None and image is not None
    weights = distance.feature_weights(tuple(image.shape))
    metrics = torch.bmm(rows * (2 * weights), rows.transpose(1, 2))
    finite &= torch.isfinite(metrics).flatten(1).all(1)
    return metrics, finite


def _decompose(
    metrics: torch.Tensor, top_k: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched float64 eigh on the metrics' device: every eigenvalue (n, d) descending, the
    kept eigenvectors (n, d, k) with deterministic signs, and their residuals (n, k)."""
    symmetric = metrics.double()
    symmetric = (symmetric + symmetric.transpose(1, 2)) / 2
    # A non-finite metric would make eigh raise for the whole batch: those codes are marked
    # and decomposed as zeros instead.
    bad = ~torch.isfinite(symmetric).flatten(1).all(1)
    symmetric = torch.where(bad[:, None, None], torch.zeros_like(symmetric), symmetric)
    values, vectors = torch.linalg.eigh(symmetric)
    values, vectors = values.flip(-1), vectors.flip(-1)
    if top_k is not None:
        vectors = vectors[..., :top_k]
    kept_values = values[..., : vectors.shape[-1]]
    rows = vectors.abs().argmax(dim=1, keepdim=True)  # (n, 1, k)
    signs = torch.sign(torch.gather(vectors, 1, rows))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    vectors = vectors * signs
    residuals = torch.linalg.vector_norm(
        symmetric @ vectors - vectors * kept_values[:, None, :], dim=1
    )
    return values, vectors, residuals


def spectrum_on_device(
    metric: np.ndarray, *, top_k: int | None, device: str | torch.device
) -> SpectrumResult:
    """The spectrum of one assembled metric (d, d) with `eigh` in float64 on `device`: the
    decomposition of a column-block Hessian on a GPU worker. Same conventions as
    methods.spectrum_from_metric (which the CPU uses)."""
    torch_device = torch.device(device)
    if torch_device.type == "cpu":
        return spectrum_from_metric(metric, top_k=top_k)
    matrix = np.asarray(metric, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise NonFiniteOutputError(
            "the metric holds NaN/inf; the generator or distance is not finite here"
        )
    d = matrix.shape[0]
    top_k = check_top_k(top_k, d)
    started = time.perf_counter()
    on_device = torch.as_tensor(matrix, device=torch_device)[None]
    values, vectors, residuals = _decompose(on_device, top_k)
    values_np, vectors_np = values[0].cpu().numpy(), vectors[0].cpu().numpy()
    residual_max = float(residuals.max().item())
    kept = values_np if top_k is None else values_np[:top_k]
    scale = max(abs(float(kept[0])), np.finfo(np.float64).tiny)
    diagnostics: dict[str, Any] = {
        "eigh_time_s": time.perf_counter() - started,
        "eigh_device": str(torch_device),
        "residual_max": residual_max,
        "residual_max_relative": residual_max / scale,
        "min_eigenvalue_relative": float(values_np[-1]) / scale,
        "converged": True,
        "dtype": "float64",
    }
    if top_k is not None:
        diagnostics["eigenvalues_all"] = values_np.tolist()
    return SpectrumResult(
        eigenvalues=np.ascontiguousarray(kept),
        eigenvectors=np.ascontiguousarray(vectors_np),
        diagnostics=diagnostics,
        summary=summary_of(values_np),
    )
