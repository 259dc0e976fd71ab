"""Loaded generators and distances, kept per process so a worker loads a model once.

Bounded: a worker that sees many models keeps only the most recent few, so memory (GPU memory
above all) does not grow with every model ever asked for. Kept already converted to the job's
dtype, so the core does not copy the model for every code.

Where NVIDIA's pickles find their code (SPECTRA_NVIDIA_CODE_DIR) says how to load a model, not
which model it is, so it is not part of the cache's key: callers that hold the settings pass
it, and a worker sets its process's default once at its start (`configure_loading`) for the
paths that load a model without settings at hand (the chunk function).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import torch

from services.geometry import Distance, Generator, load_distance, load_generator

CACHE_SIZE = 2
_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


_GeneratorKey = tuple[str, str, str, str, float | None]
_generators: OrderedDict[_GeneratorKey, Generator] = OrderedDict()
_generators_lock = threading.Lock()
_default_code_dir: list[str | None] = [None]


def configure_loading(nvidia_code_dir: str | None) -> None:
    """This process's default code directory for NVIDIA pickles (the worker's setting, set
    at its start)."""
    _default_code_dir[0] = nvidia_code_dir or None


def cached_generator(
    model: str,
    device: str,
    dtype: str = "float32",
    space: str = "z",
    psi: float | None = None,
    nvidia_code_dir: str | None = None,
) -> Generator:
    key = (model, device, dtype, space, psi)
    with _generators_lock:
        if key in _generators:
            _generators.move_to_end(key)
            return _generators[key]
    generator = load_generator(
        model,
        device=device,
        space=space,
        psi=psi,
        nvidia_code_dir=nvidia_code_dir or _default_code_dir[0],
    )
    generator = generator.to(generator.device, _TORCH_DTYPES[dtype])
    with _generators_lock:
        _generators[key] = generator
        _generators.move_to_end(key)
        while len(_generators) > CACHE_SIZE:
            _generators.popitem(last=False)
    return generator


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
    with _generators_lock:
        _generators.clear()
    cached_distance.cache_clear()
