"""The randomised fault schedule: a seeded stream of jobs on real workers, and the fault
matrix's faults (faults.py) injected at random moments, some cancels and resumes among them;
then the invariants:

- every latent of every job stored exactly once, or failed for its own reason (these toys have
  none: any failure is a false one);
- every stored spectrum equal, bit for bit, to a clean in-process run's;
- no job terminal with work still landing (a terminal job's n_done and stored results never
  change until it is resumed);
- the time from each fault's end until the work made progress again.

`make test` runs a short schedule (tests/pipeline/test_fault_schedule.py);
bench/bench_fault_schedule.py runs a long one and writes its table.
"""

from __future__ import annotations

import contextlib
import functools
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.pipeline import cancel_job
from services.store import TERMINAL_STATUSES, ConflictError, Store
from tests.pipeline import faults
from tests.pipeline.faults import SLOW_MODEL, WIDE_MODEL, Rig
from tests.pipeline.hosts import Lab

FAULT_NAMES = (
    "pool child killed",
    "worker killed",
    "Redis restarted, no AOF",
    "Redis restarted, AOF",
    "PostgreSQL restarted",
    "PostgreSQL down",
    "backends terminated",
    "disk full",
    "host link cut",
    "worker frozen",
)
# These last a random while.
LASTING = {"PostgreSQL down", "disk full", "host link cut", "worker frozen"}
LONGEST_FAULT_S = 25.0
RECOVERY_WAIT_S = 90.0  # past this the work did not recover: recorded as such
ACTIVE_JOBS = 2
SLOW_S = 0.5  # per forward pass: a job takes tens of seconds, so faults land mid-work
SETTLE_S = 300.0  # after the last fault, every job must end within this
DEFAULTS_NOTE = (
    f"workers with the default lease (heartbeat {faults.DEFAULTS.heartbeat_interval_s:g} s, "
    f"stale after {faults.DEFAULTS.stale_after_s:g} s, {faults.DEFAULTS.max_chunk_attempts} "
    f"attempts); lasting faults 3-{LONGEST_FAULT_S:g} s"
)


@dataclass
class FaultEvent:
    at_s: float
    fault: str
    lasted_s: float
    recover_s: float | None  # None: no work was waiting to go on
    recovered: bool = True


@dataclass
class ScheduleResult:
    seed: int
    seconds: float
    faults: list[FaultEvent] = field(default_factory=list)
    jobs: int = 0
    latents: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    falsely_failed: int = 0
    not_bitwise_equal: int = 0
    max_relative_difference: float = 0.0
    landed_after_terminal: int = 0
    cancels: int = 0
    resumes: int = 0
    unsettled_jobs: list[str] = field(default_factory=list)

    @property
    def recover_times(self) -> list[float]:
        return [e.recover_s for e in self.faults if e.recover_s is not None]

    def as_json(self) -> dict[str, Any]:
        times = self.recover_times
        return {
            **{k: v for k, v in asdict(self).items() if k != "faults"},
            "n_faults": len(self.faults),
            "recover_s": {
                "median": statistics.median(times) if times else None,
                "max": max(times) if times else None,
                "not_recovered": sum(not e.recovered for e in self.faults),
            },
            "faults": [asdict(e) for e in self.faults],
        }

    def problems(self) -> list[str]:
        """What broke an invariant (empty: the schedule passed)."""
        found = [
            f"{name} = {value}"
            for name, value in (
                ("lost", self.lost),
                ("duplicated", self.duplicated),
                ("falsely failed", self.falsely_failed),
                ("not bit-for-bit equal to a clean run", self.not_bitwise_equal),
                ("results landed after a terminal status", self.landed_after_terminal),
                ("faults not recovered from", sum(not e.recovered for e in self.faults)),
            )
            if value
        ]
        if self.unsettled_jobs:
            found.append(f"jobs that never ended: {self.unsettled_jobs}")
        return found


