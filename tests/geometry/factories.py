"""Small generators for tests, loaded through the real `python:FILE:FACTORY` loader.

Each factory follows the documented contract: called with no arguments it returns
(module, latent_dim) or (module, latent_dim, extras).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

LINEAR_DIM = 6
LINEAR_SHAPE = (3, 4, 5)  # C, H, W: N = 60 pixel values


def linear_weights() -> tuple[np.ndarray, np.ndarray]:
    """W (N, d) and b (N,) of the linear generator, float64, fixed by a seed."""
    rng = np.random.default_rng(1234)
    n = int(np.prod(LINEAR_SHAPE))
    # Distinct singular values, so the metric's eigenvectors are unique up to sign.
    left, _ = np.linalg.qr(rng.standard_normal((n, LINEAR_DIM)))
    right, _ = np.linalg.qr(rng.standard_normal((LINEAR_DIM, LINEAR_DIM)))
    singular = np.linspace(1.0, 0.2, LINEAR_DIM) * 0.3
    return (left * singular) @ right.T, 0.05 * rng.standard_normal(n)


def linear() -> tuple[nn.Module, int]:
    """G(z) = W z + b, reshaped to (B, 3, 4, 5)."""
    weight, bias = linear_weights()
    layer = nn.Linear(LINEAR_DIM, weight.shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    return nn.Sequential(layer, nn.Unflatten(1, LINEAR_SHAPE)), LINEAR_DIM


def tiny_dcgan() -> tuple[nn.Module, int]:
    """A random-initialised DCGAN of the tutorial layout (nz=8, ngf=4), through the same
    class the dcgan-faces loader uses (BatchNorm folded)."""
    from services.geometry.models.dcgan import DCGAN, tutorial_dcgan

    generator = torch.Generator().manual_seed(7)
    reference = tutorial_dcgan(8, 4, 3)
    state = {}
    for key, value in reference.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[f"main.{key}"] = value
        elif key.endswith("running_var"):
            state[f"main.{key}"] = 0.5 + torch.rand(value.shape, generator=generator)
        else:
            state[f"main.{key}"] = 0.3 * torch.randn(value.shape, generator=generator)
    return DCGAN(state, nz=8, ngf=4, nc=3), 8


class ViewAfterConvolution(nn.Module):
    """Flattens a convolution's output with `.view`, which needs NCHW-contiguous activations:
    a module that cannot run channels_last."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            self.seed = nn.Linear(4, 2 * 4 * 4)
            self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        features = self.conv(self.seed(codes).view(-1, 2, 4, 4))
        return torch.tanh(features.view(features.shape[0], -1)).view(-1, 3, 4, 4)


def view_after_convolution() -> tuple[nn.Module, int]:
    return ViewAfterConvolution(), 4


class NaNFarFromOrigin(nn.Module):
    """Finite near the origin, NaN once |z| > 10: a generator that fails mid-job."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3 * 8 * 8)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images = torch.tanh(self.layer(codes)).reshape(-1, 3, 8, 8)
        far = codes.norm(dim=1) > 10
        return torch.where(far[:, None, None, None], torch.full_like(images, float("nan")), images)


def nan_far_from_origin() -> tuple[nn.Module, int]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return NaNFarFromOrigin(), 4


def always_nan() -> tuple[nn.Module, int]:
    return nn.Sequential(
        nn.Linear(4, 12), nn.Unflatten(1, (3, 2, 2)), nn.Softplus(beta=float("nan"))
    ), 4


def wrong_output() -> tuple[nn.Module, int]:
    return nn.Linear(4, 12), 4


def not_a_tuple() -> nn.Module:
    return nn.Linear(4, 12)


class StyleLike(nn.Module):
    """A StyleGAN-like toy: per-layer style affines (out_l, d) read the code; SeFa uses them
    with unit-normalised rows."""

    sefa_normalize_rows = True

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            self.styles = nn.ModuleList([nn.Linear(5, 7), nn.Linear(5, 9), nn.Linear(5, 4)])
            self.to_image = nn.Linear(7 + 9 + 4, 3 * 4 * 4)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        styles = torch.cat([style(codes) for style in self.styles], dim=1)
        return torch.tanh(self.to_image(styles)).reshape(-1, 3, 4, 4)

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]:
        chosen = range(len(self.styles)) if layers is None else layers
        linears = [style for style in self.styles if isinstance(style, nn.Linear)]
        return [linears[i].weight for i in chosen]


def style_like() -> tuple[nn.Module, int, dict[str, Any]]:
    def uniform(n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1, 1, size=(n, 5))

    return (
        StyleLike(),
        5,
        {"sample": uniform, "facts": {"toy": "style-like"}, "family": "stylegan-like"},
    )


def mlp64() -> tuple[nn.Module, int]:
    """A cheap nonlinear generator with a 64-d latent and a slowly decaying spectrum."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        module = nn.Sequential(nn.Linear(64, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
    return module, 64
