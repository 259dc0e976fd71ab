"""``python:FILE_OR_MODULE:FACTORY``: a generator built by the user's own Python.

Contract: ``FACTORY`` is a callable in a Python file (path ending in ``.py``) or an importable
module; called with no arguments it returns ``(module, latent_dim)`` or ``(module, latent_dim,
extras)``. ``module`` is a ``torch.nn.Module`` mapping (B, d) codes to (B, C, H, W) images in
[-1, 1]. ``extras`` is an optional dict with keys ``"sample"`` (a callable ``(n, rng:
numpy.random.Generator) -> array (n, d)``; without it codes ~ N(0, I)), ``"facts"`` (a JSON-able
dict recorded with every result) and ``"family"`` (a short string). The loader puts the module
in eval mode, freezes its parameters and records the sha256 of its state dict. The module may
implement the capabilities of ``capabilities.py`` (its own SeFa weights, curated layer names).
See docs/custom-generators.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InvalidGeneratorError, UnknownModelError
from .generator import Generator, freeze, state_dict_sha256


def load_python(name: str, spec: str) -> Generator:
    source, _, factory_name = spec.rpartition(":")
    if not source or not factory_name:
        raise UnknownModelError(
            f"{name}: use python:FILE_OR_MODULE:FACTORY, e.g. python:my_gan.py:build"
        )
    namespace = _import_source(name, source)
    factory = getattr(namespace, factory_name, None)
    if not callable(factory):
        raise UnknownModelError(f"{name}: {source} has no callable named {factory_name!r}")
    made = factory()
    if not isinstance(made, tuple) or len(made) not in (2, 3):
        raise InvalidGeneratorError(
            f"{name}: the factory must return (module, latent_dim) or (module, latent_dim, extras), "
            f"got {type(made).__name__}"
        )
    module, latent_dim = made[0], made[1]
    extras = made[2] if len(made) == 3 else {}
    if not isinstance(module, nn.Module):
        raise InvalidGeneratorError(
            f"{name}: the factory's module must be a torch.nn.Module, got {type(module).__name__}"
        )
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise InvalidGeneratorError(
            f"{name}: latent_dim must be a positive int, got {latent_dim!r}"
        )
    if not isinstance(extras, dict) or set(extras) - {"sample", "facts", "family"}:
        raise InvalidGeneratorError(
            f"{name}: extras must be a dict with keys among sample, facts, family"
        )
    sampler = extras.get("sample")
    if sampler is not None and not callable(sampler):
        raise InvalidGeneratorError(
            f"{name}: extras['sample'] must be callable (n, rng) -> (n, d) array"
        )
    user_facts = extras.get("facts", {})
    try:
        json.dumps(user_facts)
    except (TypeError, ValueError):
        raise InvalidGeneratorError(f"{name}: extras['facts'] must be JSON-serialisable") from None
    freeze(module)
    facts = {
        "model": name,
        "weights_sha256": state_dict_sha256(module),
        "latent_distribution": "custom sampler" if sampler else "N(0, I)",
        **user_facts,
    }
    family = str(extras.get("family", "python"))
    return Generator(
        name=name, family=family, latent_dim=latent_dim, module=module, facts=facts, sampler=sampler
    )


def _import_source(name: str, source: str) -> Any:
    if source.endswith(".py"):
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise UnknownModelError(f"{name}: no Python file at {str(path)!r}")
        # One stable module name per file, so loading the same file twice replaces, not piles up.
        module_name = "_spectra_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UnknownModelError(f"{name}: cannot import {path}")
        namespace = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = namespace
        spec.loader.exec_module(namespace)
        return namespace
    try:
        return importlib.import_module(source)
    except ImportError as error:
        raise UnknownModelError(f"{name}: cannot import module {source!r}: {error}") from None