class TerminalWatch(threading.Thread):
    """Watches every job: once a job is seen terminal, its n_done and its stored results must
    not change for as long as it stays in that terminal episode (same finished_at)."""

    def __init__(self, url: str, job_ids: Callable[[], list[str]]) -> None:
        super().__init__(name="terminal-watch", daemon=True)
        self._url, self._job_ids = url, job_ids
        self._halt = threading.Event()
        self._seen: dict[tuple[str, object], tuple[int, int]] = {}
        self.violations: list[str] = []

    def run(self) -> None:
        with Store(self._url) as store:
            while not self._halt.wait(0.5):
                with contextlib.suppress(Exception):  # the store may be down: look again
                    self._look(store)

    def _look(self, store: Store) -> None:
        for job_id in self._job_ids():
            job = store.get_job(job_id)
            if job.status not in TERMINAL_STATUSES:
                continue
            counts = (job.n_done, len(store.list_spectra(job_id=job_id, limit=1000)))
            episode = (job_id, job.finished_at)
            first = self._seen.setdefault(episode, counts)
            if counts != first:
                self.violations.append(f"job {job_id} {job.status}: {first} then {counts}")
                self._seen[episode] = counts

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def inject(rig: Rig, name: str, rng: random.Random) -> float:
    """Inject one fault; returns how long it lasted (seconds)."""
    started = time.monotonic()
    lasting = rng.uniform(3.0, LONGEST_FAULT_S)
    actions: dict[str, Callable[[], None]] = {
        "pool child killed": lambda: faults.kill_pool_child(rig),
        "worker killed": lambda: faults.kill_worker(rig),
        "Redis restarted, no AOF": lambda: faults.restart_redis(rig, aof=False),
        "Redis restarted, AOF": lambda: faults.restart_redis(rig, aof=True),
        "PostgreSQL restarted": lambda: faults.restart_postgres(rig),
        "PostgreSQL down": lambda: faults.postgres_outage(rig, lasting),
        "backends terminated": lambda: faults.terminate_backends(rig),
        "disk full": lambda: faults.disk_full(rig, lasting),
        "host link cut": lambda: faults.cut_host_link(rig, lasting),
        "worker frozen": lambda: faults.freeze_worker(rig, lasting),
    }
    actions[name]()
    return time.monotonic() - started


class Stream:
    """The jobs of the schedule: submitted as a stream, some cancelled and resumed later."""

    def __init__(self, rig: Rig, rng: random.Random) -> None:
        self.rig, self.rng = rig, rng
        self.specs: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []  # waiting to be resumed
        self.cancels = self.resumes = 0

    def ids(self) -> list[str]:
        return list(self.specs)

    def active(self) -> list[str]:
        return [j for j in self.specs if self.rig.store.get_job(j).status not in TERMINAL_STATUSES]

    def top_up(self) -> None:
        while len(self.active()) < ACTIVE_JOBS:
            spec = faults.slow_spec(
                self.rng.randrange(1 << 30),
                count=self.rng.choice([12, 16, 24]),
                chunk_size=self.rng.choice([2, 3, 4]),
                model=self.rng.choice([SLOW_MODEL, WIDE_MODEL]),
            )
            job = self.rig.submit("schedule", **spec)
            self.specs[job.id] = spec

    def maybe_cancel_or_resume(self) -> None:
        roll = self.rng.random()
        if roll < 0.08 and self.active():
            job_id = self.rng.choice(self.active())
            cancel_job(self.rig.store, job_id, revoke=self.rig.revoke)
            self.cancelled.append(job_id)
            self.cancels += 1
        elif roll < 0.16 and self.cancelled:
            self.resume(self.cancelled.pop(0))

    def resume(self, job_id: str) -> None:
        with contextlib.suppress(ConflictError):  # nothing was missing
            _, chunk_ids = self.rig.store.reopen_job(job_id)
            self.rig.dispatch(chunk_ids)
            self.resumes += 1

    def stored_total(self) -> int:
        return sum(len(self.rig.store.stored_latent_indices(j)) for j in self.specs)


def run_schedule(
    rig: Rig,
    *,
    seed: int,
    seconds: float,
    tmp: Path,
    min_faults: int = 0,
    max_seconds: float | None = None,
    first: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
) -> ScheduleResult:
    """Run faults for ``seconds`` (and until ``min_faults`` faults, but never past
    ``max_seconds``), then heal, resume what was cancelled, let every job end, and check.
    ``first``: faults injected before the random ones (still at random moments), so that a
    short schedule is sure to include them."""
    rng = random.Random(seed)
    result = ScheduleResult(seed=seed, seconds=0.0)
    stream = Stream(rig, rng)
    while len(faults.live_workers(rig)) < 2:
        rig.cluster.start()
    watch = TerminalWatch(rig.store.url, stream.ids)
    watch.start()
    started = time.monotonic()
    hard_stop = started + (max_seconds or 3 * seconds)

    def going_on() -> bool:
        now = time.monotonic()
        if now >= hard_stop:
            return False
        return now - started < seconds or len(result.faults) < min_faults

    try:
        while going_on():
            _retry(stream.top_up)
            _retry(stream.maybe_cancel_or_resume)
            time.sleep(rng.uniform(1.0, 5.0))  # a random moment in the work
            queued = first[len(result.faults) :]
            name = queued[0] if queued else rng.choice(FAULT_NAMES)
            at = time.monotonic() - started
            pending = _retry(lambda: bool(stream.active()))
            lasted = inject(rig, name, rng)
            event = FaultEvent(round(at, 1), name, round(lasted, 1), None)
            if pending:
                event.recover_s, event.recovered = _progress_after(stream)
            result.faults.append(event)
            log(
                f"{at:7.1f} s  {name:<24} lasted {lasted:5.1f} s  recovered in "
                f"{'-' if event.recover_s is None else f'{event.recover_s:.1f} s'}"
            )
        result.seconds = round(time.monotonic() - started, 1)
        _heal(rig)
        while stream.cancelled:
            _retry(functools.partial(stream.resume, stream.cancelled.pop(0)))
        _settle(stream, result)
    finally:
        watch.stop()
    result.cancels = stream.cancels
    result.resumes = stream.resumes
    result.landed_after_terminal = len(watch.violations)
    _check(stream, result, tmp)
    return result


