"""Homogeneity over a seeded random sample of position pairs, for sets where all N² pairs
cost more than a caller allows (a campaign of 10⁴ positions is 10⁸ pairs).

Same definition as analysis.homogeneity (Wang & Ponce 2021): for the ordered pair (i, j),
a[k] = u_ikᵀ H_j u_ik = Σ_m λ_jm (u_ik·u_jm)², and the entry is the Pearson correlation over
ranks of log10|a| with log10|λ_j| (log scale) or of a with λ_j (linear scale). Pairs are drawn
uniformly with replacement (i ≠ j) from numpy's PCG64 with the given seed, so the same call
gives the same sample anywhere; the result says it was sampled, with how many pairs and which
seed. Work runs in batches of pairs sized to bound memory, on `device`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .analysis import _centred, _checked_device, _offdiagonal_stats, _vectors, homogeneity
from .errors import InvalidOptionError
from .linalg import spectra as _spectra

# Bounds one batch's work arrays (two gathered (b, d, k) stacks and the (b, k, k) products).
_BATCH_ELEMENTS = 32 * 1024 * 1024


def homogeneity_sampled(
    eigenvalues: np.ndarray,
    eigenvectors: np.ndarray,
    *,
    max_pairs: int,
    seed: int = 0,
    dtype: str = "float64",
    device: str = "cpu",
) -> dict[str, Any]:
    """All N(N−1) off-diagonal pairs when they number at most `max_pairs` (the full matrices,
    as analysis.homogeneity); otherwise `max_pairs` sampled pairs: their indices (P, 2), their
    log / linear entries (P,), and the same off-diagonal mean / median keys."""
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise InvalidOptionError(f"max_pairs must be a positive integer, got {max_pairs!r}")
    if dtype not in ("float32", "float64"):
        raise InvalidOptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    values = _spectra(eigenvalues)
    n = values.shape[0]
    if n * (n - 1) <= max_pairs:
        return {**homogeneity(eigenvalues, eigenvectors, dtype=dtype, device=device),
                "sampled": False, "n_pairs": n * (n - 1)}  # fmt: skip
    vectors = _vectors(eigenvectors, values)
    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    torch_device = _checked_device(device)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, size=max_pairs)
    second = (first + rng.integers(1, n, size=max_pairs)) % n  # never equal to `first`
    d, k = vectors.shape[1], vectors.shape[2]
    batch = max(1, _BATCH_ELEMENTS // (k * max(k, 2 * d)))
    floor = torch.finfo(torch_dtype).tiny
    log_entries = np.empty(max_pairs)
    linear_entries = np.empty(max_pairs)
    for start in range(0, max_pairs, batch):
        stop = min(max_pairs, start + batch)
        i, j = first[start:stop], second[start:stop]
        u_i = torch.as_tensor(vectors[i], dtype=torch_dtype, device=torch_device)
        u_j = torch.as_tensor(vectors[j], dtype=torch_dtype, device=torch_device)
        lam_j = torch.as_tensor(values[j], dtype=torch_dtype, device=torch_device)
        inner = torch.bmm(u_i.transpose(1, 2), u_j)  # (b, k, m): u_ik · u_jm
        quotients = (inner.square() * lam_j[:, None, :]).sum(-1)  # (b, k)
        log_entries[start:stop] = _pearson_rows(
            quotients.abs().clamp_min(floor).log10(), lam_j.abs().clamp_min(floor).log10()
        )
        linear_entries[start:stop] = _pearson_rows(quotients, lam_j)
    return {
        "sampled": True,
        "seed": int(seed),
        "n_pairs": int(max_pairs),
        "pairs": np.stack([first, second], axis=1),
        "log_values": log_entries,
        "linear_values": linear_entries,
        **_offdiagonal_stats("log", log_entries),
        **_offdiagonal_stats("linear", linear_entries),
        "n_positions": int(n),
        "rank": int(k),
        "dtype": dtype,
    }


def _pearson_rows(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Correlation of each row of x (b, k) with the same row of y (b, k)."""
    xc, yc = _centred(x), _centred(y)
    result = (xc * yc).sum(-1) / (xc.norm(dim=-1) * yc.norm(dim=-1))
    return np.asarray(result.double().cpu().numpy())
