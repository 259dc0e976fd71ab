"""The `spectra` command, embedded (SQLite file, in-process runner): run, export, import,
compare with pictures, keys; and its spec options mirroring JobSpec one to one."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from api.cli import build_parser, main
from services.pipeline import JobSpec
from services.store import Store
from tests.api.conftest import LATENT_DIM, MODEL

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REPO = Path(__file__).resolve().parents[2]


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparser: argparse.ArgumentParser = action.choices[name]
    return subparser


@pytest.mark.parametrize("command", ["run", "submit"])
def test_spec_options_mirror_jobspec_one_to_one(command: str) -> None:
    destinations = {a.dest for a in _subparser(command)._actions}
    fields = set(JobSpec.model_fields)
    # Every field is an option under its own name; latents takes three (count|file, seed, set).
    assert fields - {"latents"} <= destinations
    assert {"latents", "seed", "latent_set"} <= destinations
    flags = {s for a in _subparser(command)._actions for s in a.option_strings}
    assert {"--top-k", "--chunk-size", "--dtype", "--model", "--distance", "--method"} <= flags


def test_run_export_import_compare_keys(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `run` as a user runs it: a subprocess, the bar on stderr, the job id last on stdout.
    command = [
        sys.executable,
        "-m",
        "api.cli",
        "run",
        "--model",
        MODEL,
        "--distance",
        "mse",
        "--method",
        "jacobian",
        "--latents",
        "2",
        "--seed",
        "0",
        "--top-k",
        "5",
        "--dtype",
        "float64",
        "--chunk-size",
        "1",
        "--database",
        sqlite_url,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip().splitlines()[-1]
    assert UUID.match(job_id), done.stdout
    assert "2/2" in done.stderr  # tqdm's bar reached the end
    store = Store(sqlite_url)
    job = store.get_job(job_id)
    assert (job.status, job.n_done, job.owner) == ("succeeded", 2, "local")
    assert job.spec["chunk_size"] == 1 and len(store.list_chunks(job_id)) == 2

    # export -> the published layout
    out = tmp_path / "job.npz"
    assert main(["export", job_id, "-o", str(out), "--database", sqlite_url]) == 0
    archive = np.load(out, allow_pickle=False)
    assert archive["eva"].shape == (2, 5) and archive["evc"].shape == (2, LATENT_DIM, 5)
    assert np.all(np.diff(archive["eva"], axis=1) >= 0)  # ascending
    assert json.loads(str(archive["meta"]))["method"] == "jacobian"

    # import -> a second, finished job with the same eigenvalues
    capsys.readouterr()
    assert main(["import", str(out), "--database", sqlite_url]) == 0
    imported_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert UUID.match(imported_id) and imported_id != job_id
    original = [s.eigenvalues for s in store.list_spectra(job_id=job_id)]
    copied = [s.eigenvalues for s in store.list_spectra(job_id=imported_id)]
    np.testing.assert_array_equal(np.stack(copied), np.stack(original))

    # compare -> a table, and pictures with --plots
    plots = tmp_path / "plots"
    assert (
        main(
            [
                "compare",
                job_id,
                f"{MODEL}:mse:jacobian",
                "--k",
                "3",
                "--plots",
                str(plots),
                "--database",
                sqlite_url,
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "dims 99 % median" in report and "between-methods" in report
    # Figure names carry the selection (its label), never a path.
    assert {p.name for p in plots.iterdir()} >= {
        "spectrum.png",
        "homogeneity-log.png",
        "homogeneity-linear.png",
        "heatmap-dcgan-faces_mse_jacobian.png",
        "montage-dcgan-faces_mse_jacobian.png",
    }

    # keys create -> the token last; the store knows it
    assert (
        main(
            [
                "keys",
                "create",
                "--owner",
                "carol",
                "--scopes",
                "read,submit",
                "--database",
                sqlite_url,
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    key = store.verify_api_key(token)
    assert key is not None and key.owner == "carol" and set(key.scopes) == {"read", "submit"}
    store.close()


def test_bad_arguments_exit_2_with_the_reason(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["run", "--model", MODEL, "--latents", "2", "--top-k", "many", "--database", sqlite_url]
        )
        == 2
    )
    assert "--top-k" in capsys.readouterr().err
    assert main(["run", "--model", "no-such-gan", "--latents", "2", "--database", sqlite_url]) == 2
    assert "no-such-gan" in capsys.readouterr().err
    assert (
        main(["keys", "create", "--owner", "x", "--scopes", "read,root", "--database", sqlite_url])
        == 2
    )
    assert "scopes" in capsys.readouterr().err
    assert Store(sqlite_url).list_jobs() == []


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`spectra --help` formats every command's help (a bare % in one once broke it)."""
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "optimise-report" in out and "95 % bootstrap" in out and "submit" in out
