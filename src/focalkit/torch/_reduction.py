"""Reductions, with the divisors ``F.cross_entropy`` uses."""

from __future__ import annotations

from torch import Tensor


def reduce(loss: Tensor, reduction: str, divisor: Tensor | None = None) -> Tensor:
    """``'none'``: ``loss``; ``'sum'``: its sum; ``'mean'``: its sum over ``divisor``.

    ``divisor=None`` means the number of elements. Like PyTorch, the mean of nothing (an empty
    batch, or every target ignored) is ``0 / 0 = nan``.
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if divisor is None:
        return total / loss.numel()
    return total / divisor
