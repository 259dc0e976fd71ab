"""Image distances D(x0, x) on generator outputs in [-1, 1].

Both supported families are weighted squared differences of a feature map,

    D(x0, x) = Σ_f W_f (φ_f(x) − φ_f(x0))²,

so the pull-back metric is exactly H = 2 Jᵀ W J with J the Jacobian of z ↦ φ(G(z)). A
`Distance` therefore offers both views: `features` (φ, flattened) with `feature_weights` (the
diagonal W) for the `jacobian` method, and the scalar `__call__(x0, x)` — computed by the
distance's own reference code path (the `lpips` package's forward, the plain mean squared
error) — for the methods that differentiate D itself (hvp, lanczos, fd, bp).

- ``mse``: mean over the N = C·H·W pixel values of (x − x0)²; φ = the pixels, W = 1/N.
- ``lpips-alex`` / ``lpips-vgg`` / ``lpips-squeeze`` (lpips v0.1, linear heads calibrated):
  φ_l = channel-unit-normalised backbone features of layer l, W = w_lc / (H_l·W_l) (the
  linear head's weight of channel c, spread over the spatial mean).

- ``layer:NAME``: Σ over the activations of the generator's layer NAME of (a(z) − a(z0))²
  (a sum, no 1/N): GAN-Geometry's metric pulled back from an intermediate layer. The methods
  cut the generator at that layer (`Generator.at_layer`), so φ = the activations, W = 1.

``resize`` (optional, recorded) bilinearly resamples images to resize x resize before the
distance; it is part of the distance, so every method sees it.

LPIPS backbones are ImageNet weights torchvision keeps in ``$TORCH_HOME/hub/checkpoints``
(resolved with ``torch.hub.get_dir()``). They are never downloaded here: a missing file raises
MissingWeightsError naming it. ``random_backbone=True`` builds a randomly initialised backbone
(seeded, deterministic) for tests only and is recorded in ``facts``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidOptionError, MissingWeightsError, UnknownDistanceError

DISTANCES = ("mse", "lpips-alex", "lpips-vgg", "lpips-squeeze")
LAYER_PREFIX = "layer:"

# torchvision's checkpoint file for each LPIPS backbone, and where it is published.
BACKBONE_FILES = {
    "alex": (
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": (
        "squeezenet1_1-b8a52dc0.pth",
        "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    ),
}
RANDOM_BACKBONE_SEED = 0


class Distance:
    """D(x0, x) = Σ W (φ(x) − φ(x0))² on images (B, C, H, W) in [-1, 1]."""

    name: str
    facts: dict[str, Any]

    def __init__(self, name: str, facts: dict[str, Any], resize: int | None) -> None:
        self.name = name
        self.facts = facts
        self.resize = resize

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, resize={self.resize})"

    def __call__(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B,) distances between x0 (B or 1, C, H, W) and x (B, C, H, W)."""
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """φ(images) flattened to (B, F)."""
        raise NotImplementedError

    def feature_weights(self, image_shape: tuple[int, ...]) -> torch.Tensor:
        """The diagonal W (F,) for images of shape (·, C, H, W)."""
        raise NotImplementedError

    def to(self, device: str | torch.device, dtype: torch.dtype) -> Distance:
        """This distance on `device` in `dtype` (itself when already there, else a copy)."""
        raise NotImplementedError

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        if self.resize is None or tuple(images.shape[-2:]) == (self.resize, self.resize):
            return images
        return F.interpolate(
            images, size=(self.resize, self.resize), mode="bilinear", align_corners=False
        )


