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
from .ganspace import ganspace
from .homogeneity_sample import (
    PositionSample,
    homogeneity_of_sample,
    positions_for_pairs,
    sample_positions,
)
from .linalg import SpectrumResult, spectrum_from_metric, summary_of
from .methods import METHODS, compute_metric, compute_spectrum, metric_columns
from .models import (
    MODEL_SCHEMES,
    Generator,
    ModelInfo,
    image_variation,
    list_models,
    list_schemes,
    load_generator,
    sampled_image_variation,
    unmeasured_image_variation,
)
from .registry import JOB_METHODS, METHOD_REGISTRY, MethodInfo
from .sefa import sefa
from .statistics import (
    Interval,
    bootstrap,
    bootstrap_offdiagonal,
    expected_abs_cosine,
    paired_difference,
    percentile_bounds,
    position_statistics,
    random_abs_cosine_baseline,
    random_subspace_baseline,
    top_share,
)
from .streaming import AverageMetric, analysis_device

__all__ = [
    "AverageMetric",
    "PositionSample",
    "analysis_device",
    "homogeneity_of_sample",
    "positions_for_pairs",
    "sample_positions",
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
    "Interval",
    "bootstrap",
    "bootstrap_offdiagonal",
    "paired_difference",
    "percentile_bounds",
    "expected_abs_cosine",
    "position_statistics",
    "random_abs_cosine_baseline",
    "random_subspace_baseline",
    "top_share",
    "anisotropy",
    "average_metric",
    "compute_metric",
    "compute_spectrum",
    "ganspace",
    "homogeneity",
    "image_variation",
    "list_models",
    "list_schemes",
    "load_distance",
    "load_generator",
    "metric_columns",
    "sampled_image_variation",
    "unmeasured_image_variation",
    "sefa",
    "spectrum_from_metric",
    "summary_of",
]
