"""The method registry, for the geometry core: it lives in services.method_registry so that
the job spec and the CLI can read it without importing torch."""

from services.method_registry import (
    CORE_OPTIONS,
    DIRECTION_METHODS,
    HESSIAN_METHODS,
    JOB_METHODS,
    JOB_OPTIONS,
    METHOD_REGISTRY,
    JobMethod,
    MethodInfo,
)

__all__ = [
    "CORE_OPTIONS",
    "DIRECTION_METHODS",
    "HESSIAN_METHODS",
    "JOB_METHODS",
    "JOB_OPTIONS",
    "JobMethod",
    "METHOD_REGISTRY",
    "MethodInfo",
]
