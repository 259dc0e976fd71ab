"""A progress display: a tqdm bar on a terminal, else one plain line per update.

A bar redrawn with carriage returns is unreadable in a log file or a CI console, so when the
stream is not a terminal each change of the count prints one line instead (and nothing when
the count has not moved). tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from api.client.views import Job


class ProgressDisplay:
    """``update(done, total)`` as work advances, ``close()`` at the end."""

    def __init__(
        self,
        total: int,
        *,
        unit: str,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.unit, self.desc = unit, desc
        self.enabled = enabled
        self.last: tuple[int, int, str | None] | None = None
        self.bar: Any = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=desc, file=self.stream)

    def update(self, done: int, total: int, status: str | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.total, self.bar.n = total, done
            if status:
                self.bar.set_postfix_str(status)
            self.bar.refresh()
            return
        if (done, total, status) == self.last:
            return
        self.last = (done, total, status)
        suffix = f" ({status})" if status else ""
        print(f"{self.desc}: {done}/{total} {self.unit}s{suffix}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def job_progress(enabled: bool, job: Job) -> ProgressDisplay:
    """A display of a followed job's codes, labelled with its short id."""
    total = job.progress.planned if job.progress else job.n_latents
    return ProgressDisplay(total, unit="code", desc=job.id[:8], enabled=enabled)


def show_progress(display: ProgressDisplay, job: Job) -> None:
    if job.progress is not None:
        done = job.progress.done + job.progress.failed
        display.update(done, job.progress.planned, job.status)
