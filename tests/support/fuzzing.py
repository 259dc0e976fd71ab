"""How the schema-driven tests (conformance, fuzzing) draw their cases with Hypothesis."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def repeatable(max_examples: int) -> settings:
    """The same cases on every run (derandomised, no example database), no deadline (the app
    runs in-process on a shared machine, so one case's time says nothing), and no health
    check (schemathesis strategies are slow to draw and filter much by design)."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
