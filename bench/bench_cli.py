"""Command-line start-up: how long `spectra ...` takes from exec to exit.

Each command runs as a user runs it (the `spectra` console script of this interpreter's
environment, a fresh process each time), several times; the table gives the median and the
fastest run, beside the floor (`python -c pass`: the interpreter and site start-up alone) and
the import the command line used to begin with (services.pipeline, which loads torch).
`status JOB` asks a live local `spectra serve` (SQLite, one job) over HTTP.
Target: `spectra status --help` and `spectra status JOB` under 0.5 s.

    .venv/bin/python bench/bench_cli.py [--runs 7]

Writes bench/results/cli.json.
"""

from __future__ import annotations

import argparse
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spectra_command() -> list[str]:
    script = Path(sys.executable).with_name("spectra")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def timed(command: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    """Wall time from spawn to exit, and the child's CPU time (user + system, from wait4):
    on a busy machine the wall time includes waiting for a core, the CPU time does not."""
    walls, cpus = [], []
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.stderr is not None
        errors = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {errors.decode()[-2000:]}")
    return {"median_s": statistics.median(walls), "min_s": min(walls),
            "cpu_median_s": statistics.median(cpus), "runs": walls, "cpu_runs": cpus}  # fmt: skip


def seed(database_url: str) -> tuple[str, str]:
    """A key and one finished-looking job, written through the Store (no model needed)."""
    store = Store(database_url)
    store.migrate()
    _, token = store.create_api_key("bench", ["read", "submit"])
    job, _ = store.create_job("bench", {"model": "dcgan-faces", "method": "jacobian"},
                              {"model": "dcgan-faces"}, "bench-spec", None, 4,
                              [ChunkPlan(0, [0, 1, 2, 3])])  # fmt: skip
    store.close()
    return token, job.id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    database_url = f"sqlite:///{workdir / 'spectra.db'}"
    token, job_id = seed(database_url)
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "SPECTRA_MODE": "development", "SPECTRA_TOKEN": token, "SPECTRA_SERVER_URL": server_url}  # fmt: skip
    spectra = spectra_command()
    server = subprocess.Popen([*spectra, "serve", "--database", database_url, "--port", str(port),
                               "--log-level", "warning"], env=env, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{server_url}/healthz", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        cases = [
            ("floor: python -c pass", [sys.executable, "-c", "pass"], False),
            ("before: import services.pipeline (torch)", [sys.executable, "-c", "import services.pipeline"], False),
            ("spectra --help", [*spectra, "--help"], False),
            ("spectra status --help", [*spectra, "status", "--help"], True),
            ("spectra submit --help (JobSpec flags)", [*spectra, "submit", "--help"], False),
            ("spectra status JOB (live server)", [*spectra, "status", job_id], True),
            ("spectra jobs (live server)", [*spectra, "jobs"], False),
        ]
        results = []
        for name, command, targeted in cases:
            measured = timed(command, env, args.runs)
            results.append({"case": name, "command": command[len(spectra):] if command[0] == spectra[0] else command,
                            "target_s": TARGET_S if targeted else None, **measured})  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    floor = results[0]["median_s"]
    print(f"{'command':44} {'wall med s':>10} {'min s':>7} {'- floor':>8} {'CPU med s':>10}  target (wall)")
    for row in results:
        target = row["target_s"]
        verdict = "" if target is None else ("ok" if row["median_s"] < target else "MISSED") + f" (< {target} s)"
        print(f"{row['case']:44} {row['median_s']:10.3f} {row['min_s']:7.3f} "
              f"{row['median_s'] - floor:8.3f} {row['cpu_median_s']:10.3f}  {verdict}")  # fmt: skip
    load = os.getloadavg()
    print(f"{args.runs} runs each; load average {load[0]:.1f} on {os.cpu_count()} cores")
    out = REPO / "bench" / "results" / "cli.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "cli", "runs": args.runs, "floor_median_s": floor, "results": results,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": load},
    }, indent=1))  # fmt: skip
    print(f"wrote {out}")
    targeted = [r for r in results if r["target_s"] is not None]
    return 0 if all(r["median_s"] < r["target_s"] for r in targeted) else 1


if __name__ == "__main__":
    sys.exit(main())
