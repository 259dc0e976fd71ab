"""Runs every benchmark in bench/ in turn (each prints its own table and writes
bench/results/<name>.json), then prints where the results are.

    .venv/bin/python bench/run_all.py [geometry store pipeline api cli]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ALL = ("geometry", "store", "pipeline", "api", "cli")


def main(names: list[str]) -> int:
    failures = []
    for name in names or ALL:
        script = BENCH_DIR / f"bench_{name}.py"
        if not script.exists():
            print(f"== {name}: no benchmark at {script}", file=sys.stderr)
            failures.append(name)
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=BENCH_DIR.parent)
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failures.append(name)
    print(f"results in {BENCH_DIR / 'results'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
