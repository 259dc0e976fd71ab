"""Loaded generators and distances, kept per process so a worker loads a model once.

Bounded: a worker that sees many models keeps only the most recent few, so memory (GPU memory
above all) does not grow with every model ever asked for.
"""

from __future__ import annotations

from functools import lru_cache

from services.geometry import Distance, Generator, load_distance, load_generator

CACHE_SIZE = 2


@lru_cache(maxsize=CACHE_SIZE)
def cached_generator(model: str, device: str) -> Generator:
    return load_generator(model, device=device)


@lru_cache(maxsize=CACHE_SIZE)
def cached_distance(
    name: str, device: str, resize: int | None = None, random_backbone: bool | None = None
) -> Distance:
    return load_distance(name, device=device, resize=resize, random_backbone=bool(random_backbone))


def clear() -> None:
    """Forget every loaded model (tests; after a generator file changed on disk)."""
    cached_generator.cache_clear()
    cached_distance.cache_clear()
