"""NVIDIA network pickles (stylegan2-ada-pytorch, stylegan3) through their documented attributes.

``stylegan2-ada:PKL`` unpickles PKL (a dict with ``G_ema``, else ``G``, as NVIDIA's
`legacy.load_network_pkl` reads it). Unpickling runs the classes NVIDIA's code defines, so
their ``torch_utils`` / ``dnnlib`` packages must be importable: the setting
``SPECTRA_NVIDIA_CODE_DIR`` names the directory that holds them (a clone of the repository);
it is put on ``sys.path`` for the load only. Because it runs pickled code, the HTTP API
serves such a model only when an operator lists it in ``SPECTRA_EXTRA_MODELS``.

The contract used, and nothing more: ``G.z_dim``, ``G.w_dim``, ``G.num_ws``, ``G.c_dim`` (0
for an unconditional model), ``G.mapping(z, c)`` -> ws (B, num_ws, w_dim),
``G.mapping.w_avg`` (w_dim,), ``G.synthesis(ws, noise_mode="const")`` -> images. Noise is
NVIDIA's "const" mode (the pickle's own fixed noise buffers). Truncation ψ toward w_avg is
applied here, to every layer. Spaces are as for rosinality checkpoints (stylegan2/). SeFa
reads the synthesis layers' style affines: every submodule named ``*.affine`` with a
``weight`` of shape (in, w_dim), scaled by its ``weight_gain`` when it has one.

NVIDIA's custom ops (bias_act, upfirdn2d, conv2d_gradfix) fall back to their reference
implementations on the CPU; whether their autograd functions pass torch.func's transforms is
theirs to decide, so the `bp` and `hvp` methods (plain autograd) are the safe choice there.
"""

from __future__ import annotations

import copy
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidGeneratorError, InvalidOptionError, MissingWeightsError
from .generator import Generator, file_sha256, freeze
from .stylegan2 import SPACES, check_space

CONTRACT = "z_dim, w_dim, num_ws, mapping (with w_avg) and synthesis"


@runtime_checkable
class NvidiaGenerator(Protocol):
    """The documented attributes of NVIDIA's generator that this adapter uses."""

    z_dim: int
    w_dim: int
    num_ws: int
    mapping: nn.Module
    synthesis: nn.Module


@runtime_checkable
class AveragingMapping(Protocol):
    w_avg: torch.Tensor


@runtime_checkable
class ClassConditional(Protocol):
    c_dim: int


@runtime_checkable
class StyleAffine(Protocol):
    weight: torch.Tensor


@runtime_checkable
class GainedAffine(Protocol):
    """An affine whose stored weight is scaled at run time (NVIDIA's FullyConnectedLayer)."""

    weight: torch.Tensor
    weight_gain: float


@contextmanager
def _importable(code_dir: str | None) -> Iterator[None]:
    if not code_dir:
        yield
        return
    sys.path.insert(0, code_dir)
    try:
        yield
    finally:
        if code_dir in sys.path:
            sys.path.remove(code_dir)


def read_pickle(name: str, path: Path, code_dir: str | None) -> nn.Module:
    try:
        with _importable(code_dir), open(path, "rb") as handle:
            data = pickle.load(handle)  # noqa: S301 - only for operator-listed files (see above)
    except (ModuleNotFoundError, AttributeError) as error:
        where = f" (SPECTRA_NVIDIA_CODE_DIR={code_dir!r})" if code_dir else ""
        raise InvalidGeneratorError(
            f"{name}: cannot unpickle {path}: {error}{where}. Set SPECTRA_NVIDIA_CODE_DIR to the "
            "directory holding NVIDIA's torch_utils and dnnlib (a stylegan2-ada-pytorch or "
            "stylegan3 clone)"
        ) from None
    except Exception as error:
        raise InvalidGeneratorError(f"{name}: {path} is not a readable pickle: {error}") from None
    network = data.get("G_ema", data.get("G")) if isinstance(data, dict) else data
    if not isinstance(network, nn.Module):
        raise InvalidGeneratorError(
            f"{name}: {path} holds no generator module (expected a dict with 'G_ema' or 'G')"
        )
    if not isinstance(network, NvidiaGenerator) or not isinstance(
        network.mapping, AveragingMapping
    ):
        raise InvalidGeneratorError(
            f"{name}: the generator ({type(network).__name__}) lacks part of NVIDIA's contract; "
            f"an NVIDIA StyleGAN generator has {CONTRACT}"
        )
    return network


