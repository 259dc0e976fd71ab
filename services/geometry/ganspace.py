"""GANSpace (Härkönen et al. 2020): principal directions of a layer's activations over samples.

N codes are sampled from the generator's own latent distribution (seeded; in the generator's
space), a named layer's activations y are computed for each, and their principal components
V (PCA of the centred activations) are found. Each component is taken back to a latent
direction by least squares, as the paper does for BigGAN: the PCA coordinates x = Vᵀ(y − ȳ)
are regressed onto the codes, c − c̄ ≈ U x, and the columns of U (unit-normalised) are the
directions. Where the layer is the code itself (StyleGAN2's `w` layer in space w, the paper's
StyleGAN recipe: PCA of w = mapping(z)), U = V exactly. Eigenvalues are the components'
variances (of the activations), so the result is stored and compared like SeFa's.

At most min(d, F, N − 1) components (more could not be told apart in the latent space), and
only those with variance above 1e-12 of the largest. Small
problems use the exact SVD; large ones torch's randomized `svd_lowrank` (recorded).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .errors import InvalidOptionError
from .linalg import SpectrumResult, check_top_k, fixed_signs, summary_of
from .models.capabilities import GanspaceLayer
from .models.generator import Generator

DEFAULT_SAMPLES = 10_000
MAX_FEATURE_VALUES = 50_000_000  # N x F float64 activations held at once (400 MB)
EXACT_SVD_VALUES = 20_000_000
RENDER_BATCH = 256
LOWRANK_OVERSAMPLING = 10
LOWRANK_ITERATIONS = 6
RANK_TOLERANCE = 1e-12  # relative variance below which a component is numerical noise


def default_layer(generator: Generator) -> str:
    names = generator.layer_names()
    module = generator.module
    preferred = module.ganspace_layer if isinstance(module, GanspaceLayer) else None
    if isinstance(preferred, str) and preferred in names:
        return preferred
    if not names:
        raise InvalidOptionError(
            f"{generator.name} has no named layers to take activations from (a TorchScript "
            "module cannot be hooked); ganspace needs an nn.Module generator"
        )
    return names[0]


def ganspace(
    generator: Generator,
    *,
    top_k: int | None = None,
    samples: int | None = None,
    sample_seed: int = 0,
    layer: str | None = None,
) -> SpectrumResult:
    """GANSpace directions (d, k) with their activation-space variances, in float64."""
    started = time.perf_counter()
    d = generator.latent_dim
    top_k = check_top_k(top_k, d)
    layer = layer if layer is not None else default_layer(generator)
    tap = generator.at_layer(layer).to(generator.device, torch.float64)
    n = DEFAULT_SAMPLES if samples is None else samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InvalidOptionError(f"ganspace samples must be an integer >= 2, got {samples!r}")
    codes = generator.sample(n, sample_seed)
    features = _activations(tap, codes)
    if features.shape[0] * features.shape[1] > MAX_FEATURE_VALUES:
        raise InvalidOptionError(
            f"ganspace: {n} samples x {features.shape[1]} activations of layer {layer!r} exceed "
            f"{MAX_FEATURE_VALUES} values; use fewer samples or an earlier, smaller layer"
        )
    k = min(d, features.shape[1], n - 1)
    centred = features - features.mean(0, keepdim=True)
    variances, components, route = _principal_components(centred, k)
    # Components without variance (a layer of lower rank than k, e.g. w+ codes that repeat w in
    # every slot) carry no direction: their regression would be fitting rounding noise.
    rank = int((variances > RANK_TOLERANCE * variances.max()).sum()) if k else 0
    variances, components, k = variances[:rank], components[:, :rank], rank
    coordinates = centred @ components  # (N, k)
    latent = torch.as_tensor(codes, dtype=torch.float64)
    latent = latent - latent.mean(0, keepdim=True)
    regression = torch.linalg.lstsq(coordinates.cpu(), latent).solution  # (k, d)
    directions = regression.T.numpy()
    norms = np.linalg.norm(directions, axis=0, keepdims=True)
    directions = directions / np.maximum(norms, np.finfo(np.float64).tiny)
    values = variances.cpu().numpy()
    summary = summary_of(values)
    if top_k is not None:
        values, directions = values[:top_k], directions[:, :top_k]
    total = float((centred**2).sum() / (n - 1))
    return SpectrumResult(
        eigenvalues=np.ascontiguousarray(values),
        eigenvectors=np.ascontiguousarray(fixed_signs(directions)),
        diagnostics={
            "method": "ganspace",
            "layer": layer,
            "samples": n,
            "sample_seed": sample_seed,
            "space": generator.space,
            "activations": int(features.shape[1]),
            "components": int(k),
            "pca": route,
            "explained_variance_fraction": float(values.sum() / total) if total > 0 else None,
            "dtype": "float64",
            "wall_time_s": time.perf_counter() - started,
        },
        summary=summary,
    )


@torch.no_grad()
def _activations(tap: Generator, codes: np.ndarray) -> torch.Tensor:
    batches = []
    for start in range(0, codes.shape[0], RENDER_BATCH):
        batch = torch.as_tensor(codes[start : start + RENDER_BATCH], device=tap.device)
        batches.append(tap.module(batch.to(torch.float64)).reshape(batch.shape[0], -1))
    return torch.cat(batches)


def _principal_components(centred: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Variances (k,) descending and components (F, k) of centred activations (N, F)."""
    n = centred.shape[0]
    if centred.numel() <= EXACT_SVD_VALUES:
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        return singular[:k] ** 2 / (n - 1), vh[:k].T, "exact svd"
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # svd_lowrank's random projection, reproducible
    try:
        q = min(k + LOWRANK_OVERSAMPLING, *centred.shape)
        _, singular, v = torch.svd_lowrank(centred, q=q, niter=LOWRANK_ITERATIONS)
    finally:
        torch.random.set_rng_state(generator_state)
    return (
        singular[:k] ** 2 / (n - 1),
        v[:, :k],
        f"randomized svd_lowrank (q={q}, niter={LOWRANK_ITERATIONS}, seed 0)",
    )
