"""One Celery worker per device: `spectra worker --gpus 0,1` or `spectra worker --cpu`.

Each device gets its own `celery worker` process (prefork pool, concurrency 1) that sees only
its GPU through CUDA_VISIBLE_DEVICES, so inside it the device is always `cuda:0`. This module
never imports torch: CUDA is first touched by the pool child when it loads a model, never in a
parent that forks (a CUDA context does not survive fork).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from worker.celery_app import CHUNK_QUEUE

STOP_TIMEOUT_S = 30.0
METRICS_PORT_ENV = "SPECTRA_WORKER_METRICS_PORT"
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_env(index: int) -> dict[str, str]:
    """The N-th worker on a host serves its metrics on SPECTRA_WORKER_METRICS_PORT + N."""
    base = int(os.environ.get(METRICS_PORT_ENV) or 0)
    return {METRICS_PORT_ENV: str(base + index)} if base else {}


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process to start: its Celery node name and the environment it needs."""

    node_name: str
    device: str
    env: dict[str, str]


def plan_workers(
    gpus: Sequence[str] | None, cpu: bool, *, host: str | None = None
) -> list[WorkerPlan]:
    """The worker processes for the given GPUs (or one CPU worker). Pure: starts nothing."""
    host = host or socket.gethostname()
    if cpu == bool(gpus):
        raise ValueError("give either GPUs (e.g. --gpus 0,1) or --cpu, not both and not neither")
    if cpu:
        return [
            WorkerPlan(f"cpu@{host}", "cpu", {"CUDA_VISIBLE_DEVICES": "", "SPECTRA_DEVICE": "cpu"})
        ]
    assert gpus is not None
    names = [g.strip() for g in gpus]
    if any(not g for g in names) or len(set(names)) != len(names):
        raise ValueError(f"GPU list must name each device once, e.g. 0,1; got {list(gpus)}")
    return [
        WorkerPlan(
            f"gpu{g}@{host}",
            "cuda",
            # The one visible GPU is cuda:0 inside the worker.
            {"CUDA_VISIBLE_DEVICES": g, "SPECTRA_DEVICE": "cuda:0"},
        )
        for g in names
    ]


def worker_command(node_name: str, *, loglevel: str = "INFO") -> list[str]:
    """The `celery worker` command line for one device."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app:app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--queues",
        CHUNK_QUEUE,
        "--hostname",
        node_name,
        "--loglevel",
        loglevel,
        # Mingle and gossip only slow the start; correctness never depends on them.
        "--without-mingle",
        "--without-gossip",
    ]


_PR_SET_PDEATHSIG = 1  # prctl(2) option, from <linux/prctl.h>


def _prctl() -> Any:
    """libc's prctl, looked up in the parent: a forked child only calls it (no dlopen, no
    allocation between fork and exec)."""
    return ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(
    signum: int = signal.SIGKILL, *, expected_parent: int | None = None, prctl: Any = None
) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent exits, however the
    parent exits (SIGKILL included, where no handler of the parent's can run). Linux only;
    elsewhere a no-op. ``expected_parent``: the parent's pid as the parent saw it before
    forking; if it has already died (we were re-parented) the signal is sent at once."""
    prctl = prctl or _prctl()
    if prctl is None:
        return
    if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signum)


def start_worker(
    plan: WorkerPlan,
    *,
    extra_env: Mapping[str, str] | None = None,
    loglevel: str = "INFO",
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    command_prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start one worker in its own process group (so it and its pool child stop together),
    bound to this process's life: if the launcher dies, even by SIGKILL, the kernel kills the
    worker (and the worker's pool child, bound the same way in worker.tasks), and what they
    held is left for the reaper to give to another worker. No orphan computes on. A worker
    that serves metrics gets a fresh directory for its pool children's values.

    ``command_prefix``: a program that sets something up and then execs the worker in its
    own process (`ip netns exec NS`, `numactl --cpunodebind=0`, `nice -n 5`), so the
    process started is still the worker."""
    env = {**os.environ, **plan.env, **(extra_env or {})}
    if env.get(METRICS_PORT_ENV, "0") not in ("", "0") and not env.get(MULTIPROC_DIR_ENV):
        env[MULTIPROC_DIR_ENV] = tempfile.mkdtemp(prefix=f"spectra-metrics-{plan.node_name}-")
    return subprocess.Popen(
        [*command_prefix, *worker_command(plan.node_name, loglevel=loglevel)],
        env=env,
        start_new_session=True,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=functools.partial(die_with_parent, expected_parent=os.getpid(), prctl=_prctl()),
    )


def stop_workers(
    processes: Sequence[subprocess.Popen[bytes]], *, timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """Warm shutdown (SIGTERM: finish the current chunk), then kill what is left."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def launch(gpus: list[str] | None, cpu: bool, *, loglevel: str = "INFO") -> int:
    """Start the workers and wait for them. SIGINT/SIGTERM stop them all: a warm shutdown,
    in which a worker finishes its current chunk, killed after 30 s (the reaper then gives
    the unfinished chunk to another worker, which resumes it). Returns 0 when
    every worker exited cleanly, else the first non-zero exit code. A worker that dies is not
    restarted here: run this under a supervisor (systemd, compose) for that."""
    plans = plan_workers(gpus, cpu)
    processes = [
        start_worker(plan, extra_env=metrics_env(index), loglevel=loglevel)
        for index, plan in enumerate(plans)
    ]
    for plan, process in zip(plans, processes, strict=True):
        print(f"worker {plan.node_name} (pid {process.pid}) on {plan.device}", file=sys.stderr)
    stop_requested: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        # Only signal here: waiting inside a handler would deadlock on Popen's wait lock,
        # which the interrupted wait below holds.
        if not stop_requested:
            stop_requested.append(time.monotonic())
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(process.poll() is None for process in processes):
            if stop_requested and time.monotonic() - stop_requested[0] > STOP_TIMEOUT_S:
                for process in processes:
                    if process.poll() is None:
                        os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    codes = [process.wait() for process in processes]
    return next((code for code in codes if code != 0), 0)