def _retry(call: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    """A call of the schedule's own on the store, retried while the store recovers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _progress_after(stream: Stream) -> tuple[float | None, bool]:
    """Seconds from the fault's end until the next latent is stored (None: no work left)."""
    ended = time.monotonic()
    before: int | None = None
    while time.monotonic() - ended < RECOVERY_WAIT_S:
        if before is None:  # our own connection may need the store back first
            with contextlib.suppress(Exception):
                before = stream.stored_total()
            if before is None:
                time.sleep(0.1)
            continue
        with contextlib.suppress(Exception):
            if stream.stored_total() > before:
                return round(time.monotonic() - ended, 1), True
            if not stream.active():  # everything it interrupted has ended meanwhile
                return None, True
        time.sleep(0.1)
    return None, False


def _heal(rig: Rig) -> None:
    rig.postgres.free_disk()
    if rig.postgres.process is None or rig.postgres.process.poll() is not None:
        rig.postgres.start()
    faults.live_workers(rig)


def _settle(stream: Stream, result: ScheduleResult) -> None:
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        unsettled = _retry(
            lambda: [
                j
                for j in stream.ids()
                if stream.rig.store.get_job(j).status not in TERMINAL_STATUSES
                or any(c.status not in TERMINAL_STATUSES for c in stream.rig.store.list_chunks(j))
            ]
        )
        if not unsettled:
            return
        time.sleep(1.0)
    result.unsettled_jobs = unsettled


def _check(stream: Stream, result: ScheduleResult, tmp: Path) -> None:
    store = stream.rig.store
    for job_id, spec in stream.specs.items():
        job = store.get_job(job_id)
        spectra = store.list_spectra(job_id=job_id, limit=1000)
        indices = [s.latent_index for s in spectra]
        result.jobs += 1
        result.latents += job.n_latents
        result.stored += len(set(indices))
        result.duplicated += len(indices) - len(set(indices))
        result.falsely_failed += len(store.latent_failures(job_id))
        missing = set(range(job.n_latents)) - set(indices)
        if job.status != "cancelled":
            result.lost += len(missing - {f.latent_index for f in store.latent_failures(job_id)})
        clean = faults.clean_eigenvalues(spec, tmp)
        for spectrum in spectra:
            reference = clean[spectrum.latent_index]
            if not np.array_equal(spectrum.eigenvalues, reference):
                result.not_bitwise_equal += 1
                scale = max(float(np.abs(reference).max()), 1e-300)
                difference = float(np.abs(spectrum.eigenvalues - reference).max()) / scale
                result.max_relative_difference = max(result.max_relative_difference, difference)


@contextlib.contextmanager
def schedule_rig() -> Iterator[tuple[Rig, Path]]:
    """A rig of its own (private PostgreSQL on a small disk, private Redis, two workers on
    two lab hosts whose links can be cut), torn down afterwards whatever happened."""
    tmp = Path(tempfile.mkdtemp(prefix="ls-schedule-"))
    lab = Lab()
    try:
        subnet = random.SystemRandom().randrange(1, 255)  # apart from another lab's
        here = lab.attach_here(subnet)
        for number in (1, 2):
            lab.add_host(f"w{number}", f"{subnet}.{number + 1}")
        postgres = faults.private_postgres(host=here)
        try:
            store = Store(postgres.url())
            store.migrate()
            with faults.open_rig(store, postgres, tmp, aof=False, slow_s=SLOW_S, lab=lab) as rig:
                rig.cluster.start()
                rig.cluster.start()
                yield rig, tmp
            store.close()
        finally:
            postgres.close()
    finally:
        lab.close()
