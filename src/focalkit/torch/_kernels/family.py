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

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor

from focalkit.torch._family import Out, poly_target_terms
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

# On the CPU, exp of an argument below log(smallest normal number) (about -87 in float32) and
# arithmetic on the subnormal numbers it returns are tens of times slower than on normal ones. In
# rows whose shifted logits z - max z spread beyond FLUSH_SPREAD (half that log), the
# probabilities below e^-FLUSH_SPREAD times the largest (1e-19 in float32: far below its
# resolution, in the loss and in the gradient) are flushed to 0: clamped before exp, and zeroed
# after it by a threshold just above what exp returns there.
FLUSH_SPREAD = {
    dtype: -0.5 * math.log(torch.finfo(dtype).tiny) for dtype in (torch.float32, torch.float64)
}
FLUSHED = {dtype: math.exp(-spread) * (1.0 + 1e-6) for dtype, spread in FLUSH_SPREAD.items()}
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
    r"""A chunk's loss per element ``(n, 1, d...)``; ``work`` gets ``coef h'(s_t) (p - onehot)``.

    The softmax is written out: ``work`` gets :math:`z - \max z` (without an offset the extremes
    are taken over ``x``, the scale being positive), then :math:`e^{z - \max z}`, whose row sums
    give :math:`\log p_t`. On the CPU, rows spread wider than :data:`FLUSH_SPREAD` (as LDAM's
    scale makes them) have their smallest probabilities flushed to 0 (see there).
    """
    index = settings.target_index[chunk]
    scale = 1.0 if settings.logit_scale is None else settings.logit_scale
    on_cpu = work.device.type == "cpu"  # where the spread matters (see FLUSH_SPREAD)
    bottom = None
    if offset is not None:  # offset is already scaled: z = scale x + offset, then z - max z
        logits = torch.add(offset, x, alpha=scale, out=work)
        top = logits.amax(1, keepdim=True)
        if on_cpu:
            bottom = logits.amin(1, keepdim=True)
        logits.sub_(top)
    else:
        top = x.amax(1, keepdim=True).to(work.dtype) * scale
        if on_cpu:
            bottom = x.amin(1, keepdim=True).to(work.dtype) * scale
        torch.add(-top, x, alpha=scale, out=work)
    if settings.margin is not None:
        margin = settings.margin[chunk] * -scale
        work.scatter_add_(1, index, margin)
        if bottom is not None:
            bottom = bottom + margin
    shifted_target = work.gather(1, index)  # z_t - max z
    flush = bottom is not None and bool(((top - bottom) > FLUSH_SPREAD[work.dtype]).any())
    if flush:
        work.clamp_min_(-FLUSH_SPREAD[work.dtype])
    work.exp_()
    if flush:
        torch.threshold_(work, FLUSHED[work.dtype], 0.0)
    total = work.sum(1, keepdim=True)  # work: e^(z - max z)
    coef = settings.coef[chunk]
    # Elements of weight 0 (ignored ones) take s_t = 0, so that their terms are 0 even where a
    # masked logit (-inf) makes their s_t = -inf.
    log_pt = torch.where(coef != 0, shifted_target - total.log(), 0.0)
    loss, slope = poly_target_terms(log_pt, coef, settings.gamma, settings.epsilon, grad_scale)
    if slope is not None:  # slope (p - onehot), with p = e^(z - max z) / total
        work.mul_(slope / total).scatter_(1, index, slope * torch.expm1(log_pt))
    return loss


ValueAndSlope = Callable[[Tensor, Tensor, bool, Out], tuple[Tensor, Tensor | None]]

# Elements per chunk of the element-wise kernel. Each operation on a chunk is one parallel region
# (one wake-up of the thread pool), so chunks are large; the dozen chunk-sized buffers a loss
# needs are allocated once per call and reused by every chunk.
ELEMENTWISE_CHUNK = 1 << 19


