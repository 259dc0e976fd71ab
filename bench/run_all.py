"""Runs every benchmark in bench/ in turn, each in its own process; each writes its JSON and a
dated Markdown table to bench/results/ (through bench/results_io.py), and bench/results/latest.md
gathers the tables.

    .venv/bin/python bench/run_all.py                 # every benchmark, full size (hours)
    .venv/bin/python bench/run_all.py --quick         # every benchmark, small sizes (minutes)
    .venv/bin/python bench/run_all.py store api       # some of them

The GPU rows are one call of their own on a machine with a CUDA device: `bash bench/gpu.sh`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# name -> the arguments of its quick run (the full run takes each benchmark's defaults).
QUICK: dict[str, list[str]] = {
    "geometry": ["--quick", "--repeats", "1", "--positions", "100"],
    "store": ["--repeats", "5"],
    "pipeline": ["--latents", "8", "--repeats", "1"],
    "api": ["--requests", "200", "--repeats", "1", "--server-workers", "1"],
    "cli": ["--runs", "2"],
    "scale": ["--sizes", "16", "--spaces", "z", "--methods", "jacobian"],
    "analysis_scale": ["--n", "200", "--d", "64", "--k", "16", "--max-positions", "50"],
    "must_show": ["--size", "16", "--style-dim", "64", "--block-columns", "128", "--batch", "32"],
    "fault_schedule": ["--minutes", "1"],
}


def benchmarks() -> list[str]:
    """Every bench/bench_NAME.py, in the order of QUICK and then by name: a new benchmark is
    run without being listed here (with its defaults, also under --quick)."""
    found = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in QUICK if n in found] + [n for n in found if n not in QUICK]


def command(name: str, quick: bool) -> list[str]:
    script = BENCH_DIR / f"bench_{name}.py"
    return [sys.executable, str(script), *(QUICK.get(name, []) if quick else [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of: {' '.join(benchmarks())}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of each")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(benchmarks()))
    if unknown:
        parser.error(
            f"no benchmark named {', '.join(unknown)}; there are: {' '.join(benchmarks())}"
        )
    failures = []
    for name in args.names or benchmarks():
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call(command(name, args.quick), cwd=BENCH_DIR.parent)
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failures.append(name)
    print(
        f"results in {BENCH_DIR / 'results'}"
        + (f"; failed: {', '.join(failures)}" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
