"""The stored-comparison task: a thin wrapper over ``services.comparisons.stored``. It runs on
the chunk workers (their queue), so a comparison uses the worker's GPU where it has one
(``SPECTRA_ANALYSIS_DEVICE=auto``)."""

from __future__ import annotations

from celery import Task

from services.celery_config import COMPARISON_TASK
from services.comparisons.stored import run_comparison
from services.pipeline.chunks import STORE_WAITS
from worker.celery_app import SETTINGS, app
from worker.tasks import get_store


@app.task(  # type: ignore[untyped-decorator]  # celery ships no types
    bind=True,
    name=COMPARISON_TASK,
    autoretry_for=STORE_WAITS,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def run_comparison_task(self: Task, comparison_id: str) -> str:
    """Compute one stored comparison; its status and progress are in the store."""
    return str(run_comparison(get_store(), comparison_id, SETTINGS).status)
