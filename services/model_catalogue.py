"""The catalogue of models: built-in names, loader schemes, their families, spaces and layers.

Torch-free, and outside the geometry core for that reason (as method_registry.py is): `spectra
models`, the job spec and the API's model list read it without importing torch. The loaders
(services/geometry/models: the registry and one module per family) take the same names and
spaces from here, and services.geometry.models re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    """A built-in model, or a loader scheme (`scheme=True`: the name is a pattern, its latent
    dimension depends on the file). `layers` are the names `layer:NAME` distances and
    GANSpace accept; in a scheme's list `{i}` stands for an index."""

    name: str
    family: str
    latent_dim: int | None
    description: str
    spaces: tuple[str, ...] = ("z",)
    layers: tuple[str, ...] = ()
    scheme: bool = False


DCGAN_FACES = "dcgan-faces"
OMNIART_EYE = "omniart-eye"
OMNIART_FAMILY = "cdcgan"  # a conditional DCGAN

# Scheme prefixes: a model name starting with one is loaded by that family's module.
STYLEGAN2_SCHEME = "stylegan2:"
NVIDIA_SCHEME = "stylegan2-ada:"
BIGGAN_SCHEME = "biggan-deep:"
TORCHSCRIPT_SCHEME = "torchscript:"
PYTHON_SCHEME = "python:"

LATENT_SPACES = ("z", "w", "w+")  # StyleGAN2 (rosinality checkpoints and NVIDIA pickles)
# Conditional families' spaces: the input (noise ⊕ class) and its two halves; "z" is accepted
# as a name of "both" (BigGAN jobs recorded it so before BigGAN had spaces).
CONDITIONAL_SPACES = ("both", "noise", "class")
CONDITIONAL_LEGACY_SPACE = "z"
CONDITIONAL_FAMILIES = ("biggan-deep", OMNIART_FAMILY)
BIGGAN_SPACES = CONDITIONAL_SPACES
BIGGAN_LEGACY_SPACE = CONDITIONAL_LEGACY_SPACE
# Every space some family offers: what a job's `space` may name at all.
ALL_SPACES = (*LATENT_SPACES, *BIGGAN_SPACES)

# The folded DCGAN's Sequential: code-to-feature map, then (ReLU, transposed conv) x 4, Tanh.
DCGAN_LAYERS = tuple(f"net.{i}" for i in range(10))
# omniart-eye folded the same way (its Dropout, the identity in eval mode, left out).
OMNIART_LAYERS = tuple(f"net.{i}" for i in range(12))
STYLEGAN2_LAYERS = (
    "w",
    "synthesis.conv1",
    "synthesis.to_rgb1",
    "synthesis.convs.{i}",
    "synthesis.to_rgbs.{i}",
)
EVERY_SUBMODULE = ("every named submodule of the module (named_modules order)",)

_BUILT_IN = (
    ModelInfo(
        name=DCGAN_FACES,
        family="dcgan",
        latent_dim=100,
        description="Pretrained DCGAN, 64x64 RGB faces (weights from the gan-face-generate package).",
        layers=DCGAN_LAYERS,
    ),
    ModelInfo(
        name=OMNIART_EYE,
        family=OMNIART_FAMILY,
        latent_dim=108,
        description="Pretrained conditional DCGAN, 128x128 RGB eyes from paintings: noise 100 ⊕ "
        "one-hot colour label 8 (weights from the omniart-eye-generator package).",
        spaces=CONDITIONAL_SPACES,
        layers=OMNIART_LAYERS,
    ),
)

# Loader schemes: not registry entries (they need a path), listed for help texts and errors.
MODEL_SCHEMES = {
    "torchscript:PATH": "a TorchScript module mapping codes (B, d) to images (B, 3, H, W) in [-1, 1]",
    "python:FILE_OR_MODULE:FACTORY": "a factory returning (module, latent_dim[, extras])",
    "biggan-deep:DIR": "BigGAN-deep from a directory with config.json and pytorch_model.bin; "
    "spaces both (noise ⊕ class embedding), noise, class",
    "stylegan2:PATH": "a rosinality/stylegan2-pytorch checkpoint (g_ema state dict); spaces z, w, w+",
    "stylegan2-ada:PKL": "an NVIDIA stylegan2-ada-pytorch / stylegan3 network pickle (runs its "
    "code: needs SPECTRA_NVIDIA_CODE_DIR); spaces z, w, w+",
}

_SCHEMES = (
    ModelInfo(
        "stylegan2:PATH",
        "stylegan2",
        None,
        MODEL_SCHEMES["stylegan2:PATH"],
        spaces=LATENT_SPACES,
        layers=STYLEGAN2_LAYERS,
        scheme=True,
    ),
    ModelInfo(
        "stylegan2-ada:PKL",
        "stylegan2-ada",
        None,
        MODEL_SCHEMES["stylegan2-ada:PKL"],
        spaces=LATENT_SPACES,
        layers=("w", "synthesis.<every named submodule>"),
        scheme=True,
    ),
    ModelInfo(
        "torchscript:PATH", "torchscript", None, MODEL_SCHEMES["torchscript:PATH"], scheme=True
    ),
    ModelInfo(
        "python:FILE_OR_MODULE:FACTORY",
        "python",
        None,
        MODEL_SCHEMES["python:FILE_OR_MODULE:FACTORY"],
        layers=EVERY_SUBMODULE,
        scheme=True,
    ),
    ModelInfo(
        "biggan-deep:DIR",
        "biggan-deep",
        None,
        MODEL_SCHEMES["biggan-deep:DIR"],
        spaces=BIGGAN_SPACES,
        layers=EVERY_SUBMODULE,
        scheme=True,
    ),
    ModelInfo(
        "shuffled:SEED:BASE",
        "as BASE",
        None,
        "BASE with every learned tensor's entries permuted (BatchNorm statistics kept)",
        spaces=("as BASE",),
        layers=("as BASE",),
        scheme=True,
    ),
    ModelInfo(
        "shuffled-published:SEED:BASE",
        "as BASE",
        None,
        "the published shuffle: every state-dict tensor permuted, BatchNorm statistics too",
        spaces=("as BASE",),
        layers=("as BASE",),
        scheme=True,
    ),
    ModelInfo(
        "random-init:SEED:BASE",
        "as BASE",
        None,
        "BASE's weights re-drawn by its own init, BatchNorm kept (the published random-init)",
        spaces=("as BASE",),
        layers=("as BASE",),
        scheme=True,
    ),
)


def list_models() -> list[ModelInfo]:
    """The built-in registry entries."""
    return list(_BUILT_IN)


def list_schemes() -> list[ModelInfo]:
    """The loader schemes and control prefixes, with their spaces and layer names."""
    return list(_SCHEMES)


def built_in_names() -> list[str]:
    return [info.name for info in _BUILT_IN]


def canonical_space(family: str | None, space: str) -> str:
    """A space by its current name: what BigGAN jobs recorded as `z` before BigGAN had spaces
    is `both` (and so for every conditional family). Lets a stored job's space be compared
    with a new job's."""
    return "both" if family in CONDITIONAL_FAMILIES and space == CONDITIONAL_LEGACY_SPACE else space
