"""The Celery application: Redis carries the messages, PostgreSQL holds the truth.

Its configuration is the message contract in ``services.celery_config`` (shared with the
API's dispatcher). Nothing here touches CUDA or loads a model: importing this module is
cheap and safe in the launcher and Flower.
"""

from __future__ import annotations

from celery import Celery

from services.celery_config import CHUNK_QUEUE, CHUNK_TASK, configure, time_limits
from services.config import Settings, get_settings

__all__ = ["CHUNK_QUEUE", "CHUNK_TASK", "SETTINGS", "app", "configure", "time_limits"]

# Read once, where the worker starts; everything below is given what it needs from it.
SETTINGS: Settings = get_settings()
app = Celery(
    "latent_spectra", include=["worker.tasks", "worker.planning", "worker.comparison_tasks"]
)
configure(app, SETTINGS)
