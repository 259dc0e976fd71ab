"""The command line's faces of issue 23: `spectra resume JOB` computes again what a finished
job is missing, and a store whose disk is full is one line saying so, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli import main
from services.pipeline import JobSpec, submit_job
from services.store import Store
from tests.api.conftest import MODEL

REPO = Path(__file__).resolve().parents[2]
SPEC = JobSpec(model=MODEL, latents={"count": 3, "seed": 4}, top_k=3, chunk_size=1)  # type: ignore[arg-type]


def test_resume_runs_a_cancelled_jobs_missing_latents_here(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(sqlite_url)
    store.migrate()
    job, _ = submit_job(store, SPEC, "local", None)
    assert store.request_cancel(job.id)

    assert main(["resume", job.id[:8], "--quiet", "--database", sqlite_url]) == 0  # a prefix
    out = capsys.readouterr().out
    assert f"job {job.id} resumed: 3 codes to compute" in out
    assert "status succeeded: 3 done, 0 failed" in out
    assert store.stored_latent_indices(job.id) == {0, 1, 2}

    # Nothing is missing now: refused in one line, exit 1.
    assert main(["resume", job.id, "--database", sqlite_url]) == 1
    assert "nothing to resume" in capsys.readouterr().err


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A small filesystem of our own (root: a tmpfs), filled to the last byte after the test
    database was created on it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)


def test_embedded_run_on_a_full_disk_is_one_line_not_a_traceback(full_disk: Path) -> None:
    url = f"sqlite:///{full_disk / 'spectra.db'}"
    with Store(url) as store:
        store.migrate()
    with (full_disk / "ballast").open("wb", buffering=0) as ballast:
        try:
            while True:
                ballast.write(b"\0" * 65536)
        except OSError:
            pass  # full
    command = [
        sys.executable,
        "-m",
        "api.cli",
        "run",
        "--model",
        MODEL,
        "--latents",
        "2",
        "--top-k",
        "3",
        "--database",
        url,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("spectra run: the store is full or read-only")
