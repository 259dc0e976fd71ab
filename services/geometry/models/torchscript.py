"""``torchscript:PATH``: a scripted generator.

Contract: ``torch.jit.load(PATH)`` gives a module whose ``forward`` maps a float tensor of codes
(B, d) to images (B, C, H, W) in [-1, 1], deterministically, differentiably (every method
differentiates through it). d is read from an integer attribute ``latent_dim`` of the scripted
module, or else from an extra file ``latent_dim`` saved with
``torch.jit.save(m, PATH, _extra_files={"latent_dim": "100"})``. Codes ~ N(0, I). The module is
loaded with ``map_location`` onto the chosen device and put in eval mode.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InvalidGeneratorError, UnknownModelError
from .generator import Generator, file_sha256, freeze


def load_torchscript(name: str, location: str, device: torch.device) -> Generator:
    path = Path(location).expanduser()
    if not location or not path.is_file():
        raise UnknownModelError(
            f"{name}: no TorchScript file at {str(path)!r}; give the path of a saved module"
        )
    extra = {"latent_dim": ""}
    try:
        module = torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), map_location=device, _extra_files=extra
        )
    except Exception as error:  # a corrupt or non-TorchScript file
        raise InvalidGeneratorError(
            f"{name}: {path} is not a loadable TorchScript module: {error}"
        ) from None
    latent_dim = getattr(module, "latent_dim", None)
    if latent_dim is None and extra["latent_dim"]:
        latent_dim = _int_or_none(extra["latent_dim"])
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise InvalidGeneratorError(
            f"{name}: the module does not say its latent dimension; give the scripted module an int "
            "attribute `latent_dim`, or save it with "
            "torch.jit.save(m, path, _extra_files={'latent_dim': '100'})"
        )
    facts = {
        "model": name,
        "weights_file": str(path.resolve()),
        "weights_sha256": file_sha256(path),
        "latent_distribution": "N(0, I)",
    }
    return Generator(
        name=name, family="torchscript", latent_dim=latent_dim, module=freeze(module), facts=facts
    )


def _int_or_none(text: str | bytes) -> int | None:
    try:
        return int(text.decode() if isinstance(text, bytes) else text)
    except ValueError:
        return None
