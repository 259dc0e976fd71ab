"""1: ten concurrent submissions under one Idempotency-Key with ten different bodies: one job is
created and accepted (202), the other nine are refused (422) and create nothing; the key is
claimed in the very transaction that creates the job."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.store import Store
from tests.api.conftest import MODEL, RecordingDispatcher, bearer

SUBMITTERS = 10


def test_one_key_ten_bodies_at_once_creates_one_job(
    app: FastAPI, store: Store, token: Callable[..., str]
) -> None:
    app.state.dispatcher = RecordingDispatcher()
    headers = {**bearer(token("alice", "read,submit")), "Idempotency-Key": "one-key-ten-bodies"}
    barrier = threading.Barrier(SUBMITTERS)
    statuses: list[int] = []
    lock = threading.Lock()

    with TestClient(app) as client:

        def submit(seed: int) -> None:
            body = {"model": MODEL, "latents": {"count": 1, "seed": seed}, "top_k": 2}
            barrier.wait()
            status = client.post("/v1/jobs", json=body, headers=headers).status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=submit, args=(seed,)) for seed in range(SUBMITTERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert Counter(statuses) == {202: 1, 422: SUBMITTERS - 1}, statuses
    (job,) = store.list_jobs()  # the refused nine created no job (nor chunks)
    assert len(store.list_chunks(job.id)) >= 1
    assert len(app.state.dispatcher.dispatched) == len(store.list_chunks(job.id))