class ElementwiseSettings(NamedTuple):
    """What :class:`ElementwiseFamily` reads."""

    value_and_slope: ValueAndSlope  # (x, y, with_grad, out) -> (loss, d loss / d x), unweighted
    target: Tensor  # the input's shape, in the compute dtype
    weight: Tensor | None  # broadcastable to the input, in the compute dtype
    reduction: str
    compute_dtype: torch.dtype
    needs_grad: bool


class ElementwiseFamily(ScaledGrad):
    r"""An element-wise loss on logits with a hand-derived slope (``value_and_slope``, from
    :mod:`focalkit.torch._family`): row chunks of the input are turned into the loss and the
    gradient, which is written into one buffer of the input's size, the only one kept for
    backward; every temporary is a chunk's size."""

    @staticmethod
    def forward(
        ctx: Any, input: Tensor, settings: ElementwiseSettings, recompute: Recompute
    ) -> Tensor:
        with no_autocast(input):
            out, unit_grad, factor = _elementwise_forward(
                input, settings, needs_grad=settings.needs_grad
            )
        rerun = partial(_elementwise_forward, input, settings, needs_grad=True)
        save(ctx, input, unit_grad, recompute, lambda: computed_grad(rerun()), 3, None, factor)
        return out


class _Buffers:
    """Chunk-sized buffers by name, each allocated once per call and reused by every chunk
    (its first ``rows`` rows); ``outputs`` names the buffers that are views of the results."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        self.buffers: dict[str, Tensor] = {}
        self.outputs: dict[str, Tensor] = {}
        self.rows = shape[0]

    def __call__(self, name: str) -> Tensor:
        output = self.outputs.get(name)
        if output is not None:
            return output
        buffer = self.buffers.get(name)
        if buffer is None:
            buffer = torch.empty(self.shape, dtype=self.dtype, device=self.device)
            self.buffers[name] = buffer
        return buffer[: self.rows]


def _elementwise_forward(
    input: Tensor, settings: ElementwiseSettings, *, needs_grad: bool
) -> tuple[Tensor, Tensor | None, float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by (None: none)."""
    compute_dtype, reduction = settings.compute_dtype, settings.reduction
    batched = input if input.dim() else input.unsqueeze(0)
    target = settings.target.expand(input.shape)
    weight = None if settings.weight is None else settings.weight.expand(input.shape)
    if not input.dim():
        target = target.unsqueeze(0)
        weight = None if weight is None else weight.unsqueeze(0)
    rows, row_elements = batched.shape[0], batched[:1].numel()
    unit_grad = None
    if needs_grad:
        unit_grad = torch.empty(batched.shape, dtype=input.dtype, device=input.device)
    direct = unit_grad is not None and unit_grad.dtype == compute_dtype
    losses = None
    if reduction == "none":
        losses = torch.empty(batched.shape, dtype=compute_dtype, device=input.device)
    chunk_shape = (min(rows, chunk_rows(row_elements, ELEMENTWISE_CHUNK)), *batched.shape[1:])
    buffers = _Buffers(chunk_shape, compute_dtype, input.device)
    total = torch.zeros((), dtype=compute_dtype, device=input.device)
    for chunk in row_chunks(rows, row_elements, ELEMENTWISE_CHUNK):
        x = batched[chunk].to(compute_dtype)
        buffers.rows = x.shape[0]
        buffers.outputs.clear()
        if losses is not None:
            buffers.outputs["loss"] = losses[chunk]
        if direct and unit_grad is not None:
            buffers.outputs["grad"] = unit_grad[chunk]
        loss, grad = settings.value_and_slope(x, target[chunk], needs_grad, buffers)
        if weight is not None:
            loss = loss.mul_(weight[chunk])
            grad = None if grad is None else grad.mul_(weight[chunk])
        if losses is None:
            total = total + loss.sum()
        elif loss.data_ptr() != losses[chunk].data_ptr():
            losses[chunk] = loss
        if unit_grad is not None and grad is not None and not direct:
            unit_grad[chunk] = grad
    factor = None
    if losses is not None:
        out = losses.reshape(input.shape)
    elif reduction == "mean":
        out = total / input.numel()
        factor = 1.0 / max(input.numel(), 1)  # applied by backward's scaling
    else:
        out = total
    return out, None if unit_grad is None else unit_grad.reshape(input.shape), factor


