r"""Lean kernels of the focal family: the shifted, scaled or Poly-1 softmax loss on class indices.

``ShiftedSoftmaxFocal`` computes, for class-index targets without label smoothing,

.. math::
    \ell = c\, h(s_t), \qquad s = \log \operatorname{softmax}(z), \qquad
    z = \sigma (x + b - \Delta_y e_y),

with :math:`h` the Poly-1 focal term of :mod:`focalkit.torch._family` (the focal term for
:math:`\epsilon = 0`), :math:`c` each element's :math:`\alpha_y w_y` (0 where ignored), :math:`b`
the logit offset, :math:`\Delta_y` the LDAM margin and :math:`\sigma` the logit scale. Its gradient
is :math:`\partial \ell / \partial x_j = \sigma\, c\, h'(s_t) (e_{t,j} - p_j)`. Each row chunk of
:math:`z` is formed in the gradient buffer itself, turned into :math:`\log p` there, then into
the unit gradient, so nothing of the input's size is kept but that buffer: the logit adjustment,
LDAM and PolyLoss cost what the focal loss costs.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor

from focalkit.torch._family import poly_target_terms
from focalkit.torch._kernels._common import (
    Recompute,
    ScaledGrad,
    chunk_of,
    chunk_rows,
    computed_grad,
    join,
    no_autocast,
    row_chunks,
    save,
)
from focalkit.torch._reduction import reduce

# Elements per chunk: the chunk's logits are shifted and turned into the gradient in place, so
# the only temporaries are one element per row; chunks as large as the softmax kernel's.
CHUNK = 1 << 24
SCRATCH_CHUNK = 1 << 21  # with a float32 scratch buffer (half-precision input, or no gradient)


class ShiftedSoftmaxSettings(NamedTuple):
    """What :class:`ShiftedSoftmaxFocal` reads: class-index targets, no label smoothing."""

    target_index: Tensor  # (N, 1, d...) class indices, ignored ones replaced by 0
    coef: Tensor  # (N, 1, d...) each element's alpha * weight * scale, 0 where ignored
    offset: Tensor | None  # (C,) logit offset b
    margin: Tensor | None  # (N, 1, d...) each element's margin at its target, 0 where ignored
    logit_scale: float | None  # sigma
    gamma: float
    epsilon: float  # the Poly-1 coefficient; 0: the focal loss
    divisor: Tensor  # the 'mean' divisor
    mean_scale: Tensor  # the gradient's factor for 'mean' (one, or (N, 1, d...))
    reduction: str
    compute_dtype: torch.dtype
    needs_grad: bool


class ShiftedSoftmaxFocal(ScaledGrad):
    """The shifted, scaled, Poly-1 softmax focal loss on class indices; see the module docstring."""

    @staticmethod
    def forward(
        ctx: Any, input: Tensor, settings: ShiftedSoftmaxSettings, recompute: Recompute
    ) -> Tensor:
        with no_autocast(input):  # the math is float32 already; keep reductions there
            out, unit_grad, factor = _forward(input, settings, needs_grad=settings.needs_grad)
        rerun = partial(_forward, input, settings, needs_grad=True)
        save(ctx, input, unit_grad, recompute, lambda: computed_grad(rerun()), 3, 1, factor)
        return out


def _forward(
    input: Tensor, settings: ShiftedSoftmaxSettings, *, needs_grad: bool
) -> tuple[Tensor, Tensor | None, Tensor | float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by."""
    compute_dtype = settings.compute_dtype
    rows, row_elements = input.shape[0], input[:1].numel()
    unit_grad = (
        torch.empty_like(input, memory_format=torch.contiguous_format) if needs_grad else None
    )
    direct = unit_grad is not None and unit_grad.dtype == compute_dtype
    chunk_elements = CHUNK
    scratch = None
    if not direct:
        chunk_elements = SCRATCH_CHUNK
        scratch_shape = (min(rows, chunk_rows(row_elements, chunk_elements)), *input.shape[1:])
        scratch = torch.empty(scratch_shape, dtype=compute_dtype, device=input.device)
    grad_scale = settings.mean_scale if settings.reduction == "mean" else 1.0
    offset = None
    if settings.offset is not None:  # shaped for the class dim, times the scale
        offset = settings.offset.reshape((1, -1) + (1,) * (input.dim() - 2))
        if settings.logit_scale is not None:
            offset = offset * settings.logit_scale
    losses = []
    for chunk in row_chunks(rows, row_elements, chunk_elements):
        x = input[chunk]
        work = unit_grad[chunk] if direct else scratch[: x.shape[0]]  # type: ignore[index]
        losses.append(
            _chunk(
                x,
                work,
                offset,
                settings,
                chunk,
                chunk_of(grad_scale, chunk) if needs_grad else None,
            )
        )
        if unit_grad is not None and not direct:
            unit_grad[chunk] = work
    if not losses:  # an empty batch
        losses.append(input.new_empty((0, 1, *input.shape[2:]), dtype=compute_dtype))
    out = reduce(join(losses).squeeze(1), settings.reduction, settings.divisor)
    # work holds coef h'(s_t) (p - onehot): the sign, and the logit scale of z = scale * (...).
    factor = -1.0 if settings.logit_scale is None else -settings.logit_scale
    return out, unit_grad, factor


def _chunk(
    x: Tensor,
    work: Tensor,
    offset: Tensor | None,
    settings: ShiftedSoftmaxSettings,
    chunk: slice,
    grad_scale: Tensor | float | None,
) -> Tensor:
    """A chunk's loss per element ``(n, 1, d...)``; ``work`` gets ``coef h'(s_t) (p - onehot)``."""
    index = settings.target_index[chunk]
    scale = settings.logit_scale
    # z = scale (x + offset) in one pass (offset is already scaled), written into work
    if offset is not None:
        logits = torch.add(offset, x, alpha=1.0 if scale is None else scale, out=work)
    elif scale is not None:
        logits = torch.mul(x, scale, out=work)
    else:
        logits = x  # log_softmax reads it in its own dtype and writes the compute dtype
    if settings.margin is not None:
        margin = settings.margin[chunk]
        if logits is x:
            logits = work.copy_(x)
        logits.scatter_add_(1, index, margin * -(1.0 if scale is None else scale))
    coef = settings.coef[chunk]
    log_p = torch.log_softmax(logits, 1, dtype=work.dtype, out=work)
    # Elements of weight 0 (ignored ones) take s_t = 0, so that their terms are 0 even where a
    # masked logit (-inf) makes their s_t = -inf.
    log_pt = torch.where(coef != 0, log_p.gather(1, index), 0.0)
    loss, slope = poly_target_terms(log_pt, coef, settings.gamma, settings.epsilon, grad_scale)
    if slope is not None:
        work.exp_().scatter_(1, index, torch.expm1(log_pt)).mul_(slope)
    return loss
