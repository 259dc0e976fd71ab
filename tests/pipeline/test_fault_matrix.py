"""The fault matrix: each fault an outside tester injected, on real processes with the DEFAULT
lease settings (heartbeat 4 s, stale after 15 s, a sweep every 3 s), and how long the work
took to resume. At the end the module prints one table:

    fault | expected | stored | duplicated | failed | seconds to recover

``stored`` counts distinct latents with a spectrum, ``duplicated`` the spectrum rows beyond
one per latent; every stored spectrum is also compared with a clean in-process run. "Seconds
to recover" is from the fault until the work it interrupted made progress again (the next
latent of the interrupted chunk stored, or for a broker restart the first chunk whose message
was lost claimed again); it must stay under 30 s.

PostgreSQL here is a private server (its own directory and port, its data on a small disk of
its own) so that it can be restarted, stopped and its disk filled; Redis is a private server
too, with and without an append-only file. The rig and the faults are in faults.py, shared
with the randomised schedule (fault_schedule.py). The table is printed; it is also written to
``$SPECTRA_BENCH_RESULTS/fault_matrix.txt`` when that variable names a directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.pipeline import cancel_job
from services.store import JobRecord, Store
from tests.pipeline import toy_generators
from tests.pipeline.conftest import REPO
from tests.pipeline.faults import (
    DEFAULTS,
    SLOW_MODEL,
    TERMINAL,
    TOY_FILE,
    WIDE_MODEL,
    Rig,
    clean_eigenvalues,
    disk_full,
    next_latent_of,
    open_rig,
    part_way_chunk,
    postgres_outage,
    private_postgres,
    seconds_until,
    slow_spec,
    tolerant,
)
from tests.pipeline.hosts import Host, Lab, PrivatePostgres, Probe
from tests.support.waiting import finished, wait_for

pytestmark = pytest.mark.slow  # minutes of faults: started first, beside the short tests

RECOVERY_LIMIT_S = 30.0
# Longer than the lease's staleness: heartbeats cannot be written for longer than a dead
# worker's would be silent, and still nothing may be charged to a latent.
STORE_FAULT_S = DEFAULTS.stale_after_s + 10


@dataclass
class Row:
    fault: str
    expected: int
    stored: int
    duplicated: int
    failed: int
    recover_s: float | None


ROWS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def print_matrix(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [
        f"fault matrix (heartbeat {DEFAULTS.heartbeat_interval_s:g} s, stale after "
        f"{DEFAULTS.stale_after_s:g} s: the defaults)",
        f"{'fault':<34} {'expected':>8} {'stored':>7} {'duplicated':>10} {'failed':>6} "
        f"{'s to recover':>12}",
    ]
    for row in ROWS:
        recover = "-" if row.recover_s is None else f"{row.recover_s:.1f}"
        lines.append(
            f"{row.fault:<34} {row.expected:>8} {row.stored:>7} {row.duplicated:>10} "
            f"{row.failed:>6} {recover:>12}"
        )
    text = "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
    results = os.environ.get("SPECTRA_BENCH_RESULTS")
    if results:
        with contextlib.suppress(OSError):
            Path(results).mkdir(parents=True, exist_ok=True)
            (Path(results) / "fault_matrix.txt").write_text(text + "\n")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    server = private_postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def store(postgres: PrivatePostgres) -> Iterator[Store]:
    store = Store(postgres.url())
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def rig(
    store: Store, postgres: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    with open_rig(store, postgres, tmp_path_factory.mktemp("rig"), aof=False) as opened:
        yield opened


def record(
    fault: str,
    rig: Rig,
    job: JobRecord,
    spec: dict[str, Any],
    recover_s: float | None,
    tmp: Path,
    *,
    expect_failed: int = 0,
    expected: int | None = None,
) -> Row:
    store = rig.store
    spectra = store.list_spectra(job_id=job.id, limit=1000)
    indices = [s.latent_index for s in spectra]
    failures = store.latent_failures(job.id)
    row = Row(
        fault,
        job.n_latents if expected is None else expected,
        len(set(indices)),
        len(indices) - len(set(indices)),
        len(failures),
        recover_s,
    )
    ROWS.append(row)
    clean = clean_eigenvalues(spec, tmp)
    for spectrum in spectra:
        np.testing.assert_allclose(
            spectrum.eigenvalues,
            clean[spectrum.latent_index],
            rtol=1e-4,
            atol=1e-6,
            err_msg=f"{fault}: latent {spectrum.latent_index} differs from a clean run",
        )
    assert row.duplicated == 0
    assert row.failed == expect_failed
    if recover_s is not None:
        assert recover_s < RECOVERY_LIMIT_S, f"{fault}: {recover_s:.1f} s to recover"
    return row


# -- the faults ------------------------------------------------------------------------------


def test_pool_child_killed(rig: Rig, tmp_path: Path) -> None:
    worker = rig.cluster.running()
    spec = slow_spec(21, count=12)
    job = rig.submit("matrix", **spec)
    chunk = part_way_chunk(rig.store, job.id)
    resumed = next_latent_of(rig.store, job.id, chunk.latent_indices)
    for child in worker.pool_children():
        os.kill(child, signal.SIGKILL)
    recover = seconds_until(resumed, 60, "the killed chunk to resume")
    final = finished(rig.store, job.id)
    assert final.status == "succeeded" and worker.alive()
    record("pool child killed", rig, final, spec, recover, tmp_path)


def test_whole_worker_killed(rig: Rig, tmp_path: Path) -> None:
    rig.cluster.running()
    while len([w for w in rig.cluster.workers if w.alive()]) < 2:
        rig.cluster.start()
    spec = slow_spec(22, count=16)
    job = rig.submit("matrix", **spec)
    chunk = part_way_chunk(rig.store, job.id)
    victim = next(
        w for w in rig.cluster.workers if w.alive() and chunk.lease_owner.endswith(f":{w.pid}")
    )
    resumed = next_latent_of(rig.store, job.id, chunk.latent_indices)
    rig.cluster.kill(victim)
    recover = seconds_until(resumed, 60, "another worker to resume the dead one's chunk")
    final = finished(rig.store, job.id)
    assert final.status == "succeeded"
    record("whole worker killed (SIGKILL)", rig, final, spec, recover, tmp_path)


def _broker_restart(rig: Rig, tmp_path: Path, fault: str, seed: int) -> None:
    rig.cluster.running()
    spec = slow_spec(seed, count=12, chunk_size=2)
    job = rig.submit("matrix", **spec)
    part_way_chunk(rig.store, job.id, spare=0)
    waiting = {c.id for c in rig.store.list_chunks(job.id) if c.status == "queued"}
    assert waiting, "the restart must find chunks whose messages wait in Redis"
    rig.broker.restart()

    def claimed_again() -> bool:
        return any(c.attempts >= 1 for c in rig.store.list_chunks(job.id) if c.id in waiting)

    recover = seconds_until(claimed_again, 60, "a chunk queued at the restart to run")
    final = finished(rig.store, job.id)
    assert final.status == "succeeded"
    assert all(c.attempts == 1 for c in rig.store.list_chunks(job.id)), "a chunk ran twice"
    record(fault, rig, final, spec, recover, tmp_path)


def test_redis_restarted_without_aof(rig: Rig, tmp_path: Path) -> None:
    _broker_restart(rig, tmp_path, "Redis restarted, no AOF", 23)


def test_redis_restarted_with_aof(rig: Rig, tmp_path: Path) -> None:
    rig.broker.set_aof(True)
    _broker_restart(rig, tmp_path, "Redis restarted, AOF", 24)


def test_postgresql_restarted(rig: Rig, tmp_path: Path) -> None:
    rig.cluster.running()
    spec = slow_spec(25, count=12)
    job = rig.submit("matrix", **spec)
    chunk = part_way_chunk(rig.store, job.id)
    resumed = next_latent_of(rig.store, job.id, chunk.latent_indices)
    started = time.monotonic()
    rig.postgres.restart("fast")  # every session ended, the server down for a moment
    with contextlib.suppress(Exception):
        rig.store.ping()  # our own pool reconnects too

    wait_for(tolerant(resumed), 60, "work to resume after the restart", poll_s=0.05)
    recover = time.monotonic() - started
    final = finished(rig.store, job.id)
    assert final.status == "succeeded"
    record("PostgreSQL restarted", rig, final, spec, recover, tmp_path)


def _store_fault(
    rig: Rig, tmp_path: Path, fault: str, seed: int, inject: Callable[[], None]
) -> None:
    """``inject`` makes the store unable to answer (or to write) for longer than a lease's
    staleness, mid-chunk: the worker waits, keeping its lease; nothing is charged to a latent
    or a chunk (no latent failed, every chunk claimed once) and the work goes on after."""
    rig.cluster.running()
    spec = slow_spec(seed, count=12, model=WIDE_MODEL)
    job = rig.submit("matrix", **spec)
    chunk = part_way_chunk(rig.store, job.id)
    resumed = next_latent_of(rig.store, job.id, chunk.latent_indices)
    stored_before = len(rig.store.stored_latent_indices(job.id))
    inject()
    # The fault bit: results could not be stored while it lasted (a save made just before it
    # began may have landed).
    assert len(rig.store.stored_latent_indices(job.id)) <= stored_before + 1
    started = time.monotonic()
    wait_for(tolerant(resumed), 60, f"work to resume after {fault}", poll_s=0.05)
    recover = time.monotonic() - started
    final = finished(rig.store, job.id)
    assert final.status == "succeeded" and final.n_done == 12 and final.n_failed == 0
    attempts = [c.attempts for c in rig.store.list_chunks(job.id)]
    assert attempts == [1] * len(attempts), f"{fault} was charged to a chunk: {attempts}"
    record(fault, rig, final, spec, recover, tmp_path)


def test_postgresql_down_longer_than_a_lease_is_a_wait(rig: Rig, tmp_path: Path) -> None:
    _store_fault(
        rig,
        tmp_path,
        f"PostgreSQL down {STORE_FAULT_S:g} s",
        26,
        lambda: postgres_outage(rig, STORE_FAULT_S),
    )


def test_disk_full_is_a_wait_not_a_poison_latent(rig: Rig, tmp_path: Path) -> None:
    """Issue 23.1: with PostgreSQL's disk full for longer than a lease, healthy latents were
    recorded as failed ("its worker process died on it")."""
    _store_fault(
        rig, tmp_path, f"disk full {STORE_FAULT_S:g} s", 27, lambda: disk_full(rig, STORE_FAULT_S)
    )


def test_poison_latent_fails_alone_and_the_chunk_goes_on(rig: Rig, tmp_path: Path) -> None:
    """One latent kills its worker's pool child every time it is computed: after
    max_attempts runs ended on it, it is recorded as that latent's failure with the reason,
    and the rest of its chunk is computed and stored."""
    worker = rig.cluster.running()
    codes = np.random.default_rng(29).standard_normal((6, toy_generators.LATENT_DIM))
    codes[2, 0] = toy_generators.TRIGGER
    spec = dict(
        model=f"python:{TOY_FILE}:crash_at_trigger",
        latents={"values": codes.tolist()},
        chunk_size=6,
    )
    job = rig.submit("matrix", **spec)
    final = finished(rig.store, job.id, timeout_s=150)
    assert final.status == "succeeded" and final.n_done == 5 and final.n_failed == 1
    (failure,) = rig.store.latent_failures(job.id)
    assert failure.latent_index == 2
    assert f"{DEFAULTS.max_chunk_attempts} of {DEFAULTS.max_chunk_attempts} attempts" in (
        failure.reason
    )
    (chunk,) = rig.store.list_chunks(job.id)
    assert chunk.status == "succeeded"
    assert worker.alive()  # only pool children died
    record(
        "poison latent (kills its worker)",
        rig,
        final,
        spec,
        None,
        tmp_path,
        expect_failed=1,
        expected=5,
    )


def test_cancel_is_a_point_in_time(rig: Rig, tmp_path: Path) -> None:
    """Issue 23.7: what is stored when cancel has answered is all that is ever stored, and
    n_done never rises on the cancelled job (running chunks stop; their results are
    refused)."""
    rig.cluster.running()
    spec = slow_spec(28, count=16)
    job = rig.submit("matrix", **spec)
    part_way_chunk(rig.store, job.id)
    started = time.monotonic()
    answered = cancel_job(rig.store, job.id, revoke=rig.revoke)
    at_cancel = rig.store.stored_latent_indices(job.id)
    final = finished(rig.store, job.id, timeout_s=30)
    settle = time.monotonic() - started
    time.sleep(2 * DEFAULTS.heartbeat_interval_s)  # a chunk still computing has finished
    assert answered.status == final.status == "cancelled"
    stored = rig.store.stored_latent_indices(job.id)
    assert stored == at_cancel and len(stored) < 16
    assert rig.store.get_job(job.id).n_done == answered.n_done == len(stored)
    row = record("cancel", rig, final, spec, settle, tmp_path, expected=len(stored))
    assert row.stored == len(stored)


# -- workers on separate hosts ---------------------------------------------------------------


@pytest.fixture
def lab() -> Iterator[Lab]:
    """Network namespaces as hosts; torn down afterwards, whatever the test did."""
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def _lab_env(db: Host, **extra: str) -> dict[str, str]:
    return {
        # Slow enough that a fault finds a chunk half done, and two faults one job each.
        "SPECTRA_TEST_SLOW_S": "0.4",
        **os.environ,
        "SPECTRA_DATABASE_URL": f"postgresql+psycopg://postgres@{db.address}:5432/spectra",
        "SPECTRA_BROKER_URL": f"redis://{db.address}:6379/0",
        "SPECTRA_MODE": "development",
        "SPECTRA_DEVICE": "cpu",
        "SPECTRA_EXTRA_MODELS": SLOW_MODEL,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **extra,
    }


LAUNCH_CPU_WORKER = "import sys; from worker.launcher import launch; sys.exit(launch(None, True))"


def test_workers_on_separate_hosts_survive_a_cut_link_and_a_crashed_host(
    lab: Lab, tmp_path: Path
) -> None:
    """PostgreSQL and Redis on one host, the API on another, workers on two more, each its own
    network namespace with its own address (198.18.0.0/15) and host name. Mid-job one worker
    host's link is cut (and later restored), then the other worker host crashes: the job
    completes, each latent stored once, and the cut host rejoins and finishes the work."""
    db, api, w1, w2, client = (
        lab.add_host(name, octets)
        for name, octets in (
            ("db", "0.2"),
            ("api", "0.3"),
            ("w1", "0.11"),
            ("w2", "0.12"),
            ("lab", "0.100"),
        )
    )
    postgres = PrivatePostgres(db.address, 5432, netns=db.netns)
    try:
        postgres.init()
        postgres.start()
        lab.spawn(
            db,
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                db.address,
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            log_name="redis",
        )
        env = _lab_env(db)
        probe = Probe(lab, client, env)
        probe.exec(f"""
