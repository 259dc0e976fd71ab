"""A job records how much its generator's images vary (facts.image_variation): a degenerate
control (flat grey images) is flagged at resolution, the trained model is not."""

from __future__ import annotations

import pytest

from services.config import Settings
from services.geometry import image_variation, load_generator
from services.job_spec import SampledLatents
from services.pipeline import JobSpec, submit_job
from services.store import Store
from tests.support.stores import store_fixture

store = store_fixture("sqlite_url")


@pytest.mark.parametrize(
    ("model", "degenerate"), [("dcgan-faces", False), ("random-init:0:dcgan-faces", True)]
)
def test_resolution_records_image_variation(store: Store, model: str, degenerate: bool) -> None:
    spec = JobSpec(model=model, latents=SampledLatents(count=2, seed=1), top_k=3)
    job, _ = submit_job(store, spec, "alice", None, settings=Settings())
    recorded = job.resolved["generator"]["facts"]["image_variation"]
    assert set(recorded) == {"pixel_std", "degenerate", "threshold", "codes"}
    assert recorded["degenerate"] is degenerate and recorded["threshold"] == 0.02
    # Over the generator's own seed-0 sample (the codes its load-time probe runs).
    generator = load_generator(model)
    expected = image_variation(generator, generator.sample(8, seed=0))
    assert recorded["codes"] == 8
    assert abs(recorded["pixel_std"] - expected["pixel_std"]) < 1e-6
