"""Reductions, with the divisors ``F.cross_entropy`` uses."""

from __future__ import annotations

import torch
from torch import Tensor


def reduce(loss: Tensor, reduction: str, divisor: Tensor | None = None) -> Tensor:
    """``'none'``: ``loss``; ``'sum'``: its sum; ``'mean'``: its sum over ``divisor``.

    ``divisor=None`` means the number of elements. Like PyTorch, the mean of nothing (an empty
    batch, every target ignored, or every kept target of weight 0) is ``nan``; with a divisor
    of 0 its gradient is ``nan`` for every element that ``loss`` does not mask out.
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if divisor is None:
        return total / loss.numel()
    return total / nan_where_zero(divisor)


def nan_where_zero(divisor: Tensor) -> Tensor:
    """The ``'mean'`` divisor, ``nan`` where it is 0: the mean over no weight is ``nan``.

    ``F.cross_entropy`` gives ``nan`` there, even where label smoothing's share of the classes of
    non-zero weight would make the quotient ``inf``; and its gradient is ``nan`` (not ``inf``)
    for every kept element.
    """
    return torch.where(divisor == 0, torch.nan, divisor)


def divide(total: Tensor, divisor: float | Tensor | None) -> Tensor:
    """``total / divisor`` in ``total``'s dtype and on its device; ``total`` if ``divisor`` is None.

    A tensor ``divisor`` on another device is moved without waiting for it (``non_blocking``);
    its value is never read on the host.
    """
    if divisor is None:
        return total
    if isinstance(divisor, Tensor):
        return total / divisor.to(total.device, total.dtype, non_blocking=True)
    return total / float(divisor)