class NvidiaStyleGAN(nn.Module):
    """Codes of one space -> G.synthesis(ws, noise_mode='const'). The layer `w` carries the
    styles: (B, w_dim) in z and w, (B, num_ws, w_dim) in w+."""

    w_avg: torch.Tensor

    def __init__(self, network: Any, *, space: str, psi: float) -> None:
        super().__init__()
        self.mapping = network.mapping
        self.synthesis = network.synthesis
        self.w = nn.Identity()
        self.z_dim, self.w_dim = int(network.z_dim), int(network.w_dim)
        self.num_ws = int(network.num_ws)
        self.c_dim = int(network.c_dim) if isinstance(network, ClassConditional) else 0
        if self.c_dim:
            raise InvalidGeneratorError(
                f"a class-conditional NVIDIA generator (c_dim={self.c_dim}) is not supported yet"
            )
        self.space, self.psi = space, float(psi)
        self.register_buffer("w_avg", network.mapping.w_avg.detach().clone().reshape(self.w_dim))
        self.sefa_normalize_rows = True
        self.ganspace_layer = "w"

    def truncate(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.psi == 1.0 else self.w_avg + self.psi * (w - self.w_avg)

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """(B, w_dim): the mapping's first layer slot (every slot is the same w)."""
        ws: torch.Tensor = self.mapping(z, None)
        return ws[:, 0]

    def styles(self, codes: torch.Tensor) -> torch.Tensor:
        if self.space == "w+":
            slots: torch.Tensor = self.w(codes.reshape(codes.shape[0], self.num_ws, self.w_dim))
            return slots
        w = self.truncate(self.map(codes)) if self.space == "z" else codes
        styles: torch.Tensor = self.w(w)
        return styles[:, None, :].expand(-1, self.num_ws, -1)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.synthesis(self.styles(codes), noise_mode="const")
        return images

    def layer_names(self) -> list[str]:
        inner = [
            f"synthesis.{name}"
            for name, sub in self.synthesis.named_modules()
            if name and not isinstance(sub, nn.Sequential | nn.ModuleList | nn.ModuleDict)
        ]
        return ["w", *inner]

    def _affines(self) -> list[tuple[str, StyleAffine]]:
        return [
            (name, sub)
            for name, sub in self.synthesis.named_modules()
            if name.split(".")[-1] == "affine"
            and isinstance(sub, StyleAffine)
            and isinstance(sub.weight, torch.Tensor)
            and sub.weight.shape[-1] == self.w_dim
        ]

    def sefa_layer_names(self) -> list[str]:
        return [name for name, _ in self._affines()]

    def sefa_weights(self, layers: list[int] | None = None) -> list[torch.Tensor]:
        if self.space != "w":
            raise InvalidOptionError(
                "SeFa factorises the style affines, which read w: use space 'w' for sefa on an "
                "NVIDIA StyleGAN pickle"
            )
        affines = self._affines()
        if not affines:
            raise InvalidOptionError("this pickle's synthesis has no '*.affine' layers for SeFa")
        chosen = range(len(affines)) if layers is None else layers
        out = []
        for index in chosen:
            if not 0 <= index < len(affines):
                raise InvalidOptionError(
                    f"SeFa layer {index} does not exist: {len(affines)} affine layers"
                )
            module = affines[index][1]
            gain = float(module.weight_gain) if isinstance(module, GainedAffine) else 1.0
            out.append(module.weight.detach() * gain)
        return out


def load_nvidia(
    name: str,
    location: str,
    *,
    space: str = "z",
    psi: float | None = None,
    code_dir: str | None = None,
) -> Generator:
    space, psi = check_space(space, psi)
    path = Path(location).expanduser()
    if not location or not path.is_file():
        raise MissingWeightsError(f"{name}: no network pickle at {str(path)!r}")
    network = read_pickle(name, path, code_dir)
    module = NvidiaStyleGAN(network, space=space, psi=psi).to(torch.float32)
    freeze(module)
    mapping64 = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal((n, module.z_dim))
        if space == "z":
            return z
        with torch.no_grad():
            w = mapping64.truncate(mapping64.map(torch.from_numpy(z))).numpy()
        return w if space == "w" else np.tile(w, (1, module.num_ws))

    facts = {
        "model": name,
        "weights_file": str(path.resolve()),
        "weights_sha256": file_sha256(path),
        "format": "NVIDIA network pickle (G_ema / G)",
        "z_dim": module.z_dim,
        "w_dim": module.w_dim,
        "num_ws": module.num_ws,
        "space": space,
        "psi": psi,
        "noise": "noise_mode='const' (the pickle's buffers)",
        "w_avg": "G.mapping.w_avg",
    }
    latent_dim = (
        module.num_ws * module.w_dim
        if space == "w+"
        else (module.z_dim if space == "z" else module.w_dim)
    )
    return Generator(
        name=name,
        family="stylegan2-ada",
        latent_dim=latent_dim,
        module=module,
        facts=facts,
        sampler=sample,
        space=space,
        spaces=SPACES,
    )
