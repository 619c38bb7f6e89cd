"""What every kernel shares: the backward that scales a unit gradient, saving, row chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from focalkit.torch._reduction import nan_where_zero

Recompute = Callable[[Tensor], Tensor]


class ScaledGrad(torch.autograd.Function):
    """Shared backward: scale the unit gradient computed in forward by the incoming gradient."""

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, *unused: Any) -> Any:
        (input,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: the definition, through autograd
            grad = recompute_grad(ctx.recompute, input, grad_out)
        else:
            grad = ctx.unit_grad
            if grad is None:  # a second backward through a retained graph: compute it again
                grad = ctx.rerun()
            ctx.unit_grad = None
            if grad_out.dim() and ctx.class_dim is not None:
                grad_out = grad_out.unsqueeze(ctx.class_dim)
            if ctx.grad_factor is not None:
                grad_out = grad_out * ctx.grad_factor
            # In grad_out's dtype: float16 gradients times a loss scale of 2^16 (above float16's
            # largest number) stay finite where the product does.
            grad = grad.mul_(grad_out)
        return (grad,) + (None,) * (ctx.num_inputs - 1)


def recompute_grad(recompute: Recompute, input: Tensor, grad_out: Tensor) -> Tensor:
    """The eager definition's gradient; itself differentiable when grad mode is on."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        leaf = input if create_graph else input.detach().requires_grad_()
        loss = recompute(leaf)
        (grad,) = torch.autograd.grad(loss, leaf, grad_out, create_graph=create_graph)
    return grad


def save(
    ctx: Any,
    input: Tensor,
    unit_grad: Tensor | None,
    recompute: Recompute,
    rerun: Callable[[], Tensor],
    num_inputs: int,
    class_dim: int | None,
    grad_factor: Tensor | float | None = None,
) -> None:
    ctx.save_for_backward(input)
    ctx.grad_factor = grad_factor
    ctx.unit_grad = unit_grad
    ctx.recompute = recompute
    ctx.rerun = rerun
    ctx.num_inputs = num_inputs
    ctx.class_dim = class_dim


def no_autocast(tensor: Tensor) -> torch.autocast:
    return torch.autocast(tensor.device.type, enabled=False)


def computed_grad(result: tuple[Any, ...]) -> Tensor:
    grad = result[1]
    if not isinstance(grad, Tensor):
        raise RuntimeError("the kernel computed no gradient")
    return grad


def chunk_rows(row_elements: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(1, row_elements))


def row_chunks(rows: int, row_elements: int, chunk_elements: int) -> Iterator[slice]:
    """Slices of about ``chunk_elements`` elements along dim 0 (from shapes only: no sync)."""
    step = chunk_rows(row_elements, chunk_elements)
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def mean_grad_scale(divisor: Tensor, kept: Tensor | None = None) -> Tensor:
    """The gradient's factor for ``'mean'``: ``1 / divisor``, or 0 where no element is kept.

    A batch of ignored targets only has a loss of ``0 / 0 = nan`` and, as with
    ``F.cross_entropy``, a gradient of 0. ``kept`` (the elements' mask, ``(N, d...)``) is needed
    where the divisor can be 0 with elements kept (their classes all of weight 0); the factor is
    then one per element, shaped ``(N, 1, d...)``: ``nan`` for the kept elements and 0 for the
    ignored ones, which is what ``F.cross_entropy``'s gradient holds there.
    """
    if kept is None:
        return torch.where(divisor == 0, 0.0, divisor.reciprocal())
    return torch.where(kept, nan_where_zero(divisor).reciprocal(), 0.0).unsqueeze(1)


def chunk_of(value: Tensor | float, rows: slice) -> Tensor | float:
    """A per-element factor's rows (one number stays as it is)."""
    return value[rows] if isinstance(value, Tensor) and value.dim() > 0 else value


def join(parts: list[Any]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)
