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
autograd. Under ``torch.compile`` the softmax and fused kernels run as custom operators
(:mod:`.ops`), which the compiled graph calls as they are: no graph break, and no temporary of
the input's size beyond what eager mode has (no logits for the fused loss). The sigmoid loss
takes ``SigmoidFocalElementwise`` there, which the compiler fuses itself.

One module per family: :mod:`.softmax` (``SoftmaxFocal``; the math in its docstring),
:mod:`.sigmoid` (``SigmoidFocal``, ``SigmoidFocalElementwise``), :mod:`.fused`
(``LinearSoftmaxFocal``, over the softmax chunk), :mod:`.ops` (the custom operators) and
:mod:`._common` (the shared backward, saving, row chunks). This module holds the switches that
decide whether a call takes a kernel, and the calls (:func:`softmax_focal`,
:func:`linear_softmax_focal`) that take the ``autograd.Function`` in eager mode and the
operator under ``torch.compile``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor
from torch.autograd import forward_ad

from focalkit.torch._kernels import ops
from focalkit.torch._kernels._common import Recompute, mean_grad_scale, row_chunks
from focalkit.torch._kernels.fused import LinearSoftmaxFocal, fused_chunk_rows
from focalkit.torch._kernels.sigmoid import SigmoidFocal, SigmoidFocalElementwise
from focalkit.torch._kernels.softmax import SoftmaxFocal
from focalkit.torch._settings import FusedSettings, SoftmaxKernelSettings

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
    "linear_softmax_focal",
    "mean_grad_scale",
    "row_chunks",
    "softmax_focal",
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


def applicable(input: Tensor, *settings: object, compiled: bool = False) -> bool:
    """Whether a kernel takes this call: never where a setting needs a gradient (the kernels
    differentiate the input alone); under ``torch.compile``, where the call has a custom
    operator (``compiled=True``); in eager mode, when the kernels are on (:func:`use_kernels`)
    and no ``torch.func`` transform or forward-mode AD traces the call (they differentiate the
    definition)."""
    if any(isinstance(value, Tensor) and value.requires_grad for value in settings):
        return False
    if torch.compiler.is_compiling():
        return compiled and not transformed(input, *settings)
    return _ENABLED.get() and not transformed(input, *settings) and not dual(input, *settings)


def softmax_focal(input: Tensor, settings: SoftmaxKernelSettings, recompute: Recompute) -> Tensor:
    """``SoftmaxFocal`` in eager mode, its custom operator under ``torch.compile``."""
    if torch.compiler.is_compiling():
        return ops.softmax_focal(input, settings)
    out: Tensor = SoftmaxFocal.apply(input, settings, recompute)  # type: ignore[no-untyped-call]
    return out


def linear_softmax_focal(
    input: Tensor,
    classifier: Tensor,
    bias: Tensor | None,
    settings: FusedSettings,
    recompute: Callable[[Tensor, Tensor, Tensor | None], Tensor],
) -> Tensor:
    """``LinearSoftmaxFocal`` in eager mode, its custom operator under ``torch.compile``."""
    if torch.compiler.is_compiling():
        return ops.linear_softmax_focal(input, classifier, bias, settings)
    out: Tensor = LinearSoftmaxFocal.apply(  # type: ignore[no-untyped-call]
        input, classifier, bias, settings, recompute
    )
    return out


def dual(*values: object) -> bool:
    """Whether any of ``values`` carries a forward-mode tangent (``torch.autograd.forward_ad``).

    The kernels' Functions have no ``jvp``: forward-mode AD goes through the definitions.
    Under ``torch.compile``, False: the trace cannot ask (dual tensors do not reach it).
    """
    if torch.compiler.is_compiling():
        return False
    return any(
        isinstance(value, Tensor) and forward_ad.unpack_dual(value).tangent is not None  # type: ignore[no-untyped-call]
        for value in values
    )


def transformed(*values: object) -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``...) traces any of the
    tensors among ``values``. Under ``torch.compile``, which cannot ask a tensor, whether any
    transform is active: the operators then step aside for the definitions, as in eager mode."""
    if torch.compiler.is_compiling():
        return bool(torch._C._are_functorch_transforms_active())
    functorch = getattr(torch._C, "_functorch", None)
    check = getattr(functorch, "is_functorch_wrapped_tensor", None)
    if check is None:
        return False
    return any(isinstance(value, Tensor) and bool(check(value)) for value in values)
