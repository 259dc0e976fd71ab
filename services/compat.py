"""Import torchvision on a CPU-only torch whose torchvision wheel is a CUDA build.

torchvision 0.28.0 from the registry is built against CUDA; with the CPU build of torch 2.13.0
its C extension does not load, so `torchvision/_meta_registrations.py` fails at import with
"operator torchvision::nms does not exist" (pytorch/vision#9085) — and `lpips`, which imports
torchvision for its backbones, fails with it. Nothing in this project calls those detection
operators; declaring their two schemas lets the pure-Python part of torchvision (the model
definitions LPIPS needs) import. Where torchvision imports normally (GPU images, matching
wheels) this does nothing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import torch

_MISSING_OP_MESSAGE = "torchvision::nms does not exist"
# Kept alive for the life of the process: the schemas vanish when the Library is collected.
_schema_library: torch.library.Library | None = None


def _declare_missing_schemas() -> None:
    global _schema_library
    if _schema_library is not None:
        return
    library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
    _schema_library = library


def _forget_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision() -> ModuleType:
    """Return the torchvision module, applying the schema workaround only if the import fails
    for exactly the known reason; any other import error propagates unchanged."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if _MISSING_OP_MESSAGE not in str(error):
            raise
    _forget_partial_import()
    _declare_missing_schemas()
    return importlib.import_module("torchvision")


def workaround_active() -> bool:
    """True when this process needed (and applied) the schema workaround."""
    return _schema_library is not None
