"""Command-line start-up: how long `spectra ...` takes from exec to exit.

Each command runs as a user runs it (the `spectra` console script of this interpreter's
environment, a fresh process each time), several times; the table gives the median and the
fastest run beside the floor (`python -c pass`: the interpreter and site start-up alone).
Cases: `spectra --help`, every sub-command's `--help` (read from the parser itself), refusals
of bad arguments, `spectra models`, and `status JOB` / `jobs` against a live local
`spectra serve` (SQLite, one job). Targets: 0.5 s for help, refusals and `status`; 1 s for
`models`.

    .venv/bin/python bench/bench_cli.py [--runs 5]

Writes bench/results/cli.json and a dated Markdown table bench/results/cli-YYYY-MM-DD.md (date,
machine, load average).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.store import ChunkPlan, Store  # noqa: E402

TARGET_S = 0.5
MODELS_TARGET_S = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spectra_command() -> list[str]:
    script = Path(sys.executable).with_name("spectra")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def timed(command: list[str], env: dict[str, str], runs: int, expect: int = 0) -> dict[str, Any]:
    """Wall time from spawn to exit, and the child's CPU time (user + system, from wait4):
    on a busy machine the wall time includes waiting for a core, the CPU time does not."""
    walls, cpus = [], []
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert child.stderr is not None
        errors = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        if child.returncode != expect:
            raise RuntimeError(f"{' '.join(command)} failed: {errors.decode()[-2000:]}")
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "cpu_median_s": statistics.median(cpus),
        "runs": walls,
        "cpu_runs": cpus,
    }


def seed(database_url: str) -> tuple[str, str]:
    """A key and one finished-looking job, written through the Store (no model needed)."""
    store = Store(database_url)
    store.migrate()
    _, token = store.create_api_key("bench", ["read", "submit"])
    job, _ = store.create_job(
        "bench",
        {"model": "dcgan-faces", "method": "jacobian"},
        {"model": "dcgan-faces"},
        "bench-spec",
        None,
        4,
        [ChunkPlan(0, [0, 1, 2, 3])],
    )
    store.close()
    return token, job.id


def help_cases(spectra: list[str]) -> list[tuple[str, list[str], float | None]]:
    """`--help` of the command and of every sub-command the parser has."""
    from api.cli import build_parser

    def paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        found: list[tuple[str, ...]] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += [(*prefix, name), *paths(sub, (*prefix, name))]
        return found

    every = [(), *paths(build_parser(spec_options=False, optimise_options=False), ())]
    return [
        (" ".join(["spectra", *path, "--help"]), [*spectra, *path, "--help"], TARGET_S)
        for path in every
    ]


REFUSALS = [
    ["jobs", "--bogus"],
    ["run", "--top-k", "zero"],
    ["run", "--latents", "missing.npy"],
    ["compare", "A", "--k", "x"],
    ["worker", "--gpus", "0,99"],
    ["optimise-report", "JOB", "--formats", "bmp"],
]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }


def markdown(
    results: list[dict[str, Any]], runs: int, host: dict[str, Any], load: tuple[float, ...]
) -> str:
    floor = results[0]["median_s"]
    lines = [
        f"# `spectra` start-up, {datetime.date.today().isoformat()}",
        "",
        f"Machine: {host['cpu']}, {host['cpus']} cores, Python {host['python']} "
        f"({host['platform']}). Load average at the end: {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f}. {runs} runs per command, fresh process each; wall time from spawn to "
        "exit (the CPU time excludes waiting for a core on a loaded machine).",
        "",
        "| command | median s | fastest s | median − floor s | CPU median s | target s | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in results:
        target = row["target_s"]
        met = "" if target is None else ("yes" if row["median_s"] < target else "no")
        lines.append(
            f"| `{row['case']}` | {row['median_s']:.3f} | {row['min_s']:.3f} | "
            f"{row['median_s'] - floor:.3f} | {row['cpu_median_s']:.3f} | "
            f"{'' if target is None else target} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    database_url = f"sqlite:///{workdir / 'spectra.db'}"
    token, job_id = seed(database_url)
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "SPECTRA_MODE": "development",
        "SPECTRA_TOKEN": token,
        "SPECTRA_SERVER_URL": server_url,
    }
    spectra = spectra_command()
    server = subprocess.Popen(
        [
            *spectra,
            "serve",
            "--database",
            database_url,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        wait_for(server, server_url)
        cases: list[tuple[str, list[str], float | None]] = [
            ("floor: python -c pass", [sys.executable, "-c", "pass"], None),
            *help_cases(spectra),
            *[
                (" ".join(["spectra", *r]) + " (refused)", [*spectra, *r], TARGET_S)
                for r in REFUSALS
            ],
            ("spectra models", [*spectra, "models"], MODELS_TARGET_S),
            ("spectra status JOB (live server)", [*spectra, "status", job_id], TARGET_S),
            ("spectra jobs (live server)", [*spectra, "jobs"], None),
        ]
        results = []
        for name, command, target in cases:
            refused = name.endswith("(refused)")
            measured = timed(command, env, args.runs, expect=2 if refused else 0)
            results.append({"case": name, "target_s": target, **measured})
            print(f"{name:60} {measured['median_s']:.3f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()
    host = machine()
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "cli",
        "date": datetime.date.today().isoformat(),
        "runs": args.runs,
        "floor_median_s": results[0]["median_s"],
        "results": results,
        "machine": {**host, "load_average": load},
    }
    (out / "cli.json").write_text(json.dumps(document, indent=1))
    table = markdown(results, args.runs, host, load)
    (out / f"cli-{document['date']}.md").write_text(table)
    print(table)
    missed = [r["case"] for r in results if r["target_s"] and r["median_s"] >= r["target_s"]]
    print("missed: " + (", ".join(missed) if missed else "none"))
    return 0 if not missed else 1


def wait_for(server: subprocess.Popen[bytes], server_url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{server_url}/healthz", timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
