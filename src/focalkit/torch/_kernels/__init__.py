r"""Lean forward+backward kernels: focal losses at the memory and time cost of cross-entropy.

The eager formulas in ``functional.py`` are the definitions; these kernels compute the same
numbers with hand-derived gradients. Each forward walks the input in row chunks, writes the loss
and the gradient of the loss with respect to the input into one buffer (nothing else of the
input's size is kept for backward), and its backward only scales that buffer by the incoming
gradient, in place. A factor shared by all of an element's classes (the sign; ``1 / divisor``
for ``'mean'``; for target distributions also the ignore mask and a scalar ``alpha``) is left out
of the buffer, and that one scaling applies it: one pass over the buffer fewer.

Two cases take the eager definition instead: a second backward through the same graph
(``retain_graph=True``; the buffer was consumed by the first) and double backward
(``create_graph=True``); there the backward recomputes the loss from the saved input with
autograd. ``torch.compile`` traces the eager formulas, which it fuses itself.

One module per family: :mod:`.softmax` (``SoftmaxFocal``; the math in its docstring),
:mod:`.sigmoid` (``SigmoidFocal``, ``SigmoidFocalElementwise``), :mod:`.fused`
(``LinearSoftmaxFocal``, over the softmax chunk) and :mod:`._common` (the shared backward,
saving, row chunks). This module holds the switches that decide whether a call takes a kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor
from torch.autograd import forward_ad

from focalkit.torch._kernels._common import mean_grad_scale, row_chunks
from focalkit.torch._kernels.fused import LinearSoftmaxFocal, fused_chunk_rows
from focalkit.torch._kernels.sigmoid import SigmoidFocal, SigmoidFocalElementwise
from focalkit.torch._kernels.softmax import SoftmaxFocal
from focalkit.torch._settings import FusedSettings

__all__ = [
    "FusedSettings",
    "LinearSoftmaxFocal",
    "SigmoidFocal",
    "SigmoidFocalElementwise",
    "SoftmaxFocal",
    "applicable",
    "compiling",
    "dual",
    "fused_chunk_rows",
    "mean_grad_scale",
    "row_chunks",
    "transformed",
    "use_kernels",
]

_ENABLED: ContextVar[bool] = ContextVar("focalkit_kernels", default=True)


@contextmanager
def use_kernels(enabled: bool) -> Iterator[None]:
    """Turn the lean kernels on or off (off: every loss runs its autograd definition).

    For tests and benchmarks that compare the two; the results are the same either way.
    """
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def compiling(*settings: object) -> bool:
    """Whether ``torch.compile`` is tracing and no setting needs a gradient."""
    if not torch.compiler.is_compiling():
        return False
    return not any(isinstance(value, Tensor) and value.requires_grad for value in settings)


def applicable(input: Tensor, *settings: object) -> bool:
    """Whether the kernels take this call: not under ``torch.compile`` (which fuses the
    definition itself), a ``torch.func`` transform or forward-mode AD (which differentiate the
    definition), and no setting that autograd should differentiate."""
    if torch.compiler.is_compiling() or not _ENABLED.get() or transformed(input, *settings):
        return False
    if dual(input, *settings):
        return False
    return not any(isinstance(value, Tensor) and value.requires_grad for value in settings)


def dual(*values: object) -> bool:
    """Whether any of ``values`` carries a forward-mode tangent (``torch.autograd.forward_ad``).

    The kernels' Functions have no ``jvp``: forward-mode AD goes through the definitions.
    """
    return any(
        isinstance(value, Tensor) and forward_ad.unpack_dual(value).tangent is not None  # type: ignore[no-untyped-call]
        for value in values
    )


def transformed(*values: object) -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``...) traces any of the
    tensors among ``values``."""
    functorch = getattr(torch._C, "_functorch", None)
    check = getattr(functorch, "is_functorch_wrapped_tensor", None)
    if check is None:
        return False
    return any(isinstance(value, Tensor) and bool(check(value)) for value in values)
