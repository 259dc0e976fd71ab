"""The geometry core: generators, distances, metric-tensor methods, SeFa and analyses.

Pure computation (no SQL, no Celery, no HTTP); the only I/O is loading model weights.
Everything public is re-exported here; see docs/architecture.md ("Geometry core").
"""

from .analysis import alignment, anisotropy, average_metric, homogeneity
from .distances import DISTANCES, Distance, load_distance
from .errors import (
    GeometryError,
    InvalidGeneratorError,
    InvalidLatentError,
    InvalidOptionError,
    MissingWeightsError,
    NonFiniteOutputError,
    NotConvergedError,
    UnknownDistanceError,
    UnknownMethodError,
    UnknownModelError,
)
from .generators import MODEL_SCHEMES, Generator, ModelInfo, list_models, load_generator
from .linalg import SpectrumResult, spectrum_from_metric, summary_of
from .methods import METHODS, compute_metric, compute_spectrum, metric_columns
from .registry import JOB_METHODS, METHOD_REGISTRY, MethodInfo
from .sefa import sefa

__all__ = [
    "JOB_METHODS",
    "METHOD_REGISTRY",
    "MethodInfo",
    "DISTANCES",
    "METHODS",
    "MODEL_SCHEMES",
    "Distance",
    "Generator",
    "GeometryError",
    "InvalidGeneratorError",
    "InvalidLatentError",
    "InvalidOptionError",
    "MissingWeightsError",
    "ModelInfo",
    "NonFiniteOutputError",
    "NotConvergedError",
    "SpectrumResult",
    "UnknownDistanceError",
    "UnknownMethodError",
    "UnknownModelError",
    "alignment",
    "anisotropy",
    "average_metric",
    "compute_metric",
    "compute_spectrum",
    "homogeneity",
    "list_models",
    "load_distance",
    "load_generator",
    "metric_columns",
    "sefa",
    "spectrum_from_metric",
    "summary_of",
]
