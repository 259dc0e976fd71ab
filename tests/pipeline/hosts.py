"""Infrastructure for the fault tests: a PostgreSQL server of our own (restarted at will, never
the shared one), and "hosts" made of Linux network namespaces joined by a bridge.

The namespaces' links carry addresses from the benchmarking range 198.18.0.0/15 (RFC 2544),
never a private or a public one, and the bridge lives in a namespace of its own. Only a lab
that ``attach_here`` joins to the tests' own namespace reaches it, over a veth of its own and a
/24 of that range (servers the tests start here listen on it; the shared PostgreSQL and Redis
never do). Everything is torn down by the owner's ``close``, which the fixtures call in a
finaliser, so also when a test fails.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("ns_probe.py")
# The benchmarking range, RFC 2544: reserved for tests like these, routed nowhere.
LAB_PREFIX = "198.18"
LAB_NETMASK = 15


def _pg_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    which = shutil.which(name)
    if which is None:
        raise AssertionError(
            f"PostgreSQL's {name} is required for the fault tests and is not installed "
            "(install the postgresql server package)"
        )
    return which


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` OS user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), check=check, capture_output=True, text=True, timeout=60)


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of our own in a temporary directory, fast and throw-away (fsync
    off), on ``host:port``, optionally inside the network namespace ``netns``.

    ``disk_mb``: the data directory lives on a filesystem of that size of its own (a tmpfs
    this object mounts, root only), so that ``fill_disk`` can fill it as a full disk would:
    PostgreSQL then fails every write that needs new space (SQLSTATE 53100) while reads go
    on; ``free_disk`` gives the space back. The write-ahead log stays outside it (a full
    WAL disk stops the server instead, which is the "PostgreSQL down" fault)."""

    host: str
    port: int
    netns: str | None = None
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ls-pg-")))
    process: subprocess.Popen[bytes] | None = None
    disk_mb: int | None = None

    @property
    def disk(self) -> Path:
        return self.directory / "disk"

    @property
    def data(self) -> Path:
        return (self.disk if self.disk_mb else self.directory) / "data"

    @property
    def ballast(self) -> Path:
        return self.disk / "ballast"

    def fill_disk(self) -> None:
        """Fill the data directory's filesystem to the last byte (with incompressible data)."""
        assert self.disk_mb, "this server has no disk of its own (disk_mb)"
        chunk = os.urandom(1 << 20)
        with self.ballast.open("ab", buffering=0) as ballast:
            with contextlib.suppress(OSError):  # ENOSPC: full
                while True:
                    ballast.write(chunk)
            with contextlib.suppress(OSError):
                while True:
                    ballast.write(b"x" * 4096)

    def free_disk(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def init(self) -> None:
        self.directory.chmod(0o755)
        wal: list[str] = []
        if self.disk_mb:
            self.disk.mkdir()
            run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={self.disk_mb}m,mode=0755",
                    "tmpfs",
                    str(self.disk),
                ]
            )
            wal = ["--waldir", str(self.directory / "pg_wal")]
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            if wal:
                shutil.chown(self.directory, "postgres", "postgres")
        self.data.chmod(0o700)
        run(
            _as_postgres(
                [
                    _pg_binary("initdb"),
                    "-D",
                    str(self.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    *wal,
                ]
            )
        )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {LAB_PREFIX}.0.0/{LAB_NETMASK} trust\n")

    def start(self) -> None:
        command = _as_postgres(
            [
                _pg_binary("postgres"),
                "-D",
                str(self.data),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                str(self.data),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ]
        )
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        log = (self.directory / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if self.netns is None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(psycopg.OperationalError):
                    psycopg.connect(self.dsn(), connect_timeout=2).close()
                    return
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
            raise AssertionError(f"private PostgreSQL did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.directory / "postgres.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, mode: str = "fast") -> None:
        """``fast``: SIGINT (sessions ended, clean shutdown); ``immediate``: SIGQUIT."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        if self.disk_mb:
            run(["umount", "--lazy", str(self.disk)], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    switch_port: str  # the veth end on the bridge: down = this host's link is cut


class Lab:
    """Hosts as network namespaces on one bridge (itself in a namespace of its own)."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.switch = f"ls{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self.here: str | None = None  # the tests' own end of attach_here's link
        self.processes: list[subprocess.Popen[bytes]] = []
        self.directory = Path(tempfile.mkdtemp(prefix="ls-lab-"))
        self.directory.chmod(0o755)
        if shutil.which("ip") is None:
            raise AssertionError("`ip` (iproute2) is required for the multi-host test")
        run(["ip", "netns", "add", self.switch])
        run(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.switch, "link", "set", "br0", "up"])

    def add_host(self, name: str, last_octets: str) -> Host:
        netns = f"ls{self.tag}-{name}"
        address = f"{LAB_PREFIX}.{last_octets}"
        port = f"p-{name}"[:15]
        run(["ip", "netns", "add", netns])
        run(["ip", "-n", netns, "link", "set", "lo", "up"])
        run(
            [
                "ip",
                "-n",
                self.switch,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                netns,
            ]
        )
        run(["ip", "-n", self.switch, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", netns, "addr", "add", f"{address}/{LAB_NETMASK}", "dev", "eth0"])
        run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        host = Host(name, netns, address, port)
        self.hosts[name] = host
        return host

    def attach_here(self, subnet: int) -> str:
        """Join the tests' own network namespace to the bridge, as one more host at
        198.18.SUBNET.1/24, and return that address: a server started here on it is reached
        by the lab's hosts (give them addresses in the same /24: add_host(name, "SUBNET.2")),
        and cutting a host's link cuts it off from that server. A /24 of its own per lab, so
        two labs attached at once route apart."""
        assert 1 <= subnet <= 254, "the third octet of 198.18.SUBNET.0/24"
        self.here = f"ls{self.tag}-up"
        address = f"{LAB_PREFIX}.{subnet}.1"
        # Made in the switch's namespace, its other end put straight into this process's, as
        # add_host does: the switch's end never exists here under a name another lab (another
        # test process) could be creating at the same moment.
        here_netns = str(os.getpid())
        run(
            ["ip", "-n", self.switch, "link", "add", "p-here", "type", "veth"]
            + ["peer", "name", self.here, "netns", here_netns]
        )
        run(["ip", "-n", self.switch, "link", "set", "p-here", "master", "br0", "up"])
        run(["ip", "addr", "add", f"{address}/24", "dev", self.here])
        run(["ip", "link", "set", self.here, "up"])
        return address

    def cut(self, host: Host) -> None:
        """Pull the host's cable: its packets go nowhere, its connections hang, it lives on."""
        run(["ip", "-n", self.switch, "link", "set", host.switch_port, "down"])

    def restore(self, host: Host) -> None:
        run(["ip", "-n", self.switch, "link", "set", host.switch_port, "up"])

    def spawn(
        self,
        host: Host,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_name: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``command`` on ``host``: in its network namespace, with its own host name."""
        wrapped = [
            "ip",
            "netns",
            "exec",
            host.netns,
            "unshare",
            "--uts",
            "sh",
            "-c",
            f'hostname {host.name} && exec "$@"',
            "sh",
            *command,
        ]
        log = (self.directory / f"{log_name or host.name}.log").open("ab")
        process = subprocess.Popen(
            wrapped,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pids(self, host: Host) -> list[int]:
        result = run(["ip", "netns", "pids", host.netns], check=False)
        return [int(p) for p in result.stdout.split()]

    def crash(self, host: Host) -> None:
        """Every process of the host killed at once, as when its power fails."""
        for pid in self.pids(host):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        for host in self.hosts.values():
            self.crash(host)
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for host in self.hosts.values():
            run(["ip", "netns", "del", host.netns], check=False)
        if self.here is not None:  # its peer went with the switch; never leave one behind
            run(["ip", "link", "del", self.here], check=False)
        run(["ip", "netns", "del", self.switch], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


class Probe:
    """A Python process on a lab host that evaluates what the test sends it: the test's own
    eyes and hands inside the lab (its store reads and HTTP calls stay on the lab's links)."""

    def __init__(self, lab: Lab, host: Host, env: dict[str, str]) -> None:
        command = ["ip", "netns", "exec", host.netns, sys.executable, "-u", str(PROBE)]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(lab.directory / "probe.log").open("ab"),
            start_new_session=True,
            text=True,
        )
        lab.processes.append(self.process)  # type: ignore[arg-type]

    def exec(self, code: str) -> Any:
        """Run ``code``; the value of its last line (an expression) comes back as JSON."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"code": code}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError("the lab probe died")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"probe failed on {code!r}:\n{answer['error']}")
        return answer["value"]
