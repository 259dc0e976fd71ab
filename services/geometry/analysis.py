"""Analyses of sets of spectra, vectorised over positions (no Python loops over pairs).

Inputs are stacked arrays: eigenvalues (N, k), descending per row; eigenvectors (N, d, k), the
k columns matching the eigenvalues. Results hold numpy arrays for per-rank / per-position /
pairwise quantities and plain floats / ints for scalars (call ``.tolist()`` for JSON);
`summary_of` returns plain numbers only.

Homogeneity follows the published definition (Wang & Ponce 2021) so figures stay comparable:
for positions i, j, a_ij[k] = u_ikᵀ H_j u_ik with H_j = U_j Λ_j U_jᵀ (from the eigenpairs
given, i.e. Σ_m λ_jm (u_ik·u_jm)²), and the matrix entry is the Pearson correlation over ranks
k of log10 a_ij[k] with log10 λ_jk (log scale) or of a_ij[k] with λ_jk (linear scale).

Eigenvalues ≤ 0 (float round-off at the bottom of a spectrum) have no logarithm. The published
rule (GAN-Geometry's compute_hess_corr: log10 turns them into NaN/−inf and the masked
correlation leaves those ranks out, pair by pair) is the default, ``log_rule="published"``;
``"abs"`` (log10 |x|, exact zeros floored at the dtype's smallest normal number: this
service's earlier rule) keeps them as outliers and can differ a lot (0.716 against 0.880 on
one set of imported files). Rows with constant values give NaN (undefined correlation), which
the off-diagonal statistics skip.

Dimensions to reach a share of the trace: ours is the first rank whose cumulative share
reaches the level, per position. GAN-Geometry counts the ranks whose cumulative share is still
below it (one fewer), and the paper reports that count on the mean spectrum: `anisotropy`
gives that statistic too, labelled as the published one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InvalidOptionError
from .linalg import dims_to_reach, participation_ratio, spectra
from .statistics import (
    bootstrap_offdiagonal,
    position_statistics,
    random_subspace_baseline,
    top_share,
)
from .streaming import AverageMetric

TRACE_LEVELS = {"dims_99": 0.99, "dims_999": 0.999, "dims_9999": 0.9999, "dims_99999": 0.99999}
LOG_RULES = {
    "published": "log10; eigenvalues and quotients <= 0 left out of that pair's correlation "
    "(GAN-Geometry compute_hess_corr)",
    "abs": "log10 |x|, exact zeros floored at the dtype's smallest normal number",
}
DIMS_CONVENTION = (
    "dims_*: per position, the first rank whose cumulative share of the trace reaches the level; "
    "GAN-Geometry counts the ranks still below the level (one fewer)"
)
PUBLISHED_DIMS_CONVENTION = (
    "the paper's statistic: on the mean spectrum (rank-wise mean over positions), the number "
    "of ranks whose cumulative share of the trace is still below the level (GAN-Geometry)"
)
TOP_SHARE_RANK = 10  # "share of the trace in the top 10", the published anisotropy figure
_BLOCK_ELEMENTS = 64 * 1024 * 1024  # bounds the homogeneity work arrays to ~256 MB (float32)


def _vectors(eigenvectors: Any, values: np.ndarray) -> np.ndarray:
    vectors = np.asarray(eigenvectors)
    if vectors.ndim == 2:
        vectors = vectors[None]
    n, k = values.shape
    if vectors.ndim != 3 or vectors.shape[0] != n or vectors.shape[2] != k:
        raise InvalidOptionError(
            f"eigenvectors must be (N, d, k) = ({n}, d, {k}), got shape {vectors.shape}"
        )
    if not np.isfinite(vectors).all():
        raise InvalidOptionError("eigenvectors hold NaN/inf")
    return vectors


def anisotropy(eigenvalues: np.ndarray, *, latent_dim: int | None = None) -> dict[str, Any]:
    """Per-rank mean / median / 5th / 95th percentile over positions, dimensions to reach
    99 / 99.9 / 99.99 / 99.999 % of the trace, participation ratio and the share of the trace
    in the top 10 (per position, and mean). ``statistics`` holds, for each per-position figure,
    its mean, median and bootstrap 95 % interval of the mean (seeded, resampling positions).

    With `latent_dim` larger than the number of eigenvalues given (spectra kept as top k of
    d), the trace-based figures would describe the top k only: they are None instead."""
    values = spectra(eigenvalues)
    result: dict[str, Any] = {
        "n_positions": int(values.shape[0]),
        "rank": int(values.shape[1]),
        "mean": values.mean(axis=0),
        "median": np.median(values, axis=0),
        "p5": np.percentile(values, 5, axis=0),
        "p95": np.percentile(values, 95, axis=0),
    }
    for key, level in TRACE_LEVELS.items():
        dims = dims_to_reach(values, level)
        result[key] = dims
        result[f"{key}_mean"] = float(dims.mean())
    ratio = participation_ratio(values)
    result["participation_ratio"] = ratio
    result["participation_ratio_mean"] = float(ratio.mean())
    shares = top_share(values, TOP_SHARE_RANK)
    result["top10_share"] = shares
    result["top10_share_mean"] = float(np.nanmean(shares)) if np.isfinite(shares).any() else None
    result["dims_convention"] = DIMS_CONVENTION
    result["published_dims_on_mean_spectrum"] = published_dims_on_mean_spectrum(values)
    trace_based = (*TRACE_LEVELS, "participation_ratio", "top10_share")
    if latent_dim is not None and values.shape[1] < latent_dim:
        for key in trace_based:
            result[key] = result[f"{key}_mean"] = None
        result["published_dims_on_mean_spectrum"] = None
    result["statistics"] = _position_statistics(values, result, trace_based)
    return result


def published_dims_on_mean_spectrum(eigenvalues: np.ndarray) -> dict[str, Any]:
    """The paper's dimension counts: on the mean spectrum, the ranks whose cumulative share of
    the trace is still below each level (GAN-Geometry's convention), labelled as such."""
    mean = spectra(eigenvalues).mean(axis=0)
    total = mean.sum()
    counts: dict[str, Any] = {"convention": PUBLISHED_DIMS_CONVENTION}
    for key, level in TRACE_LEVELS.items():
        counts[key] = int((np.cumsum(mean) / total < level).sum()) if total > 0 else None
    return counts


def _position_statistics(
    values: np.ndarray, result: dict[str, Any], trace_based: tuple[str, ...]
) -> dict[str, Any]:
    per_position = {"top_eigenvalue": values[:, 0]}
    per_position.update({key: result[key] for key in trace_based if result[key] is not None})
    return {key: position_statistics(array) for key, array in per_position.items()}


def homogeneity(
    eigenvalues: np.ndarray,
    eigenvectors: np.ndarray,
    *,
    dtype: str = "float64",
    device: str = "cpu",
    log_rule: str = "published",
) -> dict[str, Any]:
    """The published log- and linear-scale homogeneity matrices (N, N) and their off-diagonal
    mean / median, over the k eigenpairs given (homogeneity depends on k: compare members at
    one k). dtype 'float32' halves memory and time for large sets (N = 1000, d = 256).
    `device` ('cpu', 'cuda', 'cuda:1', ...) is where the work runs; results come back as
    numpy arrays either way. `log_rule`: what the log scale does with values <= 0
    (`LOG_RULES`; the default is the published one)."""
    if dtype not in ("float32", "float64"):
        raise InvalidOptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if log_rule not in LOG_RULES:
        raise InvalidOptionError(
            f"log_rule must be one of {', '.join(LOG_RULES)}, got {log_rule!r}"
        )
    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    torch_device = _checked_device(device)
    values = spectra(eigenvalues)
    vectors = _vectors(eigenvectors, values)
    lam = torch.as_tensor(np.ascontiguousarray(values), dtype=torch_dtype, device=torch_device)
    u = torch.as_tensor(np.ascontiguousarray(vectors), dtype=torch_dtype, device=torch_device)
    n, d, k = u.shape
    floor = torch.finfo(torch_dtype).tiny

    published = log_rule == "published"
    lam_log = lam.log10() if published else lam.abs().clamp_min(floor).log10()
    lam_log_c, lam_lin_c = _centred(lam_log), _centred(lam)
    positive_lam = bool((lam > 0).all())
    log_matrix = torch.empty((n, n), dtype=torch_dtype, device=torch_device)
    lin_matrix = torch.empty((n, n), dtype=torch_dtype, device=torch_device)
    left_out = 0
    for start, stop, quotients in _cross_rayleigh_blocks(lam, u):  # quotients: (b, N, k)
        if not published:
            log_q = quotients.abs().clamp_min(floor).log10()
            log_matrix[start:stop] = _pearson(_centred(log_q), lam_log_c)
        elif positive_lam and bool((quotients > 0).all()):  # nothing to leave out
            log_matrix[start:stop] = _pearson(_centred(quotients.log10()), lam_log_c)
        else:
            valid = (quotients > 0) & (lam > 0)[None]
            left_out += int((~valid).sum())
            log_matrix[start:stop] = _masked_pearson(
                quotients.clamp_min(floor).log10(), lam.clamp_min(floor).log10(), valid
            )
        lin_matrix[start:stop] = _pearson(_centred(quotients), lam_lin_c)
    log_np, lin_np = log_matrix.double().cpu().numpy(), lin_matrix.double().cpu().numpy()
    off_diagonal = ~np.eye(n, dtype=bool)
    return {
        "log": log_np,
        "linear": lin_np,
        **_offdiagonal_stats("log", log_np[off_diagonal]),
        **_offdiagonal_stats("linear", lin_np[off_diagonal]),
        "log_offdiag_mean_ci95": bootstrap_offdiagonal(log_np).bounds(),
        "linear_offdiag_mean_ci95": bootstrap_offdiagonal(lin_np).bounds(),
        "n_positions": int(n),
        "rank": int(k),
        "dtype": dtype,
        "log_rule": log_rule,
        "log_rule_description": LOG_RULES[log_rule],
        "log_entries_left_out": left_out,
    }


def _checked_device(device: str) -> torch.device:
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidOptionError(f"unknown device {device!r}: {error}") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidOptionError(f"device {device!r} requested but CUDA is not available here")
    return torch_device


def _offdiagonal_stats(prefix: str, entries: np.ndarray) -> dict[str, float]:
    finite = entries[np.isfinite(entries)]
    if finite.size == 0:
        return {f"{prefix}_offdiag_mean": float("nan"), f"{prefix}_offdiag_median": float("nan")}
    return {
        f"{prefix}_offdiag_mean": float(finite.mean()),
        f"{prefix}_offdiag_median": float(np.median(finite)),
    }


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _pearson(x_centred: torch.Tensor, y_centred: torch.Tensor) -> torch.Tensor:
    """Correlation over the last axis of (b, N, k) with (N, k), both already centred."""
    numerator = (x_centred * y_centred).sum(-1)
    denominator = x_centred.norm(dim=-1) * y_centred.norm(dim=-1)
    correlation: torch.Tensor = numerator / denominator  # 0/0 -> NaN: stays visible
    return correlation


def _masked_pearson(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Correlation over the last axis of (b, N, k) with (N, k), each pair over its own valid
    ranks only (numpy.ma.corrcoef's pairwise masking); fewer than two valid ranks give NaN."""
    weight = valid.to(x.dtype)
    count = weight.sum(-1, keepdim=True)
    x_kept, y_kept = x * weight, y[None] * weight
    x_centred = (x_kept - x_kept.sum(-1, keepdim=True) / count) * weight
    y_centred = (y_kept - y_kept.sum(-1, keepdim=True) / count) * weight
    numerator = (x_centred * y_centred).sum(-1)
    correlation: torch.Tensor = numerator / (x_centred.norm(dim=-1) * y_centred.norm(dim=-1))
    return correlation


def _cross_rayleigh_blocks(lam: torch.Tensor, u: torch.Tensor) -> Any:
    """Yield (start, stop, a) with a[b, j, k] = u_{start+b,k}ᵀ H_j u_{start+b,k}, in blocks of
    positions sized to bound memory. Two exact routes, the cheaper one for the shape:
    inner products C = U_iᵀ U_j then Σ_m λ_jm C_km² (≈ 2k²d per pair), or the symmetric
    vec trick ⟨u⊗u, vec H_j⟩ over the d(d+1)/2 packed entries (≈ k·d² per pair)."""
    n, d, k = u.shape
    packed_size = d * (d + 1) // 2
    if packed_size < k * d:
        rows, cols = torch.triu_indices(d, d, device=u.device)
        scale = torch.where(rows == cols, 1.0, 2.0).to(u.dtype)
        packed = torch.empty((n, packed_size), dtype=u.dtype, device=u.device)
        # H_j = U_j Λ_j U_jᵀ for a batch of positions at a time: one bmm, bounded memory.
        per_batch = max(1, _BLOCK_ELEMENTS // (4 * d * d))
        for start in range(0, n, per_batch):
            stop = min(n, start + per_batch)
            scaled = u[start:stop] * lam[start:stop, None, :]
            metrics = torch.bmm(scaled, u[start:stop].transpose(1, 2))
            torch.mul(metrics[:, rows, cols], scale, out=packed[start:stop])
        block = max(1, _BLOCK_ELEMENTS // (k * packed_size))
        # One outer-product buffer and one product buffer for every block: a fresh block of
        # this size each time is returned to the system and faulted in again, page by page.
        outer_buffer = torch.empty(packed_size * block * k, dtype=u.dtype, device=u.device)
        product_buffer = torch.empty(n * block * k, dtype=u.dtype, device=u.device)
        for start in range(0, n, block):
            stop = min(n, start + block)
            width = (stop - start) * k
            outer = _packed_outer_products(
                u[start:stop],
                packed_size,
                outer_buffer[: packed_size * width].view(packed_size, width),
            )
            quotients = torch.matmul(
                packed, outer, out=product_buffer[: n * width].view(n, width)
            )  # (N, b*k)
            yield start, stop, quotients.reshape(n, stop - start, k).transpose(0, 1)
    else:
        everyone = u.permute(1, 0, 2).reshape(d, n * k)  # (d, N*k)
        block = max(1, _BLOCK_ELEMENTS // (k * n * k))
        for start in range(0, n, block):
            stop = min(n, start + block)
            columns = u[start:stop].transpose(1, 2).reshape(-1, d)  # (b*k, d)
            inner = (columns @ everyone).reshape(stop - start, k, n, k)  # [b, k, j, m]
            # In place: one (b, k, N, k) array alive, not three.
            quotients = inner.square_().mul_(lam[None, None]).sum(-1)  # (b, k, N)
            yield start, stop, quotients.transpose(1, 2)


def _packed_outer_products(
    vectors: torch.Tensor, packed_size: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """(b, d, k) -> (T, b*k): column r holds u_r[p] u_r[q] for p <= q in row-major triangle
    order (torch.triu_indices). One contiguous block of rows per p: far cheaper than gathering
    the triangle with index arrays. `out`: a (T, b*k) buffer to fill."""
    b, d, k = vectors.shape
    columns = vectors.permute(1, 0, 2).reshape(d, b * k)
    if out is None:
        out = torch.empty((packed_size, b * k), dtype=vectors.dtype, device=vectors.device)
    offset = 0
    for p in range(d):
        torch.mul(columns[p:], columns[p], out=out[offset : offset + d - p])
        offset += d - p
    return out


def average_metric(
    eigenvalues: np.ndarray, eigenvectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H̄ = mean_i U_i Λ_i U_iᵀ (d, d), its eigenvalues (descending) and eigenvectors (d, d),
    the global axes; float64, deterministic signs. One chunk of streaming.AverageMetric,
    which feeds sets too large for one array."""
    values = spectra(eigenvalues)
    vectors = _vectors(eigenvectors, values).astype(np.float64)
    total = AverageMetric(vectors.shape[1])
    total.add(values, vectors)
    return total.result()


def alignment(
    a: np.ndarray,
    b: np.ndarray,
    *,
    metric: np.ndarray | None = None,
    k: int | None = None,
    seed: int = 0,
    baseline_samples: int = 500,
) -> dict[str, Any]:
    """Compare two direction sets (d, ka) and (d, kb), columns in rank order:
    |cosine| matrix, matched-pair |cosine|, principal angles (degrees, ascending) between the
    top-k subspaces (and the smallest and largest of them), and — given `metric` (d, d), the
    other side's H — Rayleigh quotients vᵀHv of unit directions from a, from b, and from
    seeded random directions. ``baseline`` is what two unrelated k-dim subspaces of R^d give
    (|cosine| exact; principal angles sampled, `baseline_samples` pairs, seeded)."""
    from scipy.linalg import subspace_angles

    first, second = _directions(a, "a"), _directions(b, "b")
    d = first.shape[0]
    if second.shape[0] != d:
        raise InvalidOptionError(
            f"direction sets live in different spaces: d = {d} and {second.shape[0]}"
        )
    limit = min(first.shape[1], second.shape[1])
    if k is None:
        k = limit
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
        raise InvalidOptionError(f"k must be an integer in [1, {limit}], got {k!r}")
    cosines = np.abs(first.T @ second)
    angles = np.sort(np.degrees(subspace_angles(first[:, :k], second[:, :k])))
    matched = np.diagonal(cosines)[:limit].copy()
    result: dict[str, Any] = {
        "abs_cosine": cosines,
        "matched_abs_cosine": matched,
        "matched_abs_cosine_mean": float(matched[:k].mean()),
        "k": int(k),
        "principal_angles_deg": angles,
        "smallest_principal_angle_deg": float(angles[0]),
        "largest_principal_angle_deg": float(angles[-1]),
        "baseline": random_subspace_baseline(d, k, samples=baseline_samples, seed=seed),
    }
    if metric is not None:
        matrix = np.asarray(metric, dtype=np.float64)
        if matrix.shape != (d, d) or not np.isfinite(matrix).all():
            raise InvalidOptionError(
                f"metric must be a finite ({d}, {d}) matrix, got shape {matrix.shape}"
            )
        random = np.random.default_rng(seed).standard_normal(
            (d, max(first.shape[1], second.shape[1], 100))
        )
        random /= np.linalg.norm(random, axis=0)
        rayleigh = {
            name: np.einsum("dk,de,ek->k", v, matrix, v, optimize=True)
            for name, v in (("a", first), ("b", second), ("random", random))
        }
        result.update(
            rayleigh_a=rayleigh["a"],
            rayleigh_b=rayleigh["b"],
            rayleigh_random=rayleigh["random"],
            rayleigh_random_mean=float(rayleigh["random"].mean()),
            rayleigh_a_topk_over_random=float(rayleigh["a"][:k].mean() / rayleigh["random"].mean())
            if rayleigh["random"].mean() != 0
            else float("nan"),
        )
    return result


def _directions(vectors: np.ndarray, label: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] == 0 or not np.isfinite(array).all():
        raise InvalidOptionError(
            f"{label} must be a finite (d, k) array of directions, got shape {array.shape}"
        )
    norms = np.linalg.norm(array, axis=0)
    if (norms == 0).any():
        raise InvalidOptionError(f"{label} holds a zero direction")
    return np.asarray(array / norms, dtype=np.float64)
