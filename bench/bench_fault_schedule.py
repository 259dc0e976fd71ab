"""The long randomised fault schedule (issue 23): a seeded stream of jobs on two real workers,
the fault matrix's faults (child kill, worker kill, Redis restart with and without AOF,
PostgreSQL restart and outage, backend termination, disk full, a worker host's link cut, a
worker frozen) injected at random moments, cancels and resumes among them; then the
invariants (nothing lost, duplicated or falsely failed, every spectrum bit for bit a clean
run's, nothing landing after a terminal status) and the recovery times.

    python bench/bench_fault_schedule.py --minutes 30 [--min-faults 100] [--seed 23]

Runs unattended and stops by itself: faults for --minutes and until --min-faults were injected,
but never for more than --max-minutes (default 3 x --minutes); then every job is given
five minutes to end. Needs root (PostgreSQL's data disk is a tmpfs it mounts), PostgreSQL's
server binaries and redis-server. Writes bench/results/fault_schedule.json and .md through
bench/results_io.py (dated, machine and load named). Exit status 1 when an invariant broke.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from results_io import RESULTS_DIR, Table, write_results  # noqa: E402

from tests.pipeline.fault_schedule import (  # noqa: E402
    DEFAULTS_NOTE,
    ScheduleResult,
    run_schedule,
    schedule_rig,
)


def tables(result: ScheduleResult) -> list[Table]:
    data = result.as_json()
    invariants = Table(
        title=f"Randomised fault schedule: invariants (seed {result.seed})",
        columns=["invariant", "count"],
        rows=[
            [
                "minutes of faults / faults injected",
                f"{result.seconds / 60:.1f} / {len(result.faults)}",
            ],
            ["jobs / latents", f"{result.jobs} / {result.latents}"],
            ["stored (distinct latents)", result.stored],
            ["lost", result.lost],
            ["duplicated", result.duplicated],
            ["falsely failed", result.falsely_failed],
            ["not bit-for-bit equal to a clean run", result.not_bitwise_equal],
            ["results landed after a terminal status", result.landed_after_terminal],
            ["cancels / resumes", f"{result.cancels} / {result.resumes}"],
            ["faults not recovered from", data["recover_s"]["not_recovered"]],
        ],
        notes=[DEFAULTS_NOTE[0].upper() + DEFAULTS_NOTE[1:] + "."],
    )
    rows = []
    for name, count in sorted(Counter(event.fault for event in result.faults).items()):
        times = sorted(
            e.recover_s for e in result.faults if e.fault == name and e.recover_s is not None
        )
        rows.append(
            [name, count, statistics.median(times) if times else None, max(times, default=None)]
        )
    recovery = Table(
        title="Randomised fault schedule: seconds to recover, per fault",
        columns=["fault", "injected", "median s to recover", "max s to recover"],
        rows=rows,
        notes=[
            "From the fault's end (a lasting fault: its whole duration) until the next latent "
            "of any unfinished job was stored; – where no work was waiting."
        ],
    )
    return [invariants, recovery]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--min-faults", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    max_minutes = args.max_minutes or 3 * args.minutes
    with schedule_rig() as (rig, tmp):
        result = run_schedule(
            rig,
            seed=args.seed,
            seconds=60 * args.minutes,
            tmp=tmp,
            min_faults=args.min_faults,
            max_seconds=60 * max_minutes,
        )
    payload: dict[str, Any] = {**result.as_json(), "problems": result.problems()}
    _, md_path = write_results("fault_schedule", payload, tables(result), results_dir=args.out)
    print(md_path.read_text())
    for problem in result.problems():
        print(f"INVARIANT BROKEN: {problem}", file=sys.stderr)
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
