"""`spectra worker` killed with SIGKILL takes its workers with it: no orphan computes on.

The launcher runs under a small parent that is a child subreaper (PR_SET_CHILD_SUBREAPER), so
whatever the launcher leaves behind is re-parented to it rather than to init: that parent can
then see every process of the launcher's tree exit, and reap it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.pipeline.conftest import worker_env
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import wait_for

SUBREAPER = """
import ctypes, json, os, subprocess, sys
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
launcher = subprocess.Popen([sys.executable, "-c",
    "import sys; from worker.launcher import launch; sys.exit(launch(None, cpu=True))"],
    stdout=sys.stderr)
print(json.dumps({"launcher": launcher.pid}), flush=True)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:  # every descendant, re-parented or not, has been reaped
        break
    print(json.dumps({"reaped": pid}), flush=True)
"""


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_sigkilled_launcher_takes_its_workers_and_their_pool_children_with_it(
    module_pg_url: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    log = tmp_path / "launcher.log"
    with log.open("wb") as out:
        parent = subprocess.Popen(
            [sys.executable, "-c", SUBREAPER],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            env={**os.environ, **worker_env(module_pg_url, private_redis.url)},
            start_new_session=True,
        )
    tree: list[int] = []
    try:
        assert parent.stdout is not None
        launcher = json.loads(parent.stdout.readline())["launcher"]

        def worker_and_pool_child() -> list[int] | None:
            workers = _children(launcher)
            children = [c for w in workers for c in _children(w)]
            ready = "ready." in log.read_text(errors="replace")
            return [*workers, *children] if workers and children and ready else None

        found = wait_for(worker_and_pool_child, 90, "the launched worker and its pool child")
        tree = [launcher, *found]

        os.kill(launcher, signal.SIGKILL)
        output, _ = parent.communicate(timeout=30)  # ends once everything it adopted exited
        reaped = {json.loads(line)["reaped"] for line in output.splitlines() if line}
        assert set(tree) <= reaped, f"still running after the launcher died: {set(tree) - reaped}"
    finally:
        if parent.poll() is None:  # the test failed: what the launcher left must go too
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
