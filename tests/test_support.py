"""The shared test helpers themselves: waiting, ports, and the store fixture builder."""

from __future__ import annotations

import socket
import time

import pytest

from services.store import Store
from tests.support.net import free_port
from tests.support.waiting import wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    calls: list[int] = []

    def third_time() -> str | None:
        calls.append(1)
        return "ready" if len(calls) == 3 else None

    assert wait_for(third_time, 5, "the third call", poll_s=0.001) == "ready"
    assert len(calls) == 3


def test_wait_for_names_what_it_waited_for_when_it_times_out() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="timed out after 0 s waiting for the impossible"):
        wait_for(lambda: None, 0.2, "the impossible", poll_s=0.01)
    assert 0.2 <= time.monotonic() - started < 2


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_default_store_is_migrated_and_the_tests_own(
    store: Store, migrated_pg_url: str
) -> None:
    assert str(store.engine.url.render_as_string(hide_password=False)) == migrated_pg_url
    assert store.list_jobs() == []
