"""A short randomised fault schedule (the long one: bench/bench_fault_schedule.py): a seeded
stream of jobs on two real workers with the matrix's faults injected at random moments, some
cancels and resumes among them; nothing lost, duplicated or falsely failed, every spectrum bit
for bit a clean run's, nothing landing on a terminal job, and every fault recovered from."""

from __future__ import annotations

import os

import pytest

from tests.pipeline.fault_schedule import run_schedule, schedule_rig

SEED = int(os.environ.get("SPECTRA_SCHEDULE_SEED", "2311"))
SECONDS = float(os.environ.get("SPECTRA_SCHEDULE_SECONDS", "90"))


@pytest.mark.slow
def test_a_short_randomised_fault_schedule_keeps_every_invariant() -> None:
    with schedule_rig() as (rig, tmp):
        # The host link cut first: the one fault whose rig (workers on network namespaces)
        # no other test of this file exercises; the rest are drawn at random.
        result = run_schedule(
            rig, seed=SEED, seconds=SECONDS, tmp=tmp, min_faults=4, first=("host link cut",)
        )
    assert result.faults and result.faults[0].fault == "host link cut", result.as_json()
    assert result.latents > 0 and result.stored + result.lost <= result.latents
    assert result.problems() == [], result.as_json()
