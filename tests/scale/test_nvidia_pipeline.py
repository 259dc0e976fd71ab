"""A stylegan2-ada:PKL job through the pipeline: resolved, planned and run with the code
directory of the settings passed in (the core reads no setting), refused naming the setting
without it, and run by the chunk function with the process default a worker sets at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.config import Settings
from services.job_spec import SampledLatents
from services.pipeline import JobSpec, SpecError, run_job_inprocess, submit_job
from services.pipeline.cache import clear, configure_loading
from services.store import Store
from tests.geometry.test_nvidia_pickle import pickled  # noqa: F401  (writes the pickle)


@pytest.fixture
def store(sqlite_url: str) -> Store:
    store = Store(sqlite_url)
    store.migrate()
    return store


def test_a_pickle_job_runs_through_the_pipeline_with_the_code_directory(
    store: Store,
    pickled: tuple[Path, Path, Any],  # noqa: F811
) -> None:
    path, code_dir, _ = pickled
    spec = JobSpec(
        model=f"stylegan2-ada:{path}", space="w", latents=SampledLatents(count=2, seed=1)
    )
    clear()
    configure_loading(None)
    with pytest.raises(SpecError, match="SPECTRA_NVIDIA_CODE_DIR"):
        submit_job(store, spec, "a", None, settings=Settings(database_url=store.url))
    settings = Settings(database_url=store.url, nvidia_code_dir=str(code_dir))
    job, _ = submit_job(store, spec, "a", None, settings=settings)
    # The chunk function loads models without the settings at hand: a fresh process (a
    # worker) has only the default its start configured.
    clear()
    configure_loading(str(code_dir))
    try:
        finished = run_job_inprocess(store, job.id, device="cpu")
    finally:
        configure_loading(None)
        clear()
    assert finished.status == "succeeded", finished.error
    assert finished.n_done == 2
    spectrum = store.list_spectra(job_id=job.id, limit=1)[0]
    assert spectrum.eigenvalues.shape[0] == 3  # w of a 3-dimensional mapping
