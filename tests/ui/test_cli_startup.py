"""The command line answers at once: `spectra --help`, every sub-command's `--help` and the
refusal of a bad argument load neither torch, numpy nor SQLAlchemy (nor the geometry core or
the pipeline), so they take the interpreter's start-up and little more (bench/bench_cli.py
times them). Also: `run --help` shows each option's default, `worker --gpus` refuses devices
the machine does not have, and a progress display prints one line per update off a terminal."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys

import pytest

from api.cli import build_parser
from api.client.progress import ProgressDisplay
from services.worker_devices import check_gpus, visible_gpus

PROBE = (
    "import sys\n"
    "from api.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "except SystemExit as stop:  # --help, or argparse's refusal\n"
    "    code = stop.code\n"
    "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'sqlalchemy')\n"
    "               or m.startswith(('services.geometry', 'services.pipeline')))\n"
    "print('HEAVY', heavy[:5])\n"
    "sys.exit(code)\n"
)
# Every command's --help is light now: `optimise`'s options come from the torch-free
# services/optimise_job_spec.py.
NOT_YET_LIGHT: set[tuple[str, ...]] = set()


def probe(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SPECTRA_SERVER_URL", "SPECTRA_TOKEN")}
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120
    )


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command and sub-command of the parser, as the words that name it."""
    paths: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths += command_paths(sub, (*prefix, name))
    return paths


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise KeyError(name)


def test_every_help_loads_nothing_heavy() -> None:
    paths = command_paths(build_parser(spec_options=False, optimise_options=False))
    assert {("run",), ("campaign", "compare"), ("keys", "create"), ("worker",)} <= set(paths)
    for path in [(), *paths]:
        if path in NOT_YET_LIGHT:
            continue
        done = probe([*path, "--help"])
        assert done.returncode == 0, (path, done.stderr)
        assert "usage: spectra" in done.stdout and "HEAVY []" in done.stdout, (path, done.stdout)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["jobs", "--bogus"], "unrecognized arguments"),
        (["run", "--method", "nope"], "invalid choice"),
        (["run", "--top-k", "zero"], "--top-k"),
        (["run", "--latents", "2", "--latent-set", "abc"], "either --latents or --latent-set"),
        (["run", "--latents", "missing.npy"], "neither a number of codes nor a .npy file"),
        (["plan", "--latents", "2", "--seed", "x"], "invalid int value"),
        (["submit", "--top-k", "0", "--latents", "1"], "--top-k"),
        (["compare", "A", "--k", "x"], "invalid int value"),
        (
            ["export", "JOB", "-o", "x.npz", "--layout", "gan-geometry", "--server", "http://h"],
            "--layout gan-geometry",
        ),
        (["optimise-report", "JOB", "--formats", "bmp"], "unknown figure formats"),
        (["worker"], "one of the arguments --gpus --cpu is required"),
    ],
)
def test_a_refusal_loads_nothing_heavy(args: list[str], says: str) -> None:
    done = probe(args)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert says in done.stderr and "HEAVY []" in done.stdout, (args, done.stdout, done.stderr)


def test_run_help_shows_each_default() -> None:
    done = probe(["run", "--help"])
    text = " ".join(done.stdout.split())
    for shown in (
        "--model MODEL generator name (default: dcgan-faces)",
        "(default: mse)",
        "(default: jacobian)",
        "(default: float32)",
        "eigenpairs kept; null = all (default: unset)",
        "[fd only] (default: unset)",
    ):
        assert shown in text, shown
    run = subcommand(build_parser(), "run")
    options = [a for a in run._actions if a.option_strings and a.dest != "help"]
    assert all("default" in (a.help or "") for a in options), [
        a.dest for a in options if "default" not in (a.help or "")
    ]


def test_worker_refuses_gpus_this_machine_lacks() -> None:
    seen = visible_gpus()
    missing = str(len(seen))  # one past the last index this machine has
    done = probe(["worker", "--gpus", f"0,{missing}" if seen else "0"])
    assert done.returncode == 2 and "HEAVY []" in done.stdout
    assert f"no GPU {missing if seen else '0'} on this machine; it sees: " in done.stderr
    listing = ["GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)"]
    check_gpus(["0"], listing)
    check_gpus(["GPU-1234"], listing)
    with pytest.raises(ValueError, match=r"no GPU 1 on this machine; it sees: GPU 0: NVIDIA H100"):
        check_gpus(["0", "1"], listing)
    with pytest.raises(ValueError, match=r"it sees: no GPU \(use --cpu\)"):
        check_gpus(["0"], [])


def test_progress_off_a_terminal_prints_one_line_per_update() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(3, unit="code", desc="job 1234", stream=stream)
    for done in (0, 1, 1, 2, 3):
        display.update(done, 3, "running")
    display.close()
    assert stream.getvalue().splitlines() == [
        f"job 1234: {done}/3 codes (running)" for done in (0, 1, 2, 3)
    ]
    quiet = io.StringIO()
    ProgressDisplay(3, unit="code", desc="x", enabled=False, stream=quiet).update(1, 3)
    assert quiet.getvalue() == ""


def test_the_command_line_and_the_client_name_the_same_settings() -> None:
    """Written twice so that building the parser loads no httpx; held equal here."""
    from api.cli import connect, options
    from api.client import settings

    assert options.DEFAULT_SERVER == settings.DEFAULT_SERVER
    assert connect.SERVER_VARIABLE == settings.SERVER_VARIABLE
    env = {"SPECTRA_SERVER_URL": "http://h:1/", "SPECTRA_TOKEN": "t"}
    chosen = settings.ClientSettings.from_environment(env)
    assert (chosen.server, chosen.token) == ("http://h:1", "t")
    given = settings.ClientSettings.from_environment(env, server="http://g", token="u")
    assert (given.server, given.token) == ("http://g", "u")
    with pytest.raises(ValueError, match="SPECTRA_TOKEN"):
        settings.ClientSettings.from_environment({}).require_token()