import time, psycopg, httpx, redis
def retry(call, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
def create_db():
    with psycopg.connect("postgresql://postgres@{db.address}:5432/postgres", autocommit=True,
                         connect_timeout=3) as admin:
        admin.execute("CREATE DATABASE spectra")
retry(create_db)
retry(lambda: redis.Redis(host="{db.address}", port=6379).ping())
from services.store import Store
store = Store("{env["SPECTRA_DATABASE_URL"]}")
store.migrate()
token = store.create_api_key("lab", ["read", "submit"])[1]
headers = {{"Authorization": "Bearer " + token}}
base = "http://{api.address}:8000"
""")
        lab.spawn(
            api,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:serving_app",
                "--factory",
                "--host",
                api.address,
                "--port",
                "8000",
            ],
            env=env,
        )
        lab.spawn(w1, [sys.executable, "-c", LAUNCH_CPU_WORKER], env=env)
        host2 = lab.spawn(w2, [sys.executable, "-c", LAUNCH_CPU_WORKER], env=env)
        probe.exec("retry(lambda: httpx.get(base + '/readyz', timeout=3).raise_for_status(), 90)")
        # Both workers have told the broker their device: they are up and consuming.
        probe.exec(f"""
client = redis.Redis(host="{db.address}", port=6379)
def workers():
    return sorted(k.decode().rsplit(':', 1)[1] for k in client.scan_iter('latent-spectra:worker-device:*'))
""")
        wait_for(lambda: len(probe.exec("workers()")) == 2, 120, "both worker hosts to join")
        assert probe.exec("workers()") == ["cpu@w1", "cpu@w2"]

        probe.exec("""
def submit(spec):
    response = httpx.post(base + '/v1/jobs', json=spec, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()['id']
def chunks(job_id):
    return [dict(id=c.id, status=c.status, owner=c.lease_owner, attempts=c.attempts,
                 indices=c.latent_indices) for c in store.list_chunks(job_id)]
def stored(job_id):
    return sorted(store.stored_latent_indices(job_id))
def part_way(job_id, host):
    done = set(stored(job_id))
    for c in chunks(job_id):
        n = len(done & set(c['indices']))
        if c['status'] == 'running' and (c['owner'] or '').startswith(host + ':') \\
                and 0 < n < len(c['indices']):
            return c
    return None
def result(job_id):
    rows = store.list_spectra(job_id=job_id, limit=1000)
    job = store.get_job(job_id)
    return dict(status=job.status, indices=[s.latent_index for s in rows],
                failures=len(store.latent_failures(job_id)),
                eigenvalues={s.latent_index: list(map(float, s.eigenvalues)) for s in rows})
""")

        def fault(job_id: str, victim: str, inject: Callable[[], None], what: str) -> float:
            """Inject a fault while ``victim`` is mid-chunk; seconds until that chunk's next
            latent is stored (by whichever worker)."""
            chunk = wait_for(
                lambda: probe.exec(f"part_way({job_id!r}, {victim!r})"),
                90,
                f"{victim} to be mid-chunk",
                poll_s=0.1,
            )
            assert isinstance(chunk, dict)
            before = set(probe.exec(f"stored({job_id!r})")) & set(chunk["indices"])
            inject()
            started = time.monotonic()
            wait_for(
                lambda: set(probe.exec(f"stored({job_id!r})")) & set(chunk["indices"]) - before,
                60,
                what,
                poll_s=0.2,
            )
            return time.monotonic() - started

        def settled(job_id: str, spec: dict[str, Any], fault_name: str, recover: float) -> None:
            wait_for(
                lambda: probe.exec(f"store.get_job({job_id!r}).status") in TERMINAL,
                180,
                "the job to finish",
                poll_s=0.5,
            )
            final = probe.exec(f"result({job_id!r})")
            indices = final["indices"]
            n = spec["latents"]["count"]
            ROWS.append(
                Row(
                    fault_name,
                    n,
                    len(set(indices)),
                    len(indices) - len(set(indices)),
                    final["failures"],
                    recover,
                )
            )
            assert final["status"] == "succeeded", final
            assert sorted(indices) == list(range(n)) and final["failures"] == 0
            clean = clean_eigenvalues(spec, tmp_path)
            for index, values in final["eigenvalues"].items():
                np.testing.assert_allclose(values, clean[int(index)], rtol=1e-4, atol=1e-6)
            assert recover < RECOVERY_LIMIT_S, f"{fault_name}: {recover:.1f} s to recover"

        # 1. w1's link is cut mid-chunk: w2 takes the chunk over once its lease is stale.
        first = slow_spec(31, count=24, chunk_size=6)
        job_a = probe.exec(f"submit({first!r})")
        recover = fault(job_a, "cpu@w1", lambda: lab.cut(w1), "w2 to resume the cut chunk")
        lab.restore(w1)
        settled(job_a, first, "worker host link cut (netns)", recover)

        # 2. w1 rejoins (it takes chunks of a new job), then w2's host crashes mid-chunk: the
        # rejoined w1 takes w2's chunk over and finishes the job.
        second = slow_spec(32, count=36, chunk_size=6)
        job_b = probe.exec(f"submit({second!r})")
        wait_for(
            lambda: any(
                (c["owner"] or "").startswith("cpu@w1:") for c in probe.exec(f"chunks({job_b!r})")
            ),
            90,
            "the cut host to rejoin and take new work",
            poll_s=0.2,
        )
        recover = fault(job_b, "cpu@w2", lambda: lab.crash(w2), "w1 to resume the crashed chunk")
        settled(job_b, second, "worker host crashed (netns)", recover)
        assert host2.wait(timeout=10) != 0  # the crashed host's launcher is gone
        # The crashed host's device drops out of the registry by itself; w1's stays.
        wait_for(lambda: probe.exec("workers()") == ["cpu@w1"], 30, "w2 to drop out")
        assert lab.pids(w1), "the rejoined worker host's processes exited"
    finally:
        postgres.close()