class DistributionSettings(NamedTuple):
    """What :class:`DistributionFocal` reads (input ``(N, n + 1, d...)``)."""

    left_index: Tensor  # (N, 1, d...) the lower bin l of each target
    right_share: Tensor  # (N, 1, d...) y - l, the share of the upper bin r = l + 1
    weight: Tensor | None  # (N, 1, d...) each element's weight
    reduction: str
    compute_dtype: torch.dtype
    needs_grad: bool


class DistributionFocal(ScaledGrad):
    r"""The distribution focal loss over the bins of dim 1: with :math:`s = \log p` and the
    target's two bins :math:`l`, :math:`r = l + 1` and shares :math:`1 - a`, :math:`a`,

    .. math::
        \ell = -w \left( (1 - a)\, s_l + a\, s_r \right), \qquad
        \frac{\partial \ell}{\partial x_j} = w \left( p_j - (1 - a) e_{l,j} - a\, e_{r,j} \right),

    the two cross-entropies' gradients summed (their shares add up to 1). ``log_softmax`` is
    written into the gradient buffer, which then becomes the gradient in place."""

    @staticmethod
    def forward(
        ctx: Any, input: Tensor, settings: DistributionSettings, recompute: Recompute
    ) -> Tensor:
        with no_autocast(input):
            out, unit_grad, factor = _distribution_forward(
                input, settings, needs_grad=settings.needs_grad
            )
        rerun = partial(_distribution_forward, input, settings, needs_grad=True)
        save(ctx, input, unit_grad, recompute, lambda: computed_grad(rerun()), 3, 1, factor)
        return out


def _distribution_forward(
    input: Tensor, settings: DistributionSettings, *, needs_grad: bool
) -> tuple[Tensor, Tensor | None, Tensor | float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by."""
    compute_dtype = settings.compute_dtype
    rows, row_elements = input.shape[0], input[:1].numel()
    unit_grad = (
        torch.empty_like(input, memory_format=torch.contiguous_format) if needs_grad else None
    )
    direct = unit_grad is not None and unit_grad.dtype == compute_dtype
    chunk_elements = CHUNK if direct else SCRATCH_CHUNK
    scratch = None
    if not direct:
        scratch_shape = (min(rows, chunk_rows(row_elements, chunk_elements)), *input.shape[1:])
        scratch = torch.empty(scratch_shape, dtype=compute_dtype, device=input.device)
    losses = []
    for chunk in row_chunks(rows, row_elements, chunk_elements):
        x = input[chunk]
        work = unit_grad[chunk] if direct else scratch[: x.shape[0]]  # type: ignore[index]
        left = settings.left_index[chunk]
        right_share = settings.right_share[chunk]
        log_p = torch.log_softmax(x, 1, dtype=work.dtype, out=work)
        log_left, log_right = log_p.gather(1, left), log_p.gather(1, left + 1)
        # -((1 - a) s_l + a s_r) = a (s_l - s_r) - s_l
        losses.append(torch.sub(log_left, log_right).mul_(right_share).sub_(log_left))
        if needs_grad:  # p - (1 - a) e_l - a e_r
            work.exp_().scatter_add_(1, left, right_share - 1.0)
            work.scatter_add_(1, left + 1, -right_share)
        if unit_grad is not None and not direct:
            unit_grad[chunk] = work
    if not losses:  # an empty batch
        losses.append(input.new_empty((0, 1, *input.shape[2:]), dtype=compute_dtype))
    per_element = join(losses)
    factor: Tensor | float | None = settings.weight
    if settings.weight is not None:
        per_element = per_element * settings.weight
    per_element = per_element.squeeze(1)
    out = reduce(per_element, settings.reduction)
    if settings.reduction == "mean":
        scale = 1.0 / max(per_element.numel(), 1)
        factor = scale if factor is None else factor * scale
    return out, unit_grad, factor
