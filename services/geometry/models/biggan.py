"""``biggan-deep:DIR``: BigGAN-deep through ``pytorch-pretrained-biggan``.

DIR holds ``config.json`` and ``pytorch_model.bin`` (the layout ``BigGAN.from_pretrained(DIR)``
reads). Three spaces (the paper analyses noise and class separately):
``both`` (the default; ``z`` is its older name) is the generator's conditioning vector,
d = 2 * z_dim (256 for the released models): ``code = noise (z_dim, truncated normal *
truncation) ⊕ class embedding (z_dim)`` — directions may mix noise and class.
``noise`` (d = z_dim) holds the class embedding fixed, ``class`` (d = z_dim) the noise: the
fixed half is that of the ``both`` code sampled with seed 0 (a uniformly random class and its
embedding; or that seed's noise), recorded in the facts (``fixed_class``,
``fixed_class_embedding`` / ``fixed_noise``), so ``fixed ⊕ code`` (in layout order) is the
``both`` code that renders the same image.
Sampling draws the noise from the truncated normal on [-2, 2] scaled by the truncation, and a
uniformly random class whose embedding column is appended. The truncation (default 0.7,
keyword ``truncation``) selects the generator's stored batch-norm statistics and is recorded.
Spectral normalisation is baked into plain weights at load time (eval mode never updates it),
so the module is a fixed function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from services.model_catalogue import BIGGAN_LEGACY_SPACE, BIGGAN_SPACES

from ..errors import InvalidGeneratorError, InvalidOptionError, MissingWeightsError
from .generator import Generator, file_sha256, freeze

DEFAULT_BIGGAN_TRUNCATION = 0.7
BIGGAN_FIXED_HALF_SEED = 0  # noise / class spaces: the other half is that of this seed's code


class BigGANLatent(nn.Module):
    """BigGAN-deep's generator as a map from codes of one space to images, at a fixed
    truncation: `both` codes are the conditioning vector (noise ⊕ class embedding,
    (B, 2*z_dim)); `noise` / `class` codes (B, z_dim) are joined with the fixed other half."""

    def __init__(
        self, biggan: Any, truncation: float, space: str = "both", fixed: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.generator: Any = biggan.generator
        self.truncation = float(truncation)
        self.z_dim = int(biggan.config.z_dim)
        self.space = space
        if (space == "both") != (fixed is None):
            raise InvalidGeneratorError(
                f"BigGAN space {space!r}: a fixed half only for noise/class"
            )
        # A buffer, so that Generator.to casts it with the weights (float64 end to end).
        self.register_buffer(
            "fixed_half", torch.zeros(0) if fixed is None else fixed.clone(), persistent=False
        )

    def conditioning(self, codes: torch.Tensor) -> torch.Tensor:
        """The `both` code (B, 2*z_dim) of codes in this space."""
        if self.space == "both":
            return codes
        stored: torch.Tensor = self.fixed_half  # type: ignore[assignment]
        fixed = stored.to(codes).expand(codes.shape[0], -1)
        halves = (codes, fixed) if self.space == "noise" else (fixed, codes)
        return torch.cat(halves, dim=1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.generator(self.conditioning(codes), self.truncation)
        return images

    sefa_normalize_rows = False

    def sefa_layer_names(self) -> list[str]:
        return ["generator.gen_z"]

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]:
        """SeFa's A for BigGAN: the noise columns of the first linear layer (`gen_z`). In
        `both` the class-embedding columns are zeroed, so SeFa's directions live in the noise
        subspace; `class` codes have no weight of their own to factorise."""
        if layers not in (None, [0]):
            raise InvalidOptionError(
                "BigGAN SeFa uses the first linear layer only: layers=None or [0]"
            )
        if self.space == "class":
            raise InvalidOptionError(
                "SeFa factorises BigGAN's noise weights (gen_z's noise columns); space 'class' "
                "has none to factorise: use space 'noise' or 'both', or a Hessian method"
            )
        weight = self.generator.gen_z.weight.detach().clone()
        if self.space == "noise":
            return [weight[:, : self.z_dim]]
        weight[:, self.z_dim :] = 0
        return [weight]


def load_biggan(name: str, location: str, truncation: float, space: str = "both") -> Generator:
    if (
        isinstance(truncation, bool)
        or not isinstance(truncation, int | float)
        or not 0 < truncation <= 1
    ):
        raise InvalidOptionError(f"BigGAN truncation must be in (0, 1], got {truncation!r}")
    space = "both" if space == BIGGAN_LEGACY_SPACE else space
    if space not in BIGGAN_SPACES:
        raise InvalidOptionError(
            f"{name}: BigGAN has no space {space!r}; use one of {', '.join(BIGGAN_SPACES)} "
            "(both = noise ⊕ class embedding)"
        )
    try:
        from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    except ImportError:
        raise MissingWeightsError(
            "biggan-deep models need the package pytorch-pretrained-biggan: "
            "`pip install 'latent-spectra[biggan]'`"
        ) from None
    directory = Path(location).expanduser()
    config_path, weights_path = directory / "config.json", directory / "pytorch_model.bin"
    missing = [str(p) for p in (config_path, weights_path) if not p.is_file()]
    if not location or missing:
        raise MissingWeightsError(
            f"{name}: missing {', '.join(missing) or 'a directory'}; put BigGAN-deep's config.json and "
            f"pytorch_model.bin (e.g. biggan-deep-256) in {str(directory)!r}"
        )
    config = BigGANConfig.from_json_file(str(config_path))
    model = BigGAN(config)
    state_dict = torch.load(weights_path, map_location="cpu")
    # Not the package's from_pretrained: that loads with strict=False and would silently keep
    # random weights for any key the file lacks.
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys:
        raise InvalidGeneratorError(
            f"{name}: {weights_path} lacks {len(result.missing_keys)} weights the config needs "
            f"(first: {result.missing_keys[:3]}); is config.json the one that belongs to it?"
        )
    _remove_spectral_norm(model)
    freeze(model)
    embeddings = model.embeddings.weight.detach().double().cpu().numpy()  # (z_dim, classes)
    z_dim, num_classes = int(config.z_dim), int(config.num_classes)

    def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Truncated-normal noise (n, z_dim) and uniformly random class indices (n,)."""
        from scipy.stats import truncnorm

        noise = truncation * truncnorm.rvs(-2, 2, size=(n, z_dim), random_state=rng)
        return noise, rng.integers(num_classes, size=n)

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        noise, classes = draw(n, rng)
        halves = {
            "both": (noise, embeddings[:, classes].T),
            "noise": (noise,),
            "class": (embeddings[:, classes].T,),
        }[space]
        return np.concatenate(halves, axis=1)

    facts: dict[str, Any] = {
        "model": name,
        "weights_file": str(weights_path.resolve()),
        "weights_sha256": file_sha256(weights_path),
        "truncation": float(truncation),
        "latent_layout": f"noise[0:{z_dim}] + class_embedding[{z_dim}:{2 * z_dim}]",
        "latent_distribution": "truncnorm(-2, 2) * truncation ⊕ embedding of a uniform random class",
        "output_dim": int(config.output_dim),
        "ignored_checkpoint_keys": len(result.unexpected_keys),
    }
    fixed = None
    if space != "both":
        # The fixed half: that of the `both` code sampled with seed 0 (the base code).
        base_noise, base_class = draw(1, np.random.default_rng(BIGGAN_FIXED_HALF_SEED))
        if space == "noise":
            fixed = embeddings[:, base_class[0]]
            facts.update(
                fixed_class=int(base_class[0]),
                fixed_class_embedding=fixed.tolist(),
                latent_layout=f"noise[0:{z_dim}]; class embedding fixed (fixed_class)",
                latent_distribution="truncnorm(-2, 2) * truncation",
            )
        else:
            fixed = base_noise[0]
            facts.update(
                fixed_noise=fixed.tolist(),
                latent_layout=f"class_embedding[0:{z_dim}]; noise fixed (fixed_noise)",
                latent_distribution="embedding of a uniform random class",
            )
        facts.update(space=space, fixed_half_seed=BIGGAN_FIXED_HALF_SEED)
    # float64, cast to the codes' dtype when used: the recorded half is exactly the one used.
    module = BigGANLatent(
        model, truncation, space, None if fixed is None else torch.as_tensor(fixed)
    )
    return Generator(
        name=name,
        family="biggan-deep",
        latent_dim=2 * z_dim if space == "both" else z_dim,
        module=module,
        facts=facts,
        sampler=sample,
        space=space,
        spaces=BIGGAN_SPACES,
    )


def _remove_spectral_norm(model: nn.Module) -> None:
    from torch.nn.utils import remove_spectral_norm
    from torch.nn.utils.spectral_norm import SpectralNorm

    for submodule in model.modules():
        for hook in list(submodule._forward_pre_hooks.values()):
            if isinstance(hook, SpectralNorm):
                remove_spectral_norm(submodule, hook.name)
