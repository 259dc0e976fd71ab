"""Which devices the running workers have, so that a job asking for one nobody has is refused
at submission instead of failing (or waiting forever) on a worker.

Each worker advertises its device under its node name in Redis, with an expiry a few times
its refresh interval: a worker that dies drops out on its own. The API reads the set back.
"""

from __future__ import annotations

import math

import redis

DEVICE_KEY_PREFIX = "latent-spectra:worker-device:"
LOOKUP_TIMEOUT_S = 2.0


def advertise(client: redis.Redis, node_name: str, device: str, ttl_s: float) -> None:
    client.set(DEVICE_KEY_PREFIX + node_name, device, ex=max(1, math.ceil(ttl_s)))


def withdraw(client: redis.Redis, node_name: str) -> None:
    client.delete(DEVICE_KEY_PREFIX + node_name)


def advertised_devices(broker_url: str) -> set[str]:
    """The devices live workers advertise on the broker at ``broker_url``."""
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
