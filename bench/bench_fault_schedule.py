"""The long randomised fault schedule (issue 23): a seeded stream of jobs on two real workers,
the fault matrix's faults (child kill, worker kill, Redis restart with and without AOF,
PostgreSQL restart and outage, backend termination, disk full, a worker cut off) injected at
random moments, cancels and resumes among them; then the invariants (nothing lost, duplicated
or falsely failed, every spectrum bit for bit a clean run's, nothing landing after a terminal
status) and the recovery times.

    python bench/bench_fault_schedule.py --minutes 30 [--min-faults 100] [--seed 23]

Runs unattended and stops by itself: faults for --minutes and until --min-faults were injected,
but never for more than --max-minutes (default 3 x --minutes); then every job is given
five minutes to end. Needs root (PostgreSQL's data disk is a tmpfs it mounts), PostgreSQL's
server binaries and redis-server. Writes bench/results/fault_schedule.json and a dated
Markdown table, bench/results/fault_schedule-YYYY-MM-DD.md (machine named). Exit status 1 when
an invariant broke.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.pipeline.fault_schedule import (  # noqa: E402
    DEFAULTS_NOTE,
    ScheduleResult,
    run_schedule,
    schedule_rig,
)

RESULTS = REPO / "bench" / "results"


def markdown(result: ScheduleResult, when: datetime, machine: str) -> str:
    data = result.as_json()
    rows = Counter(event.fault for event in result.faults)
    lines = [
        f"# Randomised fault schedule, {when:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine}. Seed {result.seed}; {result.seconds / 60:.1f} min of faults, "
        f"{len(result.faults)} faults; {DEFAULTS_NOTE}.",
        "",
        "| invariant | count |",
        "|---|---:|",
        f"| jobs / latents | {result.jobs} / {result.latents} |",
        f"| stored (distinct latents) | {result.stored} |",
        f"| lost | {result.lost} |",
        f"| duplicated | {result.duplicated} |",
        f"| falsely failed | {result.falsely_failed} |",
        f"| not bit-for-bit equal to a clean run | {result.not_bitwise_equal} |",
        f"| results landed after a terminal status | {result.landed_after_terminal} |",
        f"| cancels / resumes | {result.cancels} / {result.resumes} |",
        f"| faults not recovered from | {data['recover_s']['not_recovered']} |",
        "",
        "| fault | injected | median s to recover | max s to recover |",
        "|---|---:|---:|---:|",
    ]
    for name, count in sorted(rows.items()):
        times = [e.recover_s for e in result.faults if e.fault == name and e.recover_s is not None]
        median = f"{sorted(times)[len(times) // 2]:.1f}" if times else "-"
        longest = f"{max(times):.1f}" if times else "-"
        lines.append(f"| {name} | {count} | {median} | {longest} |")
    lines += [
        "",
        "Seconds to recover: from the fault's end (a lasting fault: its whole duration) until "
        "the next latent of any unfinished job was stored; '-' where no work was waiting.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--min-faults", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    max_minutes = args.max_minutes or 3 * args.minutes
    when = datetime.now(UTC)
    machine = (
        f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)"
    )
    with schedule_rig() as (rig, tmp):
        result = run_schedule(
            rig,
            seed=args.seed,
            seconds=60 * args.minutes,
            tmp=tmp,
            min_faults=args.min_faults,
            max_seconds=60 * max_minutes,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "date": when.isoformat(timespec="seconds"),
        "machine": machine,
        **result.as_json(),
        "problems": result.problems(),
    }
    (args.out / "fault_schedule.json").write_text(json.dumps(document, indent=2) + "\n")
    table = markdown(result, when, machine)
    (args.out / f"fault_schedule-{when:%Y-%m-%d}.md").write_text(table)
    print(table)
    for problem in result.problems():
        print(f"INVARIANT BROKEN: {problem}", file=sys.stderr)
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
