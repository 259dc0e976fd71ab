"""How much a generator's images vary over a set of codes: a generator that renders nearly the
same image for every code (a degenerate control, e.g. a random-init whose activations shrink
layer after layer) has a near-zero, flat spectrum that reads as "isotropic and homogeneous"
without meaning it. `image_variation` measures it and flags it, so every table and figure can
say so.

pixel_std: for each pixel value (channel, row, column), the standard deviation across the
images of the set (population std), averaged over the pixel values; images in [-1, 1]. Taken
over the first `VARIATION_CODES` codes given (the cap keeps the cost at one batch of renders);
an image with NaN/inf is left out (its code fails in its chunk, where it is recorded).

`sampled_image_variation` is what a job records at resolution: the variation over the
generator's own seeded sample (seed 0), the codes the load-time probe already runs. A
degenerate generator is degenerate on any codes, and the user's codes run only inside chunks,
where a code that crashes or hangs the model is isolated and recorded.

The threshold, `DEGENERATE_PIXEL_STD` = 0.02: a typical pixel that moves by less than 1 % of
the [-1, 1] range across codes. The trained models sit more than an order of magnitude above
it, the random-init controls that render flat grey an order below (docs/controls.md has the
figures for each model and control).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidLatentError
from .generator import Generator

DEGENERATE_PIXEL_STD = 0.02
VARIATION_CODES = 8
RENDER_BATCH = 8


def image_variation(generator: Generator, codes: np.ndarray) -> dict[str, Any]:
    """{"pixel_std", "degenerate", "threshold", "codes"} of `generator` over `codes` (n, d):
    degenerate when pixel_std < threshold. Needs at least two codes."""
    used = generator.validate_codes(np.atleast_2d(codes))[:VARIATION_CODES]
    if used.shape[0] < 2:
        raise InvalidLatentError("image variation needs at least two codes to compare images")
    total: torch.Tensor | float = 0.0
    total_squares: torch.Tensor | float = 0.0
    n = 0
    for start in range(0, used.shape[0], RENDER_BATCH):
        images = _render(generator, used[start : start + RENDER_BATCH])
        total = total + images.sum(0)
        total_squares = total_squares + (images**2).sum(0)
        n += images.shape[0]
    if n < 2:
        return {
            "pixel_std": None,
            "degenerate": False,
            "threshold": DEGENERATE_PIXEL_STD,
            "codes": n,
        }
    mean = total / n
    variance = torch.as_tensor(total_squares / n - mean**2).clamp_min(0.0)
    pixel_std = float(variance.sqrt().mean())
    return {
        "pixel_std": pixel_std,
        "degenerate": pixel_std < DEGENERATE_PIXEL_STD,
        "threshold": DEGENERATE_PIXEL_STD,
        "codes": int(n),
    }


def unmeasured_image_variation(reason: str) -> dict[str, Any]:
    """What is recorded where the variation was not measured, and why: `degenerate` unknown."""
    return {
        "pixel_std": None,
        "degenerate": None,
        "threshold": DEGENERATE_PIXEL_STD,
        "codes": 0,
        "not_measured": reason,
    }


def sampled_image_variation(generator: Generator) -> dict[str, Any]:
    """`image_variation` over the generator's own `VARIATION_CODES` codes sampled with seed 0."""
    return image_variation(generator, generator.sample(VARIATION_CODES, seed=0))


@torch.no_grad()
def _render(generator: Generator, codes: np.ndarray) -> torch.Tensor:
    """The finite images (k, C, H, W) of `codes`, in float64 on the CPU."""
    batch = torch.as_tensor(codes, dtype=generator.dtype, device=generator.device)
    rendered: torch.Tensor = generator.module(batch)
    images = rendered.to("cpu", torch.float64)
    finite = torch.isfinite(images).flatten(1).all(1)
    return images[finite]
