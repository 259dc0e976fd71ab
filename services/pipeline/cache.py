"""Loaded generators and distances, kept per process so a worker loads a model once.

Bounded: a worker that sees many models keeps only the most recent few, so memory (GPU memory
above all) does not grow with every model ever asked for. Kept already converted to the job's
dtype, so the core does not copy the model for every code.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from services.geometry import Distance, Generator, load_distance, load_generator

CACHE_SIZE = 2
_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@lru_cache(maxsize=CACHE_SIZE)
def cached_generator(
    model: str, device: str, dtype: str = "float32", space: str = "z", psi: float | None = None
) -> Generator:
    generator = load_generator(model, device=device, space=space, psi=psi)
    return generator.to(generator.device, _TORCH_DTYPES[dtype])


@lru_cache(maxsize=CACHE_SIZE)
def cached_distance(
    name: str,
    device: str,
    dtype: str = "float32",
    resize: int | None = None,
    random_backbone: bool | None = None,
) -> Distance:
    distance = load_distance(
        name, device=device, resize=resize, random_backbone=bool(random_backbone)
    )
    return distance.to(device, _TORCH_DTYPES[dtype])


def clear() -> None:
    """Forget every loaded model (tests; after a generator file changed on disk)."""
    cached_generator.cache_clear()
    cached_distance.cache_clear()
