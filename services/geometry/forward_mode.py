"""Forward-mode products through convolutions and linear layers without wasted work.

torch's forward-AD rule for a convolution is conv(x_t, w) + conv(x, w_t, b_t), and it runs the
second term even when the weight and bias have no tangent, on materialised zero tensors: per
layer, a copy of a zero weight, a convolution of the primal with it, and an add over the whole
batch of tangents. For a generator whose weights are constants that is pure overhead (on
dcgan-faces about a fifth of `jacobian`'s time). Inside `skip_constant_weight_tangents()`,
calls of the ops below whose weight and bias carry no tangent go through an autograd.Function
whose jvp is only op(x_t, w): the same derivative, without the zero term. Everything else —
other ops, calls with unusual arguments, weights that do carry tangents — runs as before.

Only forward mode is provided (the Function has no backward): the context is meant for
`torch.func.jvp`, under `vmap` or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# op(input, weight, bias, *rest): linear in input for a fixed weight; what nn.Linear and the
# nn.Conv* / nn.ConvTranspose* modules call, with these positional arguments.
_INPUT_LINEAR_OPS: frozenset[Callable[..., torch.Tensor]] = frozenset(
    {
        F.linear,
        torch.conv1d,
        torch.conv2d,
        torch.conv3d,
        torch.conv_transpose1d,
        torch.conv_transpose2d,
        torch.conv_transpose3d,
    }
)


class _InputLinearOp(torch.autograd.Function):
    """op(x, weight, bias, *rest) with a jvp that leaves out the weight and bias terms when
    they have no tangent (undefined tangents arrive as None: grads are not materialised)."""

    @staticmethod
    def vmap(
        info: Any,
        in_dims: tuple[Any, ...],
        op: Callable[..., torch.Tensor],
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        rest: tuple[Any, ...],
    ) -> tuple[torch.Tensor, int | None]:
        """The forward under vmap. Here the primal is unbatched (vmap runs over tangents
        only), and torch's own rules are cheaper than a generated one."""
        _, x_dim, weight_dim, bias_dim, _ = in_dims
        if x_dim is None and weight_dim is None and bias_dim is None:
            return op(x, weight, bias, *rest), None
        return torch.vmap(lambda *a: op(*a, *rest), in_dims=(x_dim, weight_dim, bias_dim))(
            x, weight, bias
        ), 0

    @staticmethod
    def forward(
        op: Callable[..., torch.Tensor],
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        rest: tuple[Any, ...],
    ) -> torch.Tensor:
        return op(x, weight, bias, *rest)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.op, ctx.x, ctx.weight, _, ctx.rest = inputs
        ctx.set_materialize_grads(False)

    @staticmethod
    def jvp(
        ctx: Any,
        _op_t: None,
        x_t: torch.Tensor | None,
        weight_t: torch.Tensor | None,
        bias_t: torch.Tensor | None,
        _rest_t: None,
    ) -> torch.Tensor:
        terms: list[torch.Tensor] = []
        if x_t is not None:
            terms.append(ctx.op(x_t, ctx.weight, None, *ctx.rest))
        if weight_t is not None or bias_t is not None:
            # Not the case this exists for, but still the right derivative.
            weight_t = torch.zeros_like(ctx.weight) if weight_t is None else weight_t
            terms.append(ctx.op(ctx.x, weight_t, bias_t, *ctx.rest))
        if not terms:
            return torch.zeros_like(ctx.op(ctx.x, ctx.weight, None, *ctx.rest))
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]


class _SkipConstantWeightTangents(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in _INPUT_LINEAR_OPS and not kwargs and len(args) >= 2:
            x, weight, *rest = args
            bias = rest.pop(0) if rest else None
            if isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor):
                return _InputLinearOp.apply(func, x, weight, bias, tuple(rest))  # type: ignore[no-untyped-call]
        return func(*args, **(kwargs or {}))


@contextmanager
def skip_constant_weight_tangents() -> Iterator[None]:
    """Within this context, forward-mode products through linear layers and convolutions
    skip the zero weight-tangent term (see the module docstring)."""
    with _SkipConstantWeightTangents():
        yield
