"""The one table of methods and their options (torch-free: the CLI and the job spec read it
without importing the geometry core; services.geometry.registry re-exports it).

Every method the service knows (the five Hessian methods of the geometry core, SeFa and GANSpace) with
the options the core takes and the options a job may set. The geometry core's option checks,
the pipeline's ``JobSpec`` (its ``method`` literal and its per-method option checks) and the
docs are all read from here, so a new option is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True)
class MethodInfo:
    name: str
    # Keyword options the geometry core's function takes (others are refused there).
    core_options: tuple[str, ...]
    # Options a job spec may set for this method: the core options the service exposes plus
    # the pipeline's own (block_columns). An option given to a method that does not take it
    # is refused rather than silently ignored: a user who sets `step` expects it to matter.
    job_options: tuple[str, ...]
    # A method computing (part of) the pull-back Hessian at a code; SeFa reads the weights,
    # GANSpace seeded samples.
    hessian: bool = True


METHOD_REGISTRY: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("jacobian", core_options=("batch",), job_options=("batch", "block_columns")),
        MethodInfo("hvp", core_options=("batch",), job_options=("batch",)),
        MethodInfo(
            "lanczos", core_options=("tol", "max_iter", "seed"), job_options=("tol", "max_iter")
        ),
        MethodInfo("fd", core_options=("step", "batch"), job_options=("step", "batch")),
        MethodInfo("bp", core_options=(), job_options=()),
        MethodInfo(
            "sefa",
            core_options=("preset", "layers", "normalize_rows", "fold_batchnorm"),
            job_options=("preset", "layers", "normalize_rows", "fold_batchnorm"),
            hessian=False,
        ),
        MethodInfo(
            "ganspace",
            core_options=("samples", "sample_seed", "layer"),
            job_options=("samples", "sample_seed", "layer"),
            hessian=False,
        ),
    )
}

# The names a job spec accepts, as a type (pydantic and mypy need a literal).
JobMethod = Literal["jacobian", "hvp", "lanczos", "fd", "bp", "sefa", "ganspace"]
if get_args(JobMethod) != tuple(METHOD_REGISTRY):  # pragma: no cover - a programming error
    raise RuntimeError("JobMethod must list exactly the methods of METHOD_REGISTRY, in order")

JOB_METHODS: tuple[str, ...] = tuple(METHOD_REGISTRY)
HESSIAN_METHODS: tuple[str, ...] = tuple(n for n, info in METHOD_REGISTRY.items() if info.hessian)
# One set of directions per model (SeFa from the weights, GANSpace from seeded samples): a job
# of these takes no latent codes and no image distance, and stores one spectrum.
DIRECTION_METHODS: tuple[str, ...] = tuple(
    n for n, info in METHOD_REGISTRY.items() if not info.hessian
)
CORE_OPTIONS: dict[str, set[str]] = {
    n: set(METHOD_REGISTRY[n].core_options) for n in HESSIAN_METHODS
}
JOB_OPTIONS: dict[str, tuple[str, ...]] = {
    n: info.job_options for n, info in METHOD_REGISTRY.items()
}
