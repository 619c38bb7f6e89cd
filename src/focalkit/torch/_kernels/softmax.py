r"""The softmax focal loss kernel (class dim 1, every option); the fused loss reuses its chunk.

Per element with :math:`s_c = \log p_c`, :math:`u_c = 1 - p_c` and :math:`f(s) = -u^\gamma s`:

.. math::
    \ell = \sum_c Q_c f(s_c), \qquad
    \frac{\partial \ell}{\partial x_j} = a_j - p_j \sum_c a_c, \quad a_c = Q_c f'(s_c), \quad
    f'(s) = u^{\gamma - 1} \left(\gamma p s - u\right),

with :math:`Q = q \alpha w` the weighted target distribution (one-hot for class indices, where
the sum has one term). For :math:`\gamma \ge 1` every factor is bounded, so the kernels use this
form as it stands; below 1 (or for a tensor ``gamma``) they use
:math:`f'(s) = u^\gamma (\gamma p s / u - 1)` with :math:`u` clamped away from 0, where
:math:`u^\gamma` vanishes.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit.torch._focal import bounded_focal_slope, focal_slope
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
from focalkit.torch._settings import SoftmaxKernelSettings

# Elements per chunk. Each operation on a chunk is one parallel region (one wake-up of the thread
# pool), so chunks are as large as the temporaries they need allow: the one-hot softmax path has
# none of the input's size (it writes the gradient in place), the others have several.
ONE_HOT_CHUNK = 1 << 24
DISTRIBUTION_CHUNK = 1 << 22
SCRATCH_CHUNK = 1 << 21  # softmax chunks that need a scratch buffer of their own


class SoftmaxFocal(ScaledGrad):
    """Softmax focal loss over class dim 1, every option; see the module docstring.

    ``settings.row_coef`` (shape ``(N, 1, d...)``) holds each element's ``scale * kept``;
    ``settings.mean_scale`` is the gradient's factor for ``'mean'`` (from ``mean_grad_scale``).
    """

    @staticmethod
    def forward(
        ctx: Any, input: Tensor, settings: SoftmaxKernelSettings, recompute: Recompute
    ) -> Tensor:
        with no_autocast(input):  # the math is float32 already; keep reductions there
            out, unit_grad, factor = _softmax_forward(
                input, settings, needs_grad=settings.needs_grad
            )
        rerun = partial(_softmax_forward, input, settings, needs_grad=True)
        save(ctx, input, unit_grad, recompute, lambda: computed_grad(rerun()), 3, 1, factor)
        return out


def per_element_factor(settings: SoftmaxKernelSettings) -> bool:
    """Whether the factor that :func:`_softmax_forward` leaves out of the unit gradient is one
    per element, from the settings alone (else it is one number, or None).

    Only a target distribution at a number ``gamma >= 1`` leaves one per element (the
    elements' coefficients, or a per-element ``'mean'`` scale); class indices without smoothing
    leave the sign, and the other distributions nothing (see :func:`softmax_chunk`).
    """
    gamma = settings.gamma
    one_hot = settings.target_index is not None and settings.label_smoothing == 0
    if one_hot or isinstance(gamma, Tensor) or gamma < 1:
        return False
    per_element_mean = settings.reduction == "mean" and settings.mean_scale.dim() > 0
    return settings.row_coef is not None or per_element_mean


def _softmax_forward(
    input: Tensor, settings: SoftmaxKernelSettings, *, needs_grad: bool
) -> tuple[Tensor, Tensor | None, Tensor | float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by (None: none; one
    per element, shaped ``(N, 1, d...)``, exactly where :func:`per_element_factor` says so)."""
    target = ChunkTarget(*settings[:7])
    divisor, mean_scale, reduction, compute_dtype = settings[7:11]
    rows, row_elements = input.shape[0], input[:1].numel()
    unit_grad = (
        torch.empty_like(input, memory_format=torch.contiguous_format) if needs_grad else None
    )
    direct = unit_grad is not None and unit_grad.dtype == compute_dtype
    one_hot = target.target_index is not None and target.label_smoothing == 0
    chunk_elements = ONE_HOT_CHUNK if one_hot else DISTRIBUTION_CHUNK
    scratch = None
    if not direct:  # a float32 scratch for half-precision input, or no gradient to write into
        chunk_elements = min(chunk_elements, SCRATCH_CHUNK)
        scratch_shape = (min(rows, chunk_rows(row_elements, chunk_elements)), *input.shape[1:])
        scratch = torch.empty(scratch_shape, dtype=compute_dtype, device=input.device)
    grad_scale = mean_scale if reduction == "mean" else 1.0
    losses, factors = [], []
    for chunk in row_chunks(rows, row_elements, chunk_elements):
        x = input[chunk]  # log_softmax reads it in its own dtype and writes compute_dtype
        work = unit_grad[chunk] if direct else scratch[: x.shape[0]]  # type: ignore[index]
        loss, factor = softmax_chunk(
            x, work, target.rows(chunk), chunk_of(grad_scale, chunk) if needs_grad else None
        )
        losses.append(loss)
        factors.append(factor)
        if unit_grad is not None and not direct:
            unit_grad[chunk] = work
    if not losses:  # an empty batch
        losses.append(input.new_empty((0, 1, *input.shape[2:]), dtype=compute_dtype))
        factors.append(None)
    out = reduce(join(losses).squeeze(1), reduction, divisor)
    # Every chunk returns the same kind of factor: None, one number, or one per element.
    first = factors[0]
    factor = first if not isinstance(first, Tensor) or first.dim() == 0 else join(factors)
    return out, unit_grad, factor


class ChunkTarget(NamedTuple):
    """What the softmax chunk reads besides the logits: the first seven fields of
    ``SoftmaxKernelSettings``, for all rows or (:meth:`rows`) for one chunk's."""

    target_index: Tensor | None  # (n, 1, d...) class indices, ignored ones replaced by 0
    q: Tensor | None  # class probabilities, the logits' shape
    class_coef: Tensor | None  # (C,) alpha * weight
    row_coef: Tensor | None  # (n, 1, d...) each element's coefficient; None: all ones
    gamma: float | Tensor  # a number, or one per element shaped (n, 1, d...)
    label_smoothing: float
    kept: Tensor | None  # (n, 1, d...) whether the target is not ignore_index; None: probs

    def rows(self, part: slice) -> ChunkTarget:
        """The rows ``part`` of every per-element field."""
        index, q, class_coef, row_coef, gamma, label_smoothing, kept = self
        return ChunkTarget(
            None if index is None else index[part],
            None if q is None else q[part],
            class_coef,
            None if row_coef is None else row_coef[part],
            gamma[part] if isinstance(gamma, Tensor) else gamma,
            label_smoothing,
            None if kept is None else kept[part],
        )


def softmax_chunk(
    x: Tensor, work: Tensor, target: ChunkTarget, grad_scale: Tensor | float | None
) -> tuple[Tensor, Tensor | float | None]:
    """A chunk's loss per element ``(n, 1, d...)``; its unit gradient is written into ``work``.

    ``work`` may be ``x`` itself (its logits are then overwritten). ``grad_scale=None`` skips the
    gradient. The second result is None when ``work`` holds the whole unit gradient, or a factor
    (a number, or one per element shaped like the loss) that ``work`` still has to be multiplied
    by: the caller folds it into a pass it makes anyway (backward's scaling by the incoming
    gradient, or the fused loss's matrix products), which saves one pass over the chunk here.
    """
    index, _, class_coef, row_coef, gamma, label_smoothing, kept = target
    if index is not None and label_smoothing == 0:
        # One-hot target: only s_t = log p_t enters the loss, and the gradient is
        # (dl/ds_t) (onehot - p). ``work`` gets (dl/ds_t) (p - onehot), hence the factor -1.
        if row_coef is None:
            raise ValueError("class-index targets need their elements' coefficients")
        coef = row_coef if class_coef is None else row_coef * class_coef[index]
        log_p = torch.log_softmax(x, 1, dtype=work.dtype, out=work)
        # Ignored elements take s_t = 0, so that their terms are 0 even where their logits are
        # NaN or their placeholder class's logit is masked (-inf); kept ones of weight 0 keep
        # theirs, as the definition does (NaN in, NaN out).
        log_pt = log_p.gather(1, index)
        if kept is not None:
            log_pt = torch.where(kept, log_pt, 0.0)
        minus_u = torch.expm1(log_pt)  # p_t - 1
        loss, slope = _target_terms(log_pt, minus_u, coef, gamma, grad_scale)
        if slope is None:
            return loss, None
        work.exp_().scatter_(1, index, minus_u).mul_(slope)
        return loss, -1.0
    # A distribution over classes: smoothed one-hot or probability targets.
    if isinstance(gamma, Tensor) or gamma < 1:
        return _kept_only(_softmax_distribution_chunk(x, work, target, grad_scale), kept), None
    # gamma >= 1. With the bounded slope a / Q = g t (``_focal.bounded_focal_slope``), the loss
    # is sum_c Q g (p - 1) s. For gamma = 2, g is taken as p - 1 and the sign moves into the
    # returned factor; the loss is (p - 1)^2 s there.
    log_p = F.log_softmax(x, 1, dtype=work.dtype)
    prob = log_p.exp()
    minus_u = prob - 1.0
    _, sign, g = bounded_focal_slope(log_p, prob, minus_u, gamma, out=work)  # x no longer read
    if gamma == 2:
        terms = minus_u.square_().mul_(log_p)
    else:
        terms = minus_u.mul_(log_p)
        if g is not None:
            terms.mul_(g)
    del log_p
    loss = _mul_target_weights_(terms, target).sum(1, keepdim=True)
    loss = loss.mul_(sign) if row_coef is None else loss.mul_(row_coef * sign)
    loss = _kept_only(loss, kept)
    if grad_scale is None:
        return loss, None
    _mul_target_weights_(work, target)  # a / sign
    work.addcmul_(prob, work.sum(1, keepdim=True), value=-1.0)
    return loss, sign * grad_scale if row_coef is None else row_coef * (sign * grad_scale)


def _kept_only(loss: Tensor, kept: Tensor | None) -> Tensor:
    """The loss per element with ignored elements' made 0: their coefficient 0 alone leaves
    ``0 * NaN = NaN`` where their logits are NaN (the smoothed terms read every class)."""
    return loss if kept is None else torch.where(kept, loss, 0.0)


def _target_terms(
    log_pt: Tensor,
    minus_u: Tensor,
    coef: Tensor,
    gamma: float | Tensor,
    grad_scale: Tensor | float | None,
) -> tuple[Tensor, Tensor | None]:
    """Loss ``-coef (1 - p_t)^gamma s_t`` and slope ``coef grad_scale f'(s_t)``, per element.

    For ``gamma >= 1`` the slope is ``_focal.bounded_focal_slope`` (no division); a tensor
    ``gamma`` or one below 1 takes ``_focal.focal_slope``.
    """
    below_one = isinstance(gamma, Tensor) or gamma < 1
    if below_one:
        one_minus_pt = minus_u.neg()
        power = one_minus_pt.pow(gamma)
        loss = torch.rsub(torch.mul(power, log_pt).mul_(coef), 0.0)  # +0, not -0, where 0
    else:
        power = minus_u.square() if gamma == 2 else minus_u.neg().pow_(gamma)
        loss = torch.rsub(power.mul_(log_pt).mul_(coef), 0.0)  # +0, not -0, where coef is 0
    if grad_scale is None:
        return loss, None
    # p s -> 0 as s -> -inf; the clamp keeps it 0 there instead of 0 * inf.
    log_pt = log_pt.clamp_min(torch.finfo(log_pt.dtype).min)
    if below_one:
        slope = focal_slope(
            log_pt,
            gamma,
            one_minus_p=one_minus_pt,
            power=power,
            scale=coef * grad_scale,
            out=torch.empty_like(log_pt),
        )
        return loss, slope
    slope, sign, _ = bounded_focal_slope(log_pt, minus_u + 1.0, minus_u, float(gamma))
    return loss, slope.mul_(coef * -grad_scale if sign < 0 else coef * grad_scale)


def _softmax_distribution_chunk(
    x: Tensor, work: Tensor, target: ChunkTarget, grad_scale: Tensor | float | None
) -> Tensor:
    """A target distribution at any ``gamma`` (a tensor, or below 1, where ``(1 - p)^(gamma-1)``
    is unbounded): the loss per element, and the complete unit gradient written into ``work``."""
    log_p = F.log_softmax(x, 1, dtype=work.dtype)  # x is not read again: work may be x
    prob = log_p.exp()
    one_minus_p = torch.rsub(prob, 1.0)
    focal_weights = _mul_target_weights_(one_minus_p.pow(target.gamma), target)  # Q (1 - p)^gamma
    if target.row_coef is not None:
        focal_weights.mul_(target.row_coef)
    loss = (focal_weights * log_p).sum(1, keepdim=True).neg_()
    if grad_scale is not None:
        # a = Q f'(s) grad_scale, then the gradient a - p sum a, in place.
        slope = focal_slope(
            log_p,
            target.gamma,
            prob=prob,
            one_minus_p=one_minus_p,
            power=focal_weights,
            scale=grad_scale,
            out=work,
        )
        slope.addcmul_(prob, slope.sum(1, keepdim=True), value=-1.0)
    return loss


def _mul_target_weights_(values: Tensor, target: ChunkTarget) -> Tensor:
    """``values *= Q``, in place, with ``Q = q alpha w`` per class (``q`` smoothed).

    For smoothed class indices that is one pass over the classes and a scatter of the targets'
    share: the one-hot distribution is never formed.
    """
    index, q, class_coef, _, _, label_smoothing, _ = target
    num_classes = values.shape[1]
    class_view = (1, -1) + (1,) * (values.dim() - 2)
    share = label_smoothing / num_classes
    if q is not None:
        if label_smoothing > 0:
            values.mul_(q.to(values.dtype) * (1.0 - label_smoothing) + share)
        else:
            values.mul_(q)
        return values if class_coef is None else values.mul_(class_coef.reshape(class_view))
    if index is None:
        raise ValueError("a class-index or a class-probability target is required")
    on_target = values.gather(1, index).mul_(1.0 - label_smoothing)
    if class_coef is None:
        values.mul_(share)
    else:
        on_target.mul_(class_coef[index])
        values.mul_(class_coef.reshape(class_view) * share)
    return values.scatter_add_(1, index, on_target)
