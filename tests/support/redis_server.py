"""A redis-server of our own for the tests and benchmarks that start real workers: on a free
port, so a restart hurts nobody else and no other run's worker takes our messages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.support.net import free_port
from tests.support.waiting import wait_for


class PrivateRedis:
    """Without persistence a restart loses every message; ``aof`` keeps every message across
    a restart (append-only file, fsync always)."""

    def __init__(self, directory: Path, *, aof: bool = False, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.directory = directory
        self.aof = aof
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is required here and is not installed (apt redis)")
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.aof
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                # Off only where it listens on a lab address (tests/pipeline/hosts.py), which
                # its protected mode would refuse as not local; loopback keeps the default.
                "--protected-mode",
                "yes" if self.host == "127.0.0.1" else "no",
                "--save",
                "",
                "--dir",
                str(self.directory),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            wait_for(lambda: _pings(client), 10, "the private redis-server to answer")
        finally:
            client.close()

    def set_aof(self, on: bool) -> None:
        """Turn the append-only file on or off in the running server (and for its restarts)."""
        client = redis.Redis.from_url(self.url)
        client.config_set("appendonly", "yes" if on else "no")
        if on:
            client.config_set("appendfsync", "always")

            def written() -> bool:
                info = client.info("persistence")
                return bool(info["aof_enabled"]) and not info["aof_rewrite_in_progress"]

            wait_for(written, 30, "Redis to write its append-only file")
        client.close()
        self.aof = on

    def stop(self) -> None:
        """SIGKILL: no shutdown save, whatever the server held in memory only is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
