"""The table of job kinds: every entry loads, and a resolved spec finds its kind."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from services.pipeline.kinds import JOB_KINDS, OPTIMISE_KIND, SPECTRUM_KIND, kind_of
from services.pipeline.optimisation import run_optimisation_chunk
from services.pipeline.optimise_report import report
from services.pipeline.optimise_spec import OptimiseSpec, resolve_optimisation


@pytest.mark.parametrize("name", sorted(JOB_KINDS))
def test_every_kind_names_what_it_brings(name: str) -> None:
    kind = JOB_KINDS[name]
    assert issubclass(kind.load("spec"), BaseModel)
    for part in ("resolve", "submit", "report"):
        assert callable(kind.load(part)), part
    runner = kind.chunk_runner()
    if runner is not None:  # the chunk loop hands it a store, job, chunk, device, hooks
        assert list(inspect.signature(runner).parameters) == [
            "store",
            "job",
            "chunk",
            "device",
            "hooks",
        ]


def test_a_resolved_spec_finds_its_kind() -> None:
    assert kind_of({"method": "jacobian"}).name == SPECTRUM_KIND  # spectra jobs record none
    optimise = kind_of({"kind": OPTIMISE_KIND})
    assert optimise.load("spec") is OptimiseSpec
    assert optimise.load("resolve") is resolve_optimisation
    assert optimise.chunk_runner() is run_optimisation_chunk
    assert optimise.load("report") is report
    assert kind_of({}).chunk_runner() is None  # the chunk loop's own spectra work
    with pytest.raises(ValueError, match="'render' is not one of spectra, optimise"):
        kind_of({"kind": "render"})
