"""skip_constant_weight_tangents: the same forward-mode derivatives, without the zero
weight-tangent convolutions torch would otherwise run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.utils._python_dispatch import TorchDispatchMode

from services.geometry.forward_mode import skip_constant_weight_tangents


class _Mixed(nn.Module):
    """Every op the context handles, in the calling conventions nn modules use."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 2 * 3 * 3)
        self.deconv = nn.ConvTranspose2d(2, 4, 4, stride=2, padding=1)
        self.conv = nn.Conv2d(4, 3, 3, padding=1, padding_mode="reflect")
        self.conv1d = nn.Conv1d(3, 2, 3, bias=False)
        self.deconv1d = nn.ConvTranspose1d(2, 2, 3, stride=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.linear(z)).reshape(-1, 2, 3, 3)
        x = torch.tanh(self.conv(torch.relu(self.deconv(x))))
        out: torch.Tensor = self.deconv1d(torch.relu(self.conv1d(x.flatten(2))))
        return out.flatten(1)


def _module() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return _Mixed().double().eval()


def _codes(*shape: int) -> torch.Tensor:
    """Seeded codes: with whatever the global RNG held, the ReLUs could all be dead at z0 and
    the Jacobian too small for the comparison to mean anything."""
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


def _jacobian_rows(module: nn.Module, z0: torch.Tensor) -> torch.Tensor:
    basis = torch.eye(z0.shape[1], dtype=z0.dtype).unsqueeze(1)
    rows: torch.Tensor = vmap(lambda t: jvp(module, (z0,), (t,))[1])(basis)
    return rows.squeeze(1)


def test_jacobian_is_unchanged() -> None:
    module, z0 = _module(), _codes(1, 5)
    expected = _jacobian_rows(module, z0)
    with skip_constant_weight_tangents():
        got = _jacobian_rows(module, z0)
    assert expected.abs().max() > 0.01
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_weight_tangents_still_count() -> None:
    """A jvp with respect to the weights themselves (not this service's use) stays exact."""
    module, z0 = _module(), _codes(2, 5)
    params = dict(module.named_parameters())
    tangents = {name: torch.randn_like(p) for name, p in params.items()}

    def image(weights: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = functional_call(module, weights, (z,))
        return images

    z_tangent = torch.randn_like(z0)
    expected = jvp(image, (params, z0), (tangents, z_tangent))[1]
    with skip_constant_weight_tangents():
        got = jvp(image, (params, z0), (tangents, z_tangent))[1]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


class _CountOps(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's hook is untyped
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _convolutions_in_jacobian(module: nn.Module, z0: torch.Tensor, *, skip: bool) -> int:
    counter = _CountOps()
    with counter:
        if skip:
            with skip_constant_weight_tangents():
                _jacobian_rows(module, z0)
        else:
            _jacobian_rows(module, z0)
    return counter.counts["convolution"]


def test_only_primal_and_tangent_convolutions_run() -> None:
    """Four convolution layers: torch's own rule runs three convolutions per layer (primal,
    tangent, primal with the zero weight tangent); with the context, two."""
    module, z0 = _module(), _codes(1, 5)
    assert _convolutions_in_jacobian(module, z0, skip=False) == 3 * 4
    assert _convolutions_in_jacobian(module, z0, skip=True) == 2 * 4


def test_batched_primals_are_unchanged() -> None:
    """Jacobians of several codes at once (vmap over the primal too): the forward's vmap rule
    takes its general path."""
    module, codes = _module(), _codes(3, 1, 5)
    expected = vmap(lambda z: _jacobian_rows(module, z))(codes)
    with skip_constant_weight_tangents():
        got = vmap(lambda z: _jacobian_rows(module, z))(codes)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
