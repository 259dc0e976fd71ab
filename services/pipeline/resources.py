"""What a worker measures about itself while it computes: peak memory per code.

On Linux the kernel keeps a process's peak resident set (VmHWM) and resets it to the current
resident set when "5" is written to /proc/self/clear_refs, so each code's peak is measured on
its own. On CUDA, torch's allocator keeps the device's peak. The plan's estimate is recorded
beside these figures (services/pipeline/estimate.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def peak_rss_bytes() -> int | None:
    """This process's peak resident set since start (or the last reset), or None off Linux."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window; False where the kernel does not offer it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass
class PeakMemory:
    """Filled in when the `measure_peak` block ends."""

    rss_bytes: int | None = None
    device_bytes: int | None = None
    figures: dict[str, int] = field(default_factory=dict)


@contextmanager
def measure_peak(device: str) -> Iterator[PeakMemory]:
    """Peak RSS (and peak CUDA allocation on a CUDA device) of the enclosed work."""
    peak = PeakMemory()
    torch_device = torch.device(device)
    on_cuda = torch_device.type == "cuda" and torch.cuda.is_available()
    reset = reset_peak_rss()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(torch_device)
    try:
        yield peak
    finally:
        if reset:
            peak.rss_bytes = peak_rss_bytes()
            if peak.rss_bytes is not None:
                peak.figures["peak_rss_bytes"] = peak.rss_bytes
        if on_cuda:
            peak.device_bytes = int(torch.cuda.max_memory_allocated(torch_device))
            peak.figures["peak_device_bytes"] = peak.device_bytes
