"""A code's measured peak is its own: memory an earlier chunk freed is returned to the system
before the window opens, even with glibc told to keep it (as the bare-metal workers are)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIB = 1024**2

# Runs in a fresh interpreter: allocate and touch 400 MiB on the heap, free it, then measure
# an empty window; `release` False skips the trim, the control that shows the test can fail.
SCRIPT = """
import json, sys
from services.pipeline import resources
from services.pipeline.resources import measure_peak, peak_rss_bytes
if sys.argv[1] == "keep":
    resources.release_free_heap = lambda: False
resources.reset_peak_rss()
before = peak_rss_bytes()
block = bytearray(400 * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
del block
with measure_peak("cpu") as peak:
    pass
print(json.dumps({"before": before, "window": peak.rss_bytes}))
"""


def _window(mode: str) -> dict[str, int]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MALLOC_MMAP_MAX_": "0",
        "MALLOC_TRIM_THRESHOLD_": str(8 * 1024**3),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's clear_refs")
def test_a_window_does_not_inherit_what_an_earlier_chunk_freed() -> None:
    trimmed = _window("trim")
    kept = _window("keep")
    assert kept["window"] - kept["before"] > 350 * MIB  # the freed block is still resident
    assert trimmed["window"] - trimmed["before"] < 50 * MIB
