"""What a worker measures about itself: peak memory per code, its budget, its threads.

On Linux the kernel keeps a process's peak resident set (VmHWM) and resets it to the current
resident set when "5" is written to /proc/self/clear_refs, so each code's peak is measured on
its own. Before the window opens, glibc is asked to return the heap it keeps free
(malloc_trim): otherwise what an earlier, larger chunk freed stays resident and becomes the
floor of every later code's peak. On CUDA, torch's allocator keeps the device's peak. The
plan's estimate is recorded beside these figures (services/pipeline/estimate.py). Also the
machine's facts a plan needs: a worker's memory budget and its compute threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from services.pipeline.estimate import GIB

# Share of a device's memory a worker may plan for when SPECTRA_WORKER_MEMORY_GB is unset.
DEFAULT_MEMORY_SHARE = 0.8
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


def resident_bytes() -> int | None:
    """This process's resident set now, or None off Linux."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def resident_growth(run: Callable[[], Any], interval_s: float = 0.001) -> int | None:
    """The most resident memory `run` added above what the process held when it started
    (freed heap returned first), sampled every `interval_s` by a thread: torch's kernels let
    go of the GIL. None off Linux. Unlike the VmHWM window it resets nothing, so a code being
    measured in another thread of this process keeps its own peak."""
    release_free_heap()
    start = resident_bytes()
    if start is None:
        return None
    highest = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = resident_bytes()
            if now is not None and now > highest[0]:
                highest[0] = now
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, name="resident-sampler", daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    final = resident_bytes() or start
    return max(highest[0], final) - start


def set_compute_threads(threads: int | None) -> None:
    """torch's intra-op thread count for this process (None: left at torch's default)."""
    if threads is not None:
        torch.set_num_threads(threads)


@contextmanager
def compute_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` (None: left alone) for the block."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads is not None:
            torch.set_num_threads(before)


def worker_budget_bytes(memory_gb: float | None, device: str) -> int:
    """The memory a worker may use: the setting, else most of the device's memory."""
    if memory_gb is not None:
        return int(memory_gb * GIB)
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch_device).total_memory
    else:
        total = _physical_memory_bytes()
    return int(total * DEFAULT_MEMORY_SHARE)


def _physical_memory_bytes() -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:  # a container's limit, where it is lower
        with open("/sys/fs/cgroup/memory.max") as limit:
            text = limit.read().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return int(total)


def release_free_heap() -> bool:
    """Return glibc's free heap pages to the system; False off glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return False
    if trim is None:
        return False
    trim(0)
    return True


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
    release_free_heap()
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
