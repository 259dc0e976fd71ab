"""Text formatting shared by the commands: aligned tables, numbers, a job's one-line status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.client import Job


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def job_line(job: Job) -> str:
    parts = [f"job {job.id} {job.status}"]
    progress = job.progress
    if progress is not None:
        parts += [f"{progress.done}/{progress.planned} done", f"{progress.failed} failed"]
        if progress.rate_per_s:
            parts.append(f"{progress.rate_per_s:.2f} codes/s")
        if progress.eta_s and not job.finished:
            parts.append(f"eta {progress.eta_s:.0f} s")
    if job.error:
        parts.append(f"error: {job.error}")
    return ", ".join(parts)
