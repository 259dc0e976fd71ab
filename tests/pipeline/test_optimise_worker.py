"""An optimisation job through a real Celery worker (prefork, started like `spectra worker
--cpu`) on PostgreSQL and a private Redis: the same task type runs it, dispatching on the
job's kind, and it stores what the in-process runner stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from celery import Celery

from services.config import Settings
from services.pipeline import JobSpec, run_job_inprocess, submit_job
from services.pipeline.optimisation import submit_optimisation
from services.pipeline.optimise_spec import OptimiseSpec
from services.store import Store
from tests.pipeline import toy_generators
from tests.pipeline.conftest import Cluster
from tests.support.waiting import wait_for
from worker.celery_app import CHUNK_QUEUE, CHUNK_TASK

TOY = f"python:{Path(toy_generators.__file__).resolve()}:nan_at_trigger"


def _specs(basis_job: str) -> OptimiseSpec:
    return OptimiseSpec(
        model=TOY,
        targets={"count": 4, "seed": 5},  # type: ignore[arg-type]
        optimiser="adam-topk",
        k=3,
        basis={"job": basis_job},  # type: ignore[arg-type]
        steps=20,
        chunk_size=2,
        restarts=2,
    )


def _basis(store: Store) -> str:
    job, _ = submit_job(
        store,
        JobSpec(model=TOY, latents={"count": 4, "seed": 2}, dtype="float64"),  # type: ignore[arg-type]
        "worker-test",
        None,
        settings=Settings(),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_job_inprocess(store, job.id).status == "succeeded"
    finally:
        torch.set_num_threads(threads)
    return job.id


def test_an_optimisation_job_runs_in_a_celery_worker_as_in_process(
    cluster: Cluster, module_store: Store, sender: Celery, sqlite_url: str
) -> None:
    cluster.running()

    def dispatch(chunk_ids: list[str]) -> None:
        for chunk_id in chunk_ids:
            sender.send_task(CHUNK_TASK, args=[chunk_id], task_id=chunk_id, queue=CHUNK_QUEUE)

    job, created = submit_optimisation(
        module_store, _specs(_basis(module_store)), "worker-test", dispatch, settings=Settings()
    )
    assert created and len(module_store.list_chunks(job.id)) == 2

    def finished() -> bool:
        return module_store.get_job(job.id).status in ("succeeded", "failed", "cancelled")

    wait_for(finished, 180, "the optimisation job to finish", poll_s=0.2)
    remote = module_store.get_job(job.id)
    assert remote.status == "succeeded" and remote.n_done == 4, remote.error
    assert all(c.attempts == 1 for c in module_store.list_chunks(job.id))

    embedded = Store(sqlite_url)
    embedded.migrate()
    local, _ = submit_optimisation(
        embedded, _specs(_basis(embedded)), "worker-test", None, settings=Settings()
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        assert run_job_inprocess(embedded, local.id).status == "succeeded"
    finally:
        torch.set_num_threads(threads)
    assert local.resolved["targets"]["sha256"] == remote.resolved["targets"]["sha256"]
    for mine, theirs in zip(
        embedded.optimisation_results(local.id),
        module_store.optimisation_results(job.id),
        strict=True,
    ):
        assert mine.target_index == theirs.target_index and mine.restarts == 2
        np.testing.assert_allclose(mine.losses, theirs.losses, rtol=1e-6)
        np.testing.assert_allclose(mine.final_code, theirs.final_code, rtol=1e-6, atol=1e-9)
    embedded.close()
