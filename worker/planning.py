"""Celery tasks of the planner: plan a job accepted before its model had a cost profile, and
measure a profile a dry run asked for. Thin: the use cases are services/pipeline/costs.py.

They run on the chunk queue, so the worker that measures a profile is one that runs the
model's chunks: its device, its thread count and its memory budget are the ones planned for.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from services.celery_config import PLAN_TASK, PROFILE_TASK
from services.pipeline import costs
from services.pipeline.cache import configure_loading
from services.pipeline.chunks import STORE_WAITS
from worker.celery_app import SETTINGS, app
from worker.tasks import dispatch, get_store

log = logging.getLogger(__name__)


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]
def _configure_loading(**_: Any) -> None:
    # Where NVIDIA pickles find their code, for the chunk function (it loads models without
    # the settings at hand): this worker's setting, read at its start.
    configure_loading(SETTINGS.nvidia_code_dir or None)


def _workers() -> costs.Workers:
    return costs.Workers.from_settings(SETTINGS)


@app.task(name=PLAN_TASK, autoretry_for=STORE_WAITS, retry_backoff=2, max_retries=8)  # type: ignore[untyped-decorator]
def plan_job_task(job_id: str) -> str:
    """Measure (or read) the job's model profile, then dispatch its chunks or refuse it."""
    outcome = costs.plan_pending_job(get_store(), job_id, _workers(), dispatch)
    log.info("planning of job %s: %s", job_id, outcome)
    return outcome


@app.task(name=PROFILE_TASK, autoretry_for=STORE_WAITS, retry_backoff=2, max_retries=8)  # type: ignore[untyped-decorator]
def measure_profile_task(inputs: dict[str, Any]) -> str:
    """Measure a model's cost profile for a later plan (a dry run of an unprofiled model)."""
    return costs.measure_profile_for(get_store(), inputs, _workers())
