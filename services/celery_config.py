"""The Celery message contract both sides share: the chunk task's name and queue, time
limits, and the broker settings. The worker builds its app from it and the API's dispatcher
sends in this format, so neither needs to import the other.

Delivery is at-least-once by design (late acknowledgement, reject when the worker dies); the
chunk function makes a second delivery harmless (claim by compare-and-set, results idempotent
per latent).
"""

from __future__ import annotations

from celery import Celery

from services.config import Settings

CHUNK_TASK = "worker.tasks.run_chunk_task"
# The planner's tasks (worker/planning.py): plan a job accepted before its model had a cost
# profile (args: the job id), measure a profile a dry run asked for (args: the cost inputs).
PLAN_TASK = "worker.planning.plan_job_task"
PROFILE_TASK = "worker.planning.measure_profile_task"


def plan_task_id(job_id: str) -> str:
    """A job's planning message is named after the job, so the reaper sees whether the
    broker still holds it (and a second send of it is visibly the same task)."""
    return f"plan-{job_id}"


CHUNK_QUEUE = "gpu"
# A stored comparison, computed on the same workers (on the GPU where they have one).
COMPARISON_TASK = "worker.comparison_tasks.run_comparison_task"
# A child process is replaced after this many chunks: bounds what a leak in a model, a
# distance or the allocator can accumulate. Loaded models live in a per-process cache, so
# a new child reloads them once.
MAX_TASKS_PER_CHILD = 50
# Seconds between the soft time limit (the chunk stops at the next code and is re-run later
# from where it stopped) and the hard limit (the child is killed).
SOFT_LIMIT_MARGIN_S = 30


def time_limits(settings: Settings) -> tuple[int, int, int]:
    """(soft, hard, visibility timeout) in seconds. The visibility timeout must exceed the
    hard limit, or Redis hands a still-running chunk to a second worker."""
    hard = settings.chunk_time_limit_s
    soft = max(1, hard - min(SOFT_LIMIT_MARGIN_S, hard // 10))
    visibility = hard + max(300, hard // 2)
    return soft, hard, visibility


def configure(app: Celery, settings: Settings) -> None:
    soft, hard, visibility = time_limits(settings)
    app.conf.update(
        broker_url=settings.broker_url,
        # PostgreSQL is the record of every chunk; Celery results are not kept.
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=soft,
        task_time_limit=hard,
        broker_transport_options={"visibility_timeout": visibility},
        # Same value for results, should a result backend ever be configured.
        result_backend_transport_options={"visibility_timeout": visibility},
        worker_max_tasks_per_child=MAX_TASKS_PER_CHILD,
        # When Redis goes away, a running chunk keeps computing and writing to PostgreSQL;
        # its lost acknowledgement only means a duplicate delivery, which does nothing.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_routes={
            CHUNK_TASK: {"queue": CHUNK_QUEUE},
            PLAN_TASK: {"queue": CHUNK_QUEUE},
            PROFILE_TASK: {"queue": CHUNK_QUEUE},
            COMPARISON_TASK: {"queue": CHUNK_QUEUE},
        },
        task_default_queue=CHUNK_QUEUE,
        task_serializer="json",
        accept_content=["json"],
        # Keep trying to reach Redis when it restarts instead of exiting.
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower
        task_send_sent_event=True,
    )
