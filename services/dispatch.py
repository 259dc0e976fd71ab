"""How committed chunks are handed to something that runs them (the API, the CLI, the reaper).

The pipeline calls ``dispatch(chunk_ids)`` only after the job's rows are committed. By default
that is a Celery enqueue (one task per chunk, named by the chunk id so that a cancel can revoke
what is still queued); tests and the embedded mode run chunks in-process instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from services.celery_config import (
    CHUNK_QUEUE,
    CHUNK_TASK,
    COMPARISON_TASK,
    PLAN_TASK,
    PROFILE_TASK,
    configure,
    plan_task_id,
)
from services.config import Settings

if TYPE_CHECKING:
    from celery import Celery

    from services.pipeline.costs import Workers
    from services.pipeline.lease import LeaseSettings
    from services.store import Store

log = logging.getLogger("api")

INPROCESS_WORKER_ID = "api-inprocess"
PUBLISH_TIMEOUT_S = 3.0


class ChunkDispatcher(Protocol):
    """The one thing a use case that only re-queues chunks needs (resume)."""

    def dispatch(self, chunk_ids: list[str]) -> None: ...


class Dispatcher(Protocol):
    def dispatch(self, chunk_ids: list[str]) -> None: ...

    def dispatch_comparison(self, comparison_id: str) -> None:
        """Hand a stored comparison (committed, queued) to whatever computes it."""
        ...

    def revoke(self, chunk_ids: list[str]) -> None: ...
    def plan_job(self, job_id: str, workers: Workers) -> None:
        """Have a worker plan a job accepted before its model had a cost profile."""
        ...

    def measure_profile(self, inputs: dict[str, Any], workers: Workers) -> None:
        """Have a worker measure a model's cost profile (services.pipeline.costs)."""
        ...

    def ping(self, timeout_s: float) -> None:
        """Raise if whatever runs chunks cannot be reached within ``timeout_s``."""
        ...

    def devices(self) -> set[str] | None:
        """The devices chunks can run on now; None when that cannot be known."""
        ...


class CeleryDispatcher:
    """Enqueue chunk tasks in the worker's message format (``services.celery_config``).

    Given settings, it builds its own Celery instance on the broker of THOSE settings and
    gives up publishing after a few seconds (a request must not wait for the broker; the
    pipeline keeps the job for the reaper). Given an app (the worker's own), it sends with
    that app's policy.
    """

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        if app is None:
            if settings is None:
                raise TypeError("CeleryDispatcher needs settings or a Celery app")
            app = self._publishing_app(settings)
        self.app = app

    @staticmethod
    def _publishing_app(settings: Settings) -> Celery:
        from celery import Celery

        app = Celery("latent_spectra_api")
        configure(app, settings)
        # A worker retries the broker forever; a request must not.
        app.conf.update(
            broker_connection_timeout=PUBLISH_TIMEOUT_S,
            task_publish_retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            },
        )
        return app

    def dispatch(self, chunk_ids: list[str]) -> None:
        for chunk_id in chunk_ids:
            # The task id is the chunk id, as the worker expects (revoke by chunk id).
            self.app.send_task(CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE)

    def plan_job(self, job_id: str, workers: Workers) -> None:
        # The worker plans with its own settings (its device, threads and budget).
        self.app.send_task(
            PLAN_TASK, args=[job_id], task_id=plan_task_id(job_id), queue=CHUNK_QUEUE
        )

    def measure_profile(self, inputs: dict[str, Any], workers: Workers) -> None:
        self.app.send_task(PROFILE_TASK, args=[inputs], queue=CHUNK_QUEUE)

    def dispatch_comparison(self, comparison_id: str) -> None:
        self.app.send_task(
            COMPARISON_TASK,
            args=[comparison_id],
            task_id=f"comparison-{comparison_id}",
            queue=CHUNK_QUEUE,
        )

    def revoke(self, chunk_ids: list[str]) -> None:
        if chunk_ids:
            # Revoking only skips tasks not yet started; running chunks stop on the cancel flag.
            self.app.control.revoke(chunk_ids)

    def ping(self, timeout_s: float) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s
            )

    def devices(self) -> set[str] | None:
        from services.worker_devices import advertised_devices

        try:
            return advertised_devices(str(self.app.conf.broker_url))
        except Exception:  # the broker is down: the job is kept for the reaper, device unchecked
            log.warning("could not read the workers' devices from the broker", exc_info=True)
            return None


class InProcessDispatcher:
    """Run each chunk synchronously in the calling thread (embedded mode and tests)."""

    def __init__(
        self,
        store: Store,
        device: str = "cpu",
        settings: Settings | None = None,
        *,
        lease: LeaseSettings | None = None,
    ) -> None:
        from services.pipeline.lease import LeaseSettings

        self.store = store
        # The edge that builds it passes LeaseSettings.of(settings); tests take the defaults.
        self.lease = lease or LeaseSettings.defaults()
        self.device = device
        self.settings = settings

    def dispatch(self, chunk_ids: list[str]) -> None:
        from services.pipeline import run_chunk

        for chunk_id in chunk_ids:
            run_chunk(
                self.store, chunk_id, INPROCESS_WORKER_ID, lease=self.lease, device=self.device
            )

    def plan_job(self, job_id: str, workers: Workers) -> None:
        from services.pipeline import costs

        costs.plan_pending_job(self.store, job_id, workers, self.dispatch)

    def measure_profile(self, inputs: dict[str, Any], workers: Workers) -> None:
        from services.pipeline import costs

        costs.measure_profile_for(self.store, inputs, workers)

    def dispatch_comparison(self, comparison_id: str) -> None:
        from services.comparisons.stored import run_comparison

        run_comparison(self.store, comparison_id, self.settings or Settings())

    def revoke(self, chunk_ids: list[str]) -> None:
        # Nothing is queued: cancellation works through the store's cancel flag.
        return None

    def ping(self, timeout_s: float) -> None:
        return None

    def devices(self) -> set[str] | None:
        return {self.device}
