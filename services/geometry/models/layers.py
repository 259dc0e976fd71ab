"""Named generator layers: which exist, and a module cut at one of them.

A layer is a submodule of the generator's module, named as `named_modules()` names it. A
module may curate the list with a `layer_names()` method (StyleGAN2 does: `w` and the
synthesis layers); otherwise every submodule that is not a container is listed, in module
order. `LayerTap(module, name)` maps codes to the named layer's output: a forward hook catches
the output and stops the forward pass there, so the layers after it are never run. Plain
Python around the module, so torch.func's transforms (jvp, vmap, grad) see through it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InvalidOptionError
from .capabilities import NamedLayers

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def layer_names(module: nn.Module) -> list[str]:
    if isinstance(module, NamedLayers):
        return list(module.layer_names())
    if isinstance(module, torch.jit.ScriptModule):
        return []  # forward hooks do not run in TorchScript
    return [
        name for name, sub in module.named_modules() if name and not isinstance(sub, _CONTAINERS)
    ]


def check_layer(module: nn.Module, layer: str) -> None:
    names = layer_names(module)
    if layer not in names:
        listed = ", ".join(names) if names else "none (a TorchScript module has no hookable layers)"
        raise InvalidOptionError(f"unknown layer {layer!r}; this model's layers are: {listed}")


class _Caught(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        super().__init__("layer output caught")
        self.output = output


class LayerTap(nn.Module):
    """codes -> the activations of `layer` inside `module` (shape as the layer gives them)."""

    def __init__(self, module: nn.Module, layer: str) -> None:
        super().__init__()
        check_layer(module, layer)
        self.inner = module
        self.layer = layer

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        target = self.inner.get_submodule(self.layer)

        def catch(_module: nn.Module, _inputs: Any, output: Any) -> None:
            raise _Caught(output)

        handle = target.register_forward_hook(catch)
        try:
            self.inner(codes)
        except _Caught as caught:
            if not isinstance(caught.output, torch.Tensor):
                raise InvalidOptionError(
                    f"layer {self.layer!r} returns {type(caught.output).__name__}, not a tensor"
                ) from None
            return caught.output
        finally:
            handle.remove()
        raise InvalidOptionError(f"layer {self.layer!r} was not run by the forward pass")

    def layer_names(self) -> list[str]:
        return [self.layer]
