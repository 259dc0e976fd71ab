"""Issue 23.6: after a long PostgreSQL outage the API's reads recover within seconds of the
database returning (not after its pools' reconnection backoff), and /readyz tells the truth
the whole time: not ready while the database is down, and ready only when the reads the API
serves (the event loop's pool included) work again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from services.store import ChunkPlan, Store
from tests.api.conftest import RecordingDispatcher, bearer, make_settings
from tests.pipeline.conftest import free_port
from tests.pipeline.hosts import PrivatePostgres

OUTAGE_S = 90.0  # the outside tester's outage
RECOVERY_LIMIT_S = 5.0


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres("127.0.0.1", free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.slow
def test_reads_recover_within_seconds_of_a_long_outage_and_readiness_tells_the_truth(
    postgres: PrivatePostgres,
) -> None:
    store = Store(postgres.url())
    store.migrate()
    headers = bearer(store.create_api_key("alice", ["read", "submit"])[1])
    job, _ = store.create_job("alice", {"s": 1}, {}, "outage", None, 1, [ChunkPlan(0, [0])])
    app = create_app(
        settings=make_settings(postgres.url()),
        store=store,
        dispatcher=RecordingDispatcher(),
    )
    with TestClient(app) as client:

        def read() -> int:
            return int(client.get(f"/v1/jobs/{job.id}", headers=headers).status_code)

        def ready() -> int:
            return int(client.get("/readyz").status_code)

        for _ in range(20):  # the event loop's pool holds warm connections
            assert read() == 200
        assert ready() == 200

        postgres.stop("fast")
        down_until = time.monotonic() + OUTAGE_S
        seen_during: set[tuple[int, int]] = set()
        while time.monotonic() < down_until:
            seen_during.add((read(), ready()))
            time.sleep(1.0)
        assert seen_during == {(503, 503)}, seen_during

        postgres.start()
        back = time.monotonic()
        while read() != 200:
            assert time.monotonic() - back < RECOVERY_LIMIT_S, "reads did not recover in time"
            time.sleep(0.1)
        recovered_s = time.monotonic() - back
        # Ready now, and every read answers: readiness and reads agree.
        assert ready() == 200
        assert all(read() == 200 for _ in range(20))
    store.close()
    print(f"reads recovered {recovered_s:.2f} s after a {OUTAGE_S:g} s outage")