class MeanSquaredError(Distance):
    def __init__(self, resize: int | None = None) -> None:
        super().__init__(
            "mse", {"distance": "mse", "resize": resize, "reduction": "mean over C*H*W"}, resize
        )
        self._device = torch.device("cpu")
        self._dtype = torch.float32

    def __call__(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        difference = self._resized(x) - self._resized(x0)
        return (difference**2).flatten(1).mean(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._resized(images).flatten(1)

    def feature_weights(self, image_shape: tuple[int, ...]) -> torch.Tensor:
        channels = image_shape[-3]
        height, width = (self.resize, self.resize) if self.resize else image_shape[-2:]
        n = channels * height * width
        return torch.full((n,), 1.0 / n, dtype=self._dtype, device=self._device)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> MeanSquaredError:
        moved = MeanSquaredError(self.resize)
        moved._device, moved._dtype = torch.device(device), dtype
        return moved


class LPIPSDistance(Distance):
    def __init__(
        self, model: nn.Module, net: str, resize: int | None, facts: dict[str, Any]
    ) -> None:
        super().__init__(f"lpips-{net}", facts, resize)
        self.model: Any = model  # lpips.LPIPS (untyped package)

    def __call__(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # The lpips package's own forward: the reference for the feature decomposition below.
        x0, x = self._backbone_input(x0), self._backbone_input(x)
        if x0.shape[0] != x.shape[0]:
            x0 = x0.expand_as(x)
        distances: torch.Tensor = self.model(x, x0, normalize=False)
        return distances.reshape(x.shape[0])

    def _backbone_input(self, images: torch.Tensor) -> torch.Tensor:
        """Resized and NCHW-contiguous. A CPU generator's images come channels_last, and
        double-backward through the backbone's convolutions under vmap (lanczos, hvp) then
        fails in torch ("NYI: querying is_contiguous inside of vmap for memory_format other
        than torch.contiguous_format"); the copy costs one small image batch."""
        return self._resized(images).contiguous()

    def _layer_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        import lpips  # imported by load_distance through the torchvision workaround

        outputs = self.model.net(self.model.scaling_layer(self._backbone_input(images)))
        return [lpips.normalize_tensor(outputs[layer]) for layer in range(self.model.L)]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.flatten(1) for f in self._layer_features(images)], dim=1)

    @torch.no_grad()
    def feature_weights(self, image_shape: tuple[int, ...]) -> torch.Tensor:
        parameter = next(self.model.parameters())
        probe = torch.zeros((1, *image_shape[-3:]), dtype=parameter.dtype, device=parameter.device)
        weights = []
        for layer, feature in enumerate(self._layer_features(probe)):
            channels, height, width = feature.shape[1:]
            head = self.model.lins[layer].model[-1].weight.reshape(channels)  # 1x1 conv, no bias
            weights.append((head / (height * width)).repeat_interleave(height * width))
        return torch.cat(weights)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> LPIPSDistance:
        parameter = next(self.model.parameters())
        if parameter.device == torch.device(device) and parameter.dtype == dtype:
            return self
        model = copy.deepcopy(self.model).to(device=device, dtype=dtype)
        return LPIPSDistance(model, self.name.removeprefix("lpips-"), self.resize, self.facts)


class LayerDistance(Distance):
    """layer:NAME: the squared difference of a generator layer's activations, summed. Its
    input is that layer's output: the methods cut the generator there (see methods._prepare)."""

    def __init__(self, layer: str) -> None:
        super().__init__(
            f"{LAYER_PREFIX}{layer}",
            {"distance": f"{LAYER_PREFIX}{layer}", "reduction": "sum over the layer's activations"},
            None,
        )
        self.layer = layer
        self._device = torch.device("cpu")
        self._dtype = torch.float32

    def __call__(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return ((x - x0) ** 2).flatten(1).sum(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)

    def feature_weights(self, image_shape: tuple[int, ...]) -> torch.Tensor:
        n = 1
        for size in image_shape[1:]:
            n *= int(size)
        return torch.ones((n,), dtype=self._dtype, device=self._device)

    def to(self, device: str | torch.device, dtype: torch.dtype) -> LayerDistance:
        moved = LayerDistance(self.layer)
        moved._device, moved._dtype = torch.device(device), dtype
        return moved


def backbone_checkpoint(net: str) -> Path:
    """Where torchvision looks for the LPIPS backbone `net` ('alex', 'vgg', 'squeeze')."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net][0]


def load_distance(
    name: str, *, device: str = "cpu", resize: int | None = None, random_backbone: bool = False
) -> Distance:
    """mse | lpips-alex | lpips-vgg | lpips-squeeze | layer:NAME, on `device`, in float32."""
    if isinstance(name, str) and name.startswith(LAYER_PREFIX) and len(name) > len(LAYER_PREFIX):
        if resize is not None or random_backbone:
            raise InvalidOptionError("layer:NAME distances take no resize or random_backbone")
        return LayerDistance(name.removeprefix(LAYER_PREFIX)).to(device, torch.float32)
    if name not in DISTANCES:
        raise UnknownDistanceError(
            f"unknown distance {name!r}; use one of: {', '.join(DISTANCES)}, or layer:NAME"
        )
    if resize is not None and (
        isinstance(resize, bool) or not isinstance(resize, int) or not 16 <= resize <= 4096
    ):
        raise InvalidOptionError(
            f"resize must be an integer number of pixels in [16, 4096], got {resize!r}"
        )
    if name == "mse":
        if random_backbone:
            raise InvalidOptionError("random_backbone applies only to lpips-* distances")
        return MeanSquaredError(resize).to(device, torch.float32)
    return _load_lpips(name.removeprefix("lpips-"), device, resize, random_backbone)


def _load_lpips(net: str, device: str, resize: int | None, random_backbone: bool) -> LPIPSDistance:
    from services.compat import import_torchvision

    import_torchvision()  # must precede lpips: see services/compat.py
    import lpips

    facts: dict[str, Any] = {"distance": f"lpips-{net}", "resize": resize, "lpips_version": "0.1"}
    if random_backbone:
        # Tests only: a seeded random backbone, built without touching the global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_BACKBONE_SEED)
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        facts["backbone"] = (
            f"RANDOM (pnet_rand, seed {RANDOM_BACKBONE_SEED}) - not a perceptual distance"
        )
    else:
        checkpoint = backbone_checkpoint(net)
        if not checkpoint.is_file():
            file_name, url = BACKBONE_FILES[net]
            raise MissingWeightsError(
                f"lpips-{net} needs the ImageNet backbone weights {checkpoint}, which are not on this "
                f"machine and are never downloaded at run time. Download {url} and save it as "
                f"{checkpoint} (the directory is $TORCH_HOME/hub/checkpoints; set TORCH_HOME to use "
                f"another place), then retry."
            )
        model = lpips.LPIPS(net=net, pnet_rand=False, verbose=False)
        facts["backbone"] = f"torchvision ImageNet {BACKBONE_FILES[net][0]}"
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LPIPSDistance(model, net, resize, facts).to(device, torch.float32)
