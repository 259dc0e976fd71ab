"""Large-latent generators with a closed-form metric, loaded through `python:FILE:FACTORY`.

`linear_wide`: G(z) = W z + b with d = 4096 and images (3, 16, 16), W = L diag(s) Rᵀ of rank
RANK with orthonormal L, R. With squared error (the mean over F = 768 pixels) the metric is
H = 2 WᵀW / F = R diag(2 s² / F) Rᵀ: its top eigenpairs are known without any eigh, so
routes that never form H (Lanczos) and routes that form it by column blocks are checked at
d ≥ 4096 against the exact answer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

WIDE_DIM = 4096
WIDE_SHAPE = (3, 16, 16)
RANK = 48


def wide_factors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L (F, r), s (r,) descending and distinct, R (d, r)), float64, fixed by a seed."""
    rng = np.random.default_rng(4096)
    features = int(np.prod(WIDE_SHAPE))
    left, _ = np.linalg.qr(rng.standard_normal((features, RANK)))
    right, _ = np.linalg.qr(rng.standard_normal((WIDE_DIM, RANK)))
    singular = 3.0 * 0.93 ** np.arange(RANK)  # well separated: Lanczos converges quickly
    return left, singular, right


def exact_top(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k eigenvalues (descending) and eigenvectors (d, k) of H, in closed form."""
    _, singular, right = wide_factors()
    features = int(np.prod(WIDE_SHAPE))
    return 2 * singular[:k] ** 2 / features, right[:, :k]


def exact_metric_columns(start: int, stop: int) -> np.ndarray:
    _, singular, right = wide_factors()
    features = int(np.prod(WIDE_SHAPE))
    columns: np.ndarray = (right * (2 * singular**2 / features)) @ right[start:stop].T
    return columns


def linear_wide() -> tuple[nn.Module, int]:
    left, singular, right = wide_factors()
    layer = nn.Linear(WIDE_DIM, left.shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy((left * singular) @ right.T))
        layer.bias.copy_(
            torch.from_numpy(0.01 * np.random.default_rng(1).standard_normal(left.shape[0]))
        )
    return nn.Sequential(layer, nn.Unflatten(1, WIDE_SHAPE)), WIDE_DIM
