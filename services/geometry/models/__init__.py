"""The models: `load_generator` (registry.py) and the `Generator` it returns (generator.py), one
module per family with its constants (dcgan, torchscript, python_factory, biggan, stylegan2/,
nvidia), the controls (controls.py) and the capabilities a family's module may offer, one
`typing.Protocol` each (capabilities.py). The catalogue of names, families and spaces is
services/model_catalogue.py (torch-free), re-exported here.
"""

from services.model_catalogue import (
    ALL_SPACES,
    BIGGAN_SPACES,
    DCGAN_FACES,
    LATENT_SPACES,
    MODEL_SCHEMES,
    ModelInfo,
    canonical_space,
    list_models,
    list_schemes,
)

from .capabilities import (
    FoldableFirstLayer,
    GanspaceLayer,
    NamedLayers,
    Refoldable,
    SefaWeights,
    UserSefaWeights,
)
from .controls import base_model_name, parse_control
from .generator import Generator, file_sha256, state_dict_sha256
from .registry import load_generator
from .variation import (
    DEGENERATE_PIXEL_STD,
    image_variation,
    sampled_image_variation,
    unmeasured_image_variation,
)

__all__ = [
    "ALL_SPACES",
    "DEGENERATE_PIXEL_STD",
    "image_variation",
    "BIGGAN_SPACES",
    "DCGAN_FACES",
    "LATENT_SPACES",
    "MODEL_SCHEMES",
    "FoldableFirstLayer",
    "GanspaceLayer",
    "Generator",
    "ModelInfo",
    "NamedLayers",
    "Refoldable",
    "SefaWeights",
    "UserSefaWeights",
    "base_model_name",
    "canonical_space",
    "file_sha256",
    "list_models",
    "list_schemes",
    "load_generator",
    "parse_control",
    "sampled_image_variation",
    "unmeasured_image_variation",
    "state_dict_sha256",
]
