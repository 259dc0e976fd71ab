"""The check every loaded generator passes once, at load time, where a message can still name
the file: codes (B, d) in, images (B, C, H, W) out, finite.

Shapes are checked on torch's meta device (tensors with shapes and no storage), so checking
costs no memory and no arithmetic whatever the model's size. Values (finite images, and
whether the module runs with channels_last weights) need a real forward pass: it runs here
only when the meta pass says two codes are cheap (`VALUE_CHECK_ACTIVATIONS`); a larger model
is checked for finite weights here, and its images are first computed by a worker, whose
chunks raise NonFiniteOutputError on NaN/inf. A request that loads a large model to plan it,
or to refuse it from its counts, therefore never renders an image. A module that cannot run
on the meta device (it reads values: `.item()`, numpy) is checked by a real forward, as
before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidGeneratorError, NonFiniteOutputError
from .generator import Generator, module_device, module_tensors, to_channels_last

# Module outputs (elements, summed over the forward of the two checking codes) up to which
# the load-time check renders real images. The figure is the cost of a small generator's
# forward (a 64-px DCGAN or StyleGAN2 stays well under it); above it, values wait for a worker.
VALUE_CHECK_ACTIVATIONS = 2**22
CHECK_CODES = 2
# The fact a large generator's load records (its images were not rendered at load).
LOAD_CHECK_FACT = "load_check"


def renders_at_load(generator: Generator) -> bool:
    """Whether the load-time check rendered real images: false for a generator whose forward
    is too large to run where it is loaded (a request that plans it), which must then not be
    rendered there for any other reason either."""
    return LOAD_CHECK_FACT not in generator.facts


@dataclass(frozen=True)
class MetaPass:
    """What one meta-device forward of `batch` codes shows, in elements."""

    output_shape: tuple[int, ...]  # with the batch dimension
    largest_activation: int  # the largest module output
    activations: int  # every module's output summed


def meta_pass(module: nn.Module, latent_dim: int, dtype: torch.dtype, batch: int = 1) -> MetaPass:
    """Run `batch` codes through `module` on meta tensors, counting every module's output.
    Raises whatever the module raises on meta tensors (any module code may refuse them)."""
    largest = total = 0

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal largest, total
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())
            total += output.numel()

    meta = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in (*module.named_parameters(), *module.named_buffers())
    }
    hooks = [child.register_forward_hook(record) for child in module.modules()]
    try:
        with torch.no_grad():
            code = torch.empty((batch, latent_dim), dtype=dtype, device="meta")
            output = torch.func.functional_call(module, meta, (code,), strict=False)
    finally:
        for hook in hooks:
            hook.remove()
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the module returned {type(output).__name__}, not a tensor")
    return MetaPass(tuple(int(size) for size in output.shape), largest, total)


def warm_meta_device() -> None:
    """Run a two-layer module on the meta device: torch imports what its meta kernels need
    (torch._dynamo) on a process's first meta call, seconds that a serving process spends at
    its start rather than in its first request."""
    module = nn.Sequential(nn.Linear(2, 12), nn.Unflatten(1, (3, 2, 2)))
    meta_pass(module, 2, torch.float32)


def check_contract(generator: Generator) -> None:
    """Check `generator` against the contract (see the module docstring) and record its
    output shape in its facts; on the CPU, keep its 4-D weights channels_last where a real
    forward showed the module runs that way. Raises InvalidGeneratorError or
    NonFiniteOutputError naming the model."""
    try:
        shapes: MetaPass | None = meta_pass(
            generator.module, generator.latent_dim, generator.dtype, CHECK_CODES
        )
    except Exception:  # the module reads values or breaks its contract: the real pass says which
        shapes = None
    if shapes is not None:
        _check_output_shape(generator, shapes.output_shape)
    if shapes is None or shapes.activations <= VALUE_CHECK_ACTIVATIONS:
        _check_images(generator)
        _adopt_channels_last(generator)
        return
    _check_finite_weights(generator)
    generator.facts[LOAD_CHECK_FACT] = (
        f"shapes on torch's meta device and finite weights; {shapes.activations} activation "
        f"values for {CHECK_CODES} codes exceed the {VALUE_CHECK_ACTIVATIONS} of a load-time "
        "forward, so images are first computed (and checked finite) by a worker; "
        "weights kept in the module's own memory layout"
    )


def _check_output_shape(generator: Generator, shape: tuple[int, ...]) -> None:
    if len(shape) != 4 or shape[0] != CHECK_CODES:
        raise InvalidGeneratorError(
            f"{generator.name} returned {shape} for {CHECK_CODES} codes; it must return images "
            f"of shape ({CHECK_CODES}, C, H, W)"
        )
    generator.facts.setdefault("output_shape", list(shape[1:]))


@torch.no_grad()
def _check_images(generator: Generator) -> None:
    """Two sampled codes through the module, for real: the shape where the meta device could
    not tell it, and finite images."""
    codes = torch.as_tensor(
        generator.sample(CHECK_CODES, seed=0), dtype=generator.dtype, device=generator.device
    )
    try:
        out = generator.module(codes)
    except Exception as error:  # the user's module may raise anything
        raise InvalidGeneratorError(
            f"{generator.name} failed on a batch of codes of shape ({CHECK_CODES}, "
            f"{generator.latent_dim}): {type(error).__name__}: {error}. The module must map "
            "(B, d) codes to (B, C, H, W) images."
        ) from error
    if not isinstance(out, torch.Tensor):
        raise InvalidGeneratorError(
            f"{generator.name} returned {type(out).__name__} for {CHECK_CODES} codes; it must "
            f"return images of shape ({CHECK_CODES}, C, H, W)"
        )
    _check_output_shape(generator, tuple(out.shape))
    if not torch.isfinite(out).all():
        raise NonFiniteOutputError(f"{generator.name} produced NaN/inf images for sampled codes")


def _check_finite_weights(generator: Generator) -> None:
    # A sum is NaN/inf exactly when an entry is (weights never sum past float32's 3e38), and
    # reads each weight once without a mask as large as the weights.
    for name, parameter in generator.module.named_parameters():
        if parameter.is_floating_point() and not torch.isfinite(
            parameter.sum(dtype=_sum_dtype(parameter))
        ):
            raise InvalidGeneratorError(
                f"{generator.name}: weight {name!r} holds NaN or inf; every image would too"
            )


def _adopt_channels_last(generator: Generator) -> None:
    """On the CPU, 4-D weights (2-D convolutions) channels_last, in place: oneDNN's
    convolutions then keep activations channels_last instead of converting every output back
    to NCHW (faster forward and `jacobian`; bench/results has the measurement). Kept only if
    the module still runs that way (one that reshapes activations with `.view` cannot; the
    meta device does not reproduce that failure, so this takes a real forward); else its own
    layout stays. Elsewhere the layout is left as it is (not measured there)."""
    module = generator.module
    if module_device(module).type != "cpu" or not any(t.dim() == 4 for t in module_tensors(module)):
        return
    to_channels_last(module)
    codes = torch.as_tensor(generator.sample(CHECK_CODES, seed=0), dtype=generator.dtype)
    try:
        with torch.no_grad():
            module(codes)
    except Exception:  # the user's module may raise anything; it ran in its own layout
        module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return
    generator.channels_last = True


def _sum_dtype(parameter: torch.Tensor) -> torch.dtype:
    return torch.float64 if parameter.dtype == torch.float64 else torch.float32
