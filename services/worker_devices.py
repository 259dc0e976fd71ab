"""Which devices the running workers have, so that a job asking for one nobody has is refused
at submission instead of failing (or waiting forever) on a worker; and which GPUs this machine
has, so that ``spectra worker --gpus 0,1`` refuses devices it does not see instead of starting
workers that say "on cuda".

Each worker advertises its device under its node name in Redis, with an expiry a few times
its refresh interval: a worker that dies drops out on its own. The API reads the set back.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

DEVICE_KEY_PREFIX = "latent-spectra:worker-device:"
LOOKUP_TIMEOUT_S = 2.0


def advertise(client: redis.Redis, node_name: str, device: str, ttl_s: float) -> None:
    client.set(DEVICE_KEY_PREFIX + node_name, device, ex=max(1, math.ceil(ttl_s)))


def withdraw(client: redis.Redis, node_name: str) -> None:
    client.delete(DEVICE_KEY_PREFIX + node_name)


def advertised_devices(broker_url: str) -> set[str]:
    """The devices live workers advertise on the broker at ``broker_url``."""
    import redis

    client = redis.Redis.from_url(
        broker_url, socket_timeout=LOOKUP_TIMEOUT_S, socket_connect_timeout=LOOKUP_TIMEOUT_S
    )
    try:
        keys = list(client.scan_iter(match=DEVICE_KEY_PREFIX + "*", count=100))
        values = client.mget(keys) if keys else []
        return {v.decode() if isinstance(v, bytes) else str(v) for v in values if v is not None}
    finally:
        client.close()


def device_is_served(requested: str, available: set[str]) -> bool:
    """Whether a job on ``requested`` can run on one of ``available``. The CPU is always
    there; plain ``cuda`` is any GPU; ``cuda:N`` needs a worker that has exactly that."""
    if requested == "cpu":
        return True
    if requested == "cuda":
        return any(device == "cuda" or device.startswith("cuda:") for device in available)
    if requested == "cuda:0" and "cuda" in available:
        return True
    return requested in available


GPU_PROBE_TIMEOUT_S = 5.0


def nvidia_smi_gpus(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> list[str]:
    """``nvidia-smi -L`` lines, one per GPU this machine shows ("GPU 0: NVIDIA H100 ... (UUID:
    GPU-...)"); empty without the tool or the driver. Milliseconds, where asking torch takes
    seconds: a refusal of a wrong index should be instant."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        done = run([tool, "-L"], capture_output=True, text=True, timeout=GPU_PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU ")]


def visible_gpus() -> list[str]:
    """The GPUs a worker on this machine could be given, described one per entry. nvidia-smi
    first; where it is missing but an NVIDIA device node exists, torch is asked."""
    listed = nvidia_smi_gpus()
    if listed or not Path("/dev/nvidiactl").exists():
        return listed
    import torch

    return [f"GPU {i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]


def check_gpus(requested: Sequence[str], seen: Sequence[str] | None = None) -> None:
    """Refuse GPU names (indices, or the UUIDs nvidia-smi prints) this machine does not have,
    naming those it sees."""
    seen = visible_gpus() if seen is None else list(seen)
    valid = {str(i) for i in range(len(seen))}
    valid |= {part.split("UUID:")[1].strip(" )") for part in seen if "UUID:" in part}
    missing = [name for name in requested if name.strip() not in valid]
    if missing:
        sees = "; ".join(seen) if seen else "no GPU (use --cpu)"
        raise ValueError(f"no GPU {', '.join(missing)} on this machine; it sees: {sees}")
