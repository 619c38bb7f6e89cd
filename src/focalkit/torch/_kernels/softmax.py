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

Softmax, per element with :math:`s_c = \log p_c`, :math:`u_c = 1 - p_c` and
:math:`f(s) = -u^\gamma s`:

.. math::
    \ell = \sum_c Q_c f(s_c), \qquad
    \frac{\partial \ell}{\partial x_j} = a_j - p_j \sum_c a_c, \quad a_c = Q_c f'(s_c), \quad
    f'(s) = u^{\gamma - 1} \left(\gamma p s - u\right),

with :math:`Q = q \alpha w` the weighted target distribution (one-hot for class indices, where
the sum has one term). For :math:`\gamma \ge 1` every factor is bounded, so the kernels use this
form as it stands; below 1 (or for a tensor ``gamma``) they use
:math:`f'(s) = u^\gamma (\gamma p s / u - 1)` with :math:`u` clamped away from 0, where
:math:`u^\gamma` vanishes. Sigmoid, per element with :math:`m = 1 - p_t`, :math:`B` the BCE
and :math:`q = \sigma(-x) = 1 - p`:

.. math::
    \ell = \alpha_t m^\gamma B, \qquad
    \frac{\partial \ell}{\partial x} = \alpha_t m^{\gamma - 1}
    \left(\gamma p q (1 - 2y) B + m B'\right),
    \quad B' = w \left((1 - y) p - p_w\, y\, q\right),

where :math:`m = y q + (1 - y) p` and :math:`B` (from softplus) are sums of terms of one sign,
each from the logit: confident predictions keep their relative precision (see
:func:`_sigmoid_chunk`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import forward_ad

from focalkit.torch._reduction import nan_where_zero

# Elements per chunk. Each operation on a chunk is one parallel region (one wake-up of the thread
# pool), so chunks are as large as the temporaries they need allow: the one-hot softmax path has
# none of the input's size (it writes the gradient in place), the others have several.
ONE_HOT_CHUNK = 1 << 24
DISTRIBUTION_CHUNK = 1 << 22
SIGMOID_CHUNK = 1 << 19
SCRATCH_CHUNK = 1 << 21  # softmax chunks that need a scratch buffer of their own

Recompute = Callable[[Tensor], Tensor]

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


def _focal_slope(
    log_p: Tensor, one_minus_p: Tensor, power: Tensor, gamma: float | Tensor
) -> Tensor:
    """``f'(s) = u^gamma (gamma p s / u - 1)`` for ``f(s) = -u^gamma s``, ``u = 1 - e^s``.

    ``p s / u`` tends to -1 as ``u -> 0``, where ``u^gamma`` is 0 (``gamma > 0``) or the ratio is
    multiplied by ``gamma = 0``: any finite value there gives the right slope, and clamping ``u``
    away from 0 (and ``s`` away from ``-inf``, where ``p s -> 0``) keeps it finite.
    """
    finfo = torch.finfo(log_p.dtype)
    ratio = (log_p.exp() * log_p.clamp_min(finfo.min)).div_(one_minus_p.clamp_min(finfo.tiny))
    if isinstance(gamma, Tensor):
        return ratio.mul_(gamma).sub_(1.0).mul_(power)
    return torch.addcmul(power, power, ratio, value=gamma).sub_(power, alpha=2.0)


class _ScaledGrad(torch.autograd.Function):
    """Shared backward: scale the unit gradient computed in forward by the incoming gradient."""

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, *unused: Any) -> Any:
        (input,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: the definition, through autograd
            grad = _recompute_grad(ctx.recompute, input, grad_out)
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


def _recompute_grad(recompute: Recompute, input: Tensor, grad_out: Tensor) -> Tensor:
    """The eager definition's gradient; itself differentiable when grad mode is on."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        leaf = input if create_graph else input.detach().requires_grad_()
        loss = recompute(leaf)
        (grad,) = torch.autograd.grad(loss, leaf, grad_out, create_graph=create_graph)
    return grad


def _save(
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


def _no_autocast(tensor: Tensor) -> torch.autocast:
    return torch.autocast(tensor.device.type, enabled=False)


def _unit_grad(result: tuple[Any, ...]) -> Tensor:
    grad = result[1]
    if not isinstance(grad, Tensor):
        raise RuntimeError("the kernel computed no gradient")
    return grad


def _chunk_rows(row_elements: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(1, row_elements))


def row_chunks(rows: int, row_elements: int, chunk_elements: int) -> Iterator[slice]:
    """Slices of about ``chunk_elements`` elements along dim 0 (from shapes only: no sync)."""
    step = _chunk_rows(row_elements, chunk_elements)
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


class SoftmaxFocal(_ScaledGrad):
    """Softmax focal loss over class dim 1, every option; see the module docstring.

    ``row_coef`` (shape ``(N, 1, d...)``) holds each element's ``scale * kept``; ``grad_scale``
    is ``mean_scale`` (from :func:`mean_grad_scale`) for ``'mean'`` and 1 otherwise.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor, *args: Any) -> Tensor:
        *settings, recompute, needs_grad = args
        with _no_autocast(input):  # the math is float32 already; keep reductions there
            out, unit_grad, factor = _softmax_forward(input, *settings, needs_grad=needs_grad)
        rerun = partial(_softmax_forward, input, *settings, needs_grad=True)
        _save(
            ctx, input, unit_grad, recompute, lambda: _unit_grad(rerun()), 1 + len(args), 1, factor
        )
        return out


def _softmax_forward(
    input: Tensor,
    index: Tensor | None,
    q: Tensor | None,
    class_coef: Tensor | None,
    row_coef: Tensor | None,
    gamma: float | Tensor,
    label_smoothing: float,
    divisor: Tensor | float,
    mean_scale: Tensor,
    reduction: str,
    compute_dtype: torch.dtype,
    *,
    needs_grad: bool,
) -> tuple[Tensor, Tensor | None, Tensor | float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by (None: none)."""
    rows, row_elements = input.shape[0], input[:1].numel()
    unit_grad = (
        torch.empty_like(input, memory_format=torch.contiguous_format) if needs_grad else None
    )
    direct = unit_grad is not None and unit_grad.dtype == compute_dtype
    one_hot = index is not None and label_smoothing == 0
    chunk_elements = ONE_HOT_CHUNK if one_hot else DISTRIBUTION_CHUNK
    scratch = None
    if not direct:  # a float32 scratch for half-precision input, or no gradient to write into
        chunk_elements = min(chunk_elements, SCRATCH_CHUNK)
        scratch_shape = (min(rows, _chunk_rows(row_elements, chunk_elements)), *input.shape[1:])
        scratch = torch.empty(scratch_shape, dtype=compute_dtype, device=input.device)
    grad_scale = mean_scale if reduction == "mean" else 1.0
    losses, factors = [], []
    for chunk in row_chunks(rows, row_elements, chunk_elements):
        x = input[chunk]  # log_softmax reads it in its own dtype and writes compute_dtype
        work = unit_grad[chunk] if direct else scratch[: x.shape[0]]  # type: ignore[index]
        loss, factor = _softmax_chunk(
            x,
            work,
            None if index is None else index[chunk],
            None if q is None else q[chunk],
            class_coef,
            None if row_coef is None else row_coef[chunk],
            gamma[chunk] if isinstance(gamma, Tensor) else gamma,
            label_smoothing,
            _rows(grad_scale, chunk) if needs_grad else None,
        )
        losses.append(loss)
        factors.append(factor)
        if unit_grad is not None and not direct:
            unit_grad[chunk] = work
    if not losses:  # an empty batch
        losses.append(input.new_empty((0, 1, *input.shape[2:]), dtype=compute_dtype))
        factors.append(None)
    per_element = _join(losses).squeeze(1)
    if reduction == "none":
        out = per_element
    elif reduction == "sum":
        out = per_element.sum()
    else:
        out = per_element.sum() / nan_where_zero(torch.as_tensor(divisor))
    # Every chunk returns the same kind of factor: None, one number, or one per element.
    first = factors[0]
    factor = first if not isinstance(first, Tensor) or first.dim() == 0 else _join(factors)
    return out, unit_grad, factor


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


def _rows(value: Tensor | float, rows: slice) -> Tensor | float:
    """A per-element factor's rows (one number stays as it is)."""
    return value[rows] if isinstance(value, Tensor) and value.dim() > 0 else value


def _join(parts: list[Any]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _softmax_chunk(
    x: Tensor,
    work: Tensor,
    index: Tensor | None,
    q: Tensor | None,
    class_coef: Tensor | None,
    row_coef: Tensor | None,
    gamma: float | Tensor,
    label_smoothing: float,
    grad_scale: Tensor | float | None,
) -> tuple[Tensor, Tensor | float | None]:
    """A chunk's loss per element ``(n, 1, d...)``; its unit gradient is written into ``work``.

    ``work`` may be ``x`` itself (its logits are then overwritten). ``grad_scale=None`` skips the
    gradient. The second result is None when ``work`` holds the whole unit gradient, or a factor
    (a number, or one per element shaped like the loss) that ``work`` still has to be multiplied
    by: the caller folds it into a pass it makes anyway (backward's scaling by the incoming
    gradient, or the fused loss's matrix products), which saves one pass over the chunk here.
    """
    if index is not None and label_smoothing == 0:
        # One-hot target: only s_t = log p_t enters the loss, and the gradient is
        # (dl/ds_t) (onehot - p). ``work`` gets (dl/ds_t) (p - onehot), hence the factor -1.
        if row_coef is None:
            raise ValueError("class-index targets need their elements' coefficients")
        coef = row_coef if class_coef is None else row_coef * class_coef[index]
        log_p = torch.log_softmax(x, 1, dtype=work.dtype, out=work)
        # Elements of weight 0 (ignored ones) take s_t = 0, so that their terms are 0 even
        # where a masked logit (-inf) makes their s_t = -inf.
        log_pt = torch.where(coef != 0, log_p.gather(1, index), 0.0)
        minus_u = torch.expm1(log_pt)  # p_t - 1
        loss, slope = _target_terms(log_pt, minus_u, coef, gamma, grad_scale)
        if slope is None:
            return loss, None
        work.exp_().scatter_(1, index, minus_u).mul_(slope)
        return loss, -1.0
    # A distribution over classes: smoothed one-hot or probability targets.
    if isinstance(gamma, Tensor) or gamma < 1:
        loss = _softmax_distribution_chunk(
            x, work, index, q, class_coef, row_coef, gamma, label_smoothing, grad_scale
        )
        return loss, None
    # gamma >= 1. With t = gamma p s - (1 - p) and g = (1 - p)^(gamma - 1), both bounded, the
    # loss is sum_c Q g (p - 1) s and a = Q g t. For gamma = 2, g is taken as p - 1 and the
    # sign moves into the returned factor; the loss is (p - 1)^2 s there.
    log_p = F.log_softmax(x, 1, dtype=work.dtype)
    prob = log_p.exp()
    minus_u = prob - 1.0
    torch.addcmul(minus_u, prob, log_p, value=gamma, out=work)  # t; ``x`` is no longer read
    if gamma == 2:
        sign = -1.0
        work.mul_(minus_u)
        terms = minus_u.square_().mul_(log_p)
    elif gamma == 1:
        sign = 1.0
        terms = minus_u.mul_(log_p)
    else:
        sign = 1.0
        g = torch.neg(minus_u).pow_(gamma - 1.0)
        work.mul_(g)
        terms = minus_u.mul_(log_p).mul_(g)
    del log_p
    loss = _mul_target_weights_(terms, index, q, class_coef, label_smoothing).sum(1, keepdim=True)
    loss = loss.mul_(sign) if row_coef is None else loss.mul_(row_coef * sign)
    if grad_scale is None:
        return loss, None
    _mul_target_weights_(work, index, q, class_coef, label_smoothing)  # a / sign
    work.addcmul_(prob, work.sum(1, keepdim=True), value=-1.0)
    return loss, sign * grad_scale if row_coef is None else row_coef * (sign * grad_scale)


def _target_terms(
    log_pt: Tensor,
    minus_u: Tensor,
    coef: Tensor,
    gamma: float | Tensor,
    grad_scale: Tensor | float | None,
) -> tuple[Tensor, Tensor | None]:
    """Loss ``-coef (1 - p_t)^gamma s_t`` and slope ``coef grad_scale f'(s_t)``, per element.

    For ``gamma >= 1``, ``f'(s) = (1 - p)^(gamma - 1) (gamma p s - (1 - p))``, bounded, with no
    division; a tensor ``gamma`` or one below 1 takes :func:`_focal_slope`.
    """
    if isinstance(gamma, Tensor) or gamma < 1:
        one_minus_pt = minus_u.neg()
        power = one_minus_pt.pow(gamma)
        loss = torch.rsub(torch.mul(power, log_pt).mul_(coef), 0.0)  # +0, not -0, where 0
        if grad_scale is None:
            return loss, None
        return loss, _focal_slope(log_pt, one_minus_pt, power, gamma).mul_(coef * grad_scale)
    power = minus_u.square() if gamma == 2 else minus_u.neg().pow_(gamma)
    loss = torch.rsub(power.mul_(log_pt).mul_(coef), 0.0)  # +0, not -0, where coef is 0
    if grad_scale is None:
        return loss, None
    # p s -> 0 as s -> -inf; the clamp keeps it 0 there instead of 0 * inf.
    log_pt = log_pt.clamp_min(torch.finfo(log_pt.dtype).min)
    t = torch.addcmul(minus_u, minus_u + 1.0, log_pt, value=gamma)  # gamma p s - (1 - p)
    if gamma == 2:  # (1 - p)^(gamma - 1) = -minus_u
        return loss, t.mul_(minus_u).mul_(coef * -grad_scale)
    if gamma != 1:
        t.mul_(minus_u.neg().pow_(gamma - 1.0))
    return loss, t.mul_(coef * grad_scale)


def _softmax_distribution_chunk(
    x: Tensor,
    work: Tensor,
    index: Tensor | None,
    q: Tensor | None,
    class_coef: Tensor | None,
    row_coef: Tensor | None,
    gamma: float | Tensor,
    label_smoothing: float,
    grad_scale: Tensor | float | None,
) -> Tensor:
    """A target distribution at any ``gamma`` (a tensor, or below 1, where ``(1 - p)^(gamma-1)``
    is unbounded): the loss per element, and the complete unit gradient written into ``work``."""
    log_p = F.log_softmax(x, 1, dtype=work.dtype)
    prob = log_p.exp()
    one_minus_p = torch.rsub(prob, 1.0)
    focal_weights = _mul_target_weights_(
        one_minus_p.pow(gamma), index, q, class_coef, label_smoothing
    )  # Q (1 - p)^gamma
    if row_coef is not None:
        focal_weights.mul_(row_coef)
    loss = (focal_weights * log_p).sum(1, keepdim=True).neg_()
    if grad_scale is not None:
        # ratio = p log p / (1 - p), finite where p rounds to 1 (where its factor is 0).
        tiny = torch.finfo(one_minus_p.dtype).tiny
        ratio = (prob * log_p).div_(one_minus_p.clamp_min_(tiny))
        # a = Q f'(s) = Q (1 - p)^gamma (gamma ratio - 1), times grad_scale; gradient a - p sum a
        scale = torch.as_tensor(grad_scale, dtype=work.dtype, device=work.device)
        slope = torch.addcmul(-scale, ratio, gamma * scale).mul_(focal_weights)
        torch.addcmul(slope, prob, slope.sum(1, keepdim=True), value=-1.0, out=work)
    return loss


def _mul_target_weights_(
    values: Tensor,
    index: Tensor | None,
    q: Tensor | None,
    class_coef: Tensor | None,
    label_smoothing: float,
) -> Tensor:
    """``values *= Q``, in place, with ``Q = q alpha w`` per class (``q`` smoothed).

    For smoothed class indices that is one pass over the classes and a scatter of the targets'
    share: the one-hot distribution is never formed.
    """
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


class SigmoidFocal(_ScaledGrad):
    """Element-wise sigmoid focal loss; see the module docstring.

    ``target``, ``weight``, ``pos_weight``, ``alpha`` and ``gamma`` arrive expanded to the
    input's shape (views) or as numbers.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor, *args: Any) -> Tensor:
        *settings, recompute, needs_grad = args
        with _no_autocast(input):  # the math is float32 already; keep reductions there
            out, unit_grad, factor = _sigmoid_forward(input, *settings, needs_grad=needs_grad)
        rerun = partial(_sigmoid_forward, input, *settings, needs_grad=True)
        _save(
            ctx,
            input,
            unit_grad,
            recompute,
            lambda: _unit_grad(rerun()),
            1 + len(args),
            None,
            factor,
        )
        return out


def _sigmoid_forward(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    pos_weight: Tensor | None,
    alpha: float | Tensor | None,
    gamma: float | Tensor,
    reduction: str,
    compute_dtype: torch.dtype,
    *,
    needs_grad: bool,
) -> tuple[Tensor, Tensor | None, float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by (None: none)."""
    batched = input if input.dim() else input.unsqueeze(0)

    def rows_of(value: Any) -> Any:  # the expanded settings are views, sliced per chunk
        if not isinstance(value, Tensor):
            return lambda chunk: value
        expanded = value.expand(input.shape)
        expanded = expanded if input.dim() else expanded.unsqueeze(0)
        return lambda chunk: expanded[chunk]

    y, w, pw, a, g = (rows_of(v) for v in (target, weight, pos_weight, alpha, gamma))
    rows = batched.shape[0]
    unit_grad = (
        torch.empty_like(batched, memory_format=torch.contiguous_format) if needs_grad else None
    )
    direct = unit_grad is not None and unit_grad.dtype == compute_dtype
    losses = None
    if reduction == "none":
        losses = torch.empty(batched.shape, dtype=compute_dtype, device=input.device)
    total = torch.zeros((), dtype=compute_dtype, device=input.device)
    row_elements = batched[:1].numel()
    scratch = Scratch(
        (min(rows, _chunk_rows(row_elements, SIGMOID_CHUNK)), *batched.shape[1:]),
        compute_dtype,
        input.device,
    )
    for chunk in row_chunks(rows, row_elements, SIGMOID_CHUNK):
        loss, grad = _sigmoid_chunk(
            batched[chunk].to(compute_dtype),
            y(chunk),
            w(chunk),
            pw(chunk),
            a(chunk),
            g(chunk),
            with_grad=needs_grad,
            grad_into=unit_grad[chunk] if direct else None,  # type: ignore[index]
            loss_into=None if losses is None else losses[chunk],
            scratch=scratch,
        )
        if losses is None:
            total = total + loss.sum()
        if unit_grad is not None and not direct:
            unit_grad[chunk] = grad
    factor = None
    if losses is not None:
        out = losses.reshape(input.shape)
    elif reduction == "mean":
        out = total / input.numel()
        factor = 1.0 / max(input.numel(), 1)  # applied by backward's scaling, not a pass here
    else:
        out = total
    return out, None if unit_grad is None else unit_grad.reshape(input.shape), factor


def _sigmoid_chunk(
    x: Tensor,
    y: Tensor,
    weight: Tensor | None,
    pos_weight: Tensor | None,
    alpha: float | Tensor | None,
    gamma: float | Tensor,
    *,
    with_grad: bool,
    grad_into: Tensor | None = None,
    loss_into: Tensor | None = None,
    scratch: Scratch | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Loss and gradient of a chunk, in few element-wise passes (each one a parallel region).

    The gradient is written into ``grad_into`` and the loss into ``loss_into`` when they are
    given; every other buffer comes from ``scratch`` (fresh ones without it). Every quantity
    below is a sum or a product of terms of one sign, each taken from the logit, so the loss and
    its gradient keep their relative precision however confident the prediction: ``1 - p`` is
    never formed as a difference. With :math:`p = \sigma(x)`, :math:`q = \sigma(-x)` and
    :math:`\mathrm{sp} = \mathrm{softplus}`:

    .. math::
        m = 1 - p_t = y q + (1 - y) p, \qquad m' = p q (1 - 2 y) = p q - 2 p\, y q, \\
        b = p_w\, y\, \mathrm{sp}(-x) + (1 - y)\, \mathrm{sp}(x), \qquad
        b' = (1 - y) p - p_w\, y\, q = m - (1 + p_w)\, y q,

    and, with :math:`c = \alpha_t w` and :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`,

    .. math::
        \ell = c\, m^\gamma b, \qquad
        \frac{\partial \ell}{\partial x} = c\, m^{\gamma - 1} \left(\gamma m' b + m b'\right).

    That form is bounded for ``gamma >= 1``; below 1 (or for a tensor ``gamma``) the gradient is
    taken as :math:`c\, m^\gamma (\gamma (m' / m) b + b')`, where :math:`|m' / m| \le 1`.
    """

    def out(name: str) -> Tensor | None:  # None: a fresh tensor
        return None if scratch is None else scratch.take(name, x.shape[0])

    y = y.to(x.dtype)
    not_y = torch.sub(_as_tensor(1.0, x), y, out=out("not_y"))
    positive = y if pos_weight is None else torch.mul(y, pos_weight, out=out("positive"))
    # b: sp(x) = L + max(x, 0) and sp(-x) = L + max(-x, 0), with L = log1p(e^-|x|) taken once
    minus_x = torch.neg(x, out=out("minus_x"))
    bce = torch.minimum(x, minus_x, out=out("bce")).exp_().log1p_()
    if pos_weight is not None:
        bce.mul_(torch.add(positive, not_y, out=out("spare")))
    part = torch.clamp_min(x, 0.0, out=out("part"))
    bce.addcmul_(part, not_y)
    bce.addcmul_(torch.clamp_min(minus_x, 0.0, out=part), positive)
    p, q = torch.sigmoid(x, out=out("p")), minus_x.sigmoid_()
    y_q = torch.mul(y, q, out=part)
    m = torch.addcmul(y_q, not_y, p, out=out("m"))
    del minus_x, positive
    below_one = isinstance(gamma, Tensor) or gamma < 1
    focal = None  # m^gamma below 1, else m^(gamma - 1)
    if below_one:
        focal = torch.pow(m, gamma, out=out("focal"))
    elif gamma == 2:
        focal = m
    elif gamma != 1:
        focal = torch.pow(m, gamma - 1.0, out=out("focal"))
    coef = None  # alpha_t w times focal
    owned = False  # coef may be multiplied in place only while it is our own
    if alpha is not None:  # alpha_t = alpha y + (1 - alpha)(1 - y), two terms of one sign
        if isinstance(alpha, Tensor):
            coef = torch.sub(_as_tensor(1.0, x), alpha, out=out("coef"))
            coef.mul_(not_y).addcmul_(y, alpha)
        else:
            coef = torch.mul(not_y, 1.0 - alpha, out=out("coef")).add_(y, alpha=alpha)
        owned = True
    del not_y
    for factor in (weight, focal):
        if factor is None:
            continue
        if coef is None:
            coef, owned = factor, factor is focal and focal is not m
        elif owned:
            coef.mul_(factor)
        else:
            coef, owned = torch.mul(coef, factor, out=out("coef")), True
    grad = None
    if with_grad:
        if grad_into is not None:
            grad = grad_into
        else:
            grad = torch.empty_like(x) if scratch is None else scratch.take("grad", x.shape[0])
        slope = q.add_(y_q, alpha=-2.0).mul_(p)  # m' = p (q - 2 y q)
        if pos_weight is None:  # b' = m - 2 y q
            torch.add(m, y_q, alpha=-2.0, out=grad)
        else:
            shifted = torch.add(pos_weight, 1.0, out=out("spare"))
            torch.addcmul(m, y_q, shifted, value=-1.0, out=grad)
        if below_one:  # b' + gamma (m' / m) b; m' / m is finite where m underflows to 0
            slope.div_(m.clamp_min_(torch.finfo(x.dtype).tiny)).mul_(bce)
            if isinstance(gamma, Tensor):
                grad.addcmul_(slope, gamma)
            else:
                grad.add_(slope, alpha=gamma)
        else:  # m b' + gamma m' b
            grad.mul_(m).addcmul_(slope, bce, value=float(gamma))
        if coef is not None:
            grad.mul_(coef)
    # The loss last, c m^gamma b, in a buffer that is no longer read.
    if coef is None:  # gamma = 1, no alpha, no weight
        loss = torch.mul(bce, m, out=loss_into) if loss_into is not None else bce.mul_(m)
    elif below_one:
        loss = torch.mul(coef, bce, out=loss_into if loss_into is not None else out("loss"))
    else:
        loss = torch.mul(coef, m, out=loss_into if loss_into is not None else out("loss"))
        loss.mul_(bce)
    return loss, loss if grad is None else grad


class Scratch:
    """Chunk-sized buffers, each reused by every chunk of one call.

    A fresh buffer of a chunk's size costs more than several passes over one already in use
    (its pages are faulted in and zeroed), so the element-wise kernels write into these.
    """

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        self.buffers: dict[str, Tensor] = {}

    def take(self, name: str, rows: int) -> Tensor:
        """The buffer ``name``'s first ``rows`` rows; its contents are whatever was left."""
        buffer = self.buffers.get(name)
        if buffer is None:
            buffer = torch.empty(self.shape, dtype=self.dtype, device=self.device)
            self.buffers[name] = buffer
        return buffer[:rows]


def _as_tensor(value: float | Tensor, like: Tensor) -> Tensor:
    return (
        value
        if isinstance(value, Tensor)
        else torch.tensor(value, dtype=like.dtype, device=like.device)
    )


# Logits per chunk of the fused linear loss: about 64 MiB of float32, and at least 512 rows as
# long as that stays under 256 MiB. Every chunk adds its part of the classifier's gradient, a pass
# over a (C, D) matrix, so large vocabularies want fewer, taller chunks (for C = 128256, D = 2048,
# 512-row chunks took 0.74x the time of F.linear + F.cross_entropy where 256-row ones took 0.83x).
FUSED_CHUNK_BYTES = 1 << 26
FUSED_MAX_CHUNK_BYTES = 1 << 28
FUSED_MIN_ROWS = 512


def fused_chunk_rows(rows: int, num_classes: int, dtype: torch.dtype, *, one_hot: bool) -> int:
    """Rows per chunk of the fused loss, from the shapes alone.

    Label smoothing takes the all-class path, which holds several chunk-sized temporaries, so
    its chunks are a quarter of the size.
    """
    per_row = num_classes * max(torch.finfo(dtype).bits // 8, 4)
    chunk = max(FUSED_CHUNK_BYTES // per_row, min(FUSED_MIN_ROWS, FUSED_MAX_CHUNK_BYTES // per_row))
    if not one_hot:
        chunk //= 4
    return max(1, min(rows, chunk))


class FusedSettings(NamedTuple):
    """Everything but the three differentiable tensors, for the fused linear loss."""

    target_index: Tensor  # (N, 1) class indices, ignored ones replaced by 0
    class_coef: Tensor | None  # (C,) alpha * weight
    row_coef: Tensor  # (N, 1) scale * kept
    gamma: float
    label_smoothing: float
    divisor: Tensor  # the 'mean' divisor
    mean_scale: Tensor  # the gradient's factor for 'mean' (one, or (N, 1)), from mean_grad_scale()
    reduction: str
    chunk: int  # rows per chunk
    needs_grad: bool = True  # whether the caller records a graph (False under torch.no_grad())


class LinearSoftmaxFocal(torch.autograd.Function):
    r"""``softmax_focal_loss(F.linear(input, classifier, bias), target)`` without the logits.

    Rows are taken ``chunk`` at a time: each chunk's logits are formed, turned into the loss and
    the unit gradient in place, and multiplied back into the gradients of ``input``,
    ``classifier`` and ``bias`` before the next chunk. For ``'mean'`` and ``'sum'`` that happens
    in forward and backward scales the results; for ``'none'`` backward runs the chunks again
    with each row's incoming gradient. Double backward recomputes the unfused definition.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        classifier: Tensor,
        bias: Tensor | None,
        settings: FusedSettings,
        recompute: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    ) -> Tensor:
        reduction, divisor = settings.reduction, settings.divisor
        # Under torch.no_grad() nothing will ask for gradients: no (C, D) buffer, no products.
        wants = (
            settings.needs_grad and input.requires_grad,
            settings.needs_grad and classifier.requires_grad,
            settings.needs_grad and bias is not None and bias.requires_grad,
        )
        ctx.settings, ctx.wants, ctx.recompute = settings, wants, recompute
        ctx.save_for_backward(input, classifier, bias)
        ctx.grads = None
        if reduction != "none" and any(wants):
            loss_rows, ctx.grads = _fused_pass(input, classifier, bias, settings, None, wants)
        else:
            loss_rows, _ = _fused_pass(input, classifier, bias, settings, None, (False,) * 3)
        if reduction == "none":
            return loss_rows
        total = loss_rows.sum()
        return total / nan_where_zero(divisor) if reduction == "mean" else total

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Any:
        input, classifier, bias = ctx.saved_tensors
        nones = (None, None)
        grads: tuple[Tensor | None, ...]
        if torch.is_grad_enabled():  # double backward: the unfused definition, through autograd
            tensors = (input, classifier, bias)
            wanted = [t for t, want in zip(tensors, ctx.wants, strict=True) if want]
            with torch.enable_grad():
                loss = ctx.recompute(input, classifier, bias)
                found = iter(torch.autograd.grad(loss, wanted, grad_out, create_graph=True))
            grads = tuple(next(found) if want else None for want in ctx.wants)
            return (*grads, *nones)
        settings: FusedSettings = ctx.settings
        if settings.reduction == "none":
            _, grads = _fused_pass(input, classifier, bias, settings, grad_out, ctx.wants)
        else:
            stored = ctx.grads
            if stored is None:  # a second backward through a retained graph
                _, stored = _fused_pass(input, classifier, bias, settings, None, ctx.wants)
            ctx.grads = None
            grads = tuple(None if g is None else g.mul_(grad_out) for g in stored)
        grad_input, grad_classifier, grad_bias = grads
        return (
            None if grad_input is None else grad_input.to(input.dtype),
            None if grad_classifier is None else grad_classifier.to(classifier.dtype),
            None if grad_bias is None else grad_bias.to(classifier.dtype),
            *nones,
        )


def _fused_pass(
    input: Tensor,
    classifier: Tensor,
    bias: Tensor | None,
    settings: FusedSettings,
    grad_out: Tensor | None,
    wants: tuple[bool, bool, bool],
) -> tuple[Tensor, tuple[Tensor | None, Tensor | None, Tensor | None]]:
    """Loss per row, and the three gradients (``grad_out`` per row for ``'none'``)."""
    index, class_coef, row_coef, gamma, label_smoothing, _, mean_scale, reduction, chunk, _ = (
        settings
    )
    rows = input.shape[0]
    compute = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    want_input, want_classifier, want_bias = wants
    grad_input = torch.empty_like(input) if want_input else None
    grad_classifier = (
        torch.zeros(classifier.shape, dtype=compute, device=classifier.device)
        if want_classifier
        else None
    )
    grad_bias = None
    if want_bias and bias is not None:
        grad_bias = torch.zeros(bias.shape, dtype=compute, device=bias.device)
    with_grad = any(wants)
    grad_scale = mean_scale if reduction == "mean" else 1.0
    loss_rows = torch.empty(rows, dtype=compute, device=input.device)
    # One logits buffer for every chunk: fresh chunk-sized allocations would each be new pages
    # for the system to fault in and zero. (Autocast, or a classifier in another dtype than
    # the math, takes F.linear and a conversion instead.)
    buffer = None
    if classifier.dtype == compute and not torch.is_autocast_enabled(input.device.type):
        buffer = input.new_empty((min(chunk, rows), classifier.shape[0]), dtype=compute)
    for start in range(0, rows, chunk):
        part = slice(start, min(start + chunk, rows))
        hidden = input[part]
        if buffer is None:
            logits = F.linear(hidden, classifier, bias).to(compute)
        elif bias is None:
            logits = torch.mm(hidden, classifier.t(), out=buffer[: hidden.shape[0]])
        else:
            logits = torch.addmm(bias, hidden, classifier.t(), out=buffer[: hidden.shape[0]])
        coef = row_coef[part]
        if grad_out is not None:  # 'none': each row's incoming gradient scales its row
            coef = coef * grad_out[part].reshape(-1, 1).to(compute)
        with _no_autocast(logits):
            loss, pending = _softmax_chunk(
                logits,
                logits,
                index[part],
                None,
                class_coef,
                coef,
                gamma,
                label_smoothing,
                _rows(grad_scale, part) if with_grad else None,
            )
        loss_rows[part] = loss.reshape(-1)
        if not with_grad:
            continue
        if isinstance(pending, Tensor):
            logits.mul_(pending)
            pending = None
        scale = 1.0 if pending is None else pending  # d loss / d logits = scale * logits
        unit = logits.to(classifier.dtype)
        if grad_input is not None:
            rows_grad = grad_input[part]
            if rows_grad.dtype == unit.dtype:
                torch.mm(unit, classifier, out=rows_grad)
            else:
                rows_grad.copy_(unit @ classifier)
            if scale != 1.0:
                rows_grad.mul_(scale)
        if grad_classifier is not None:
            grad_classifier.addmm_(unit.t().to(compute), hidden.to(compute), alpha=scale)
        if grad_bias is not None:
            grad_bias.add_(logits.sum(0), alpha=scale)
    return loss_rows, (grad_input, grad_classifier, grad_bias)


class SigmoidFocalElementwise(torch.autograd.Function):
    """The sigmoid focal loss per element, for ``torch.compile``: saves only its inputs.

    Forward and backward are each a chain of element-wise operations that the compiler fuses
    into one kernel; backward recomputes what it needs from the input (no buffer is kept).
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        target: Tensor,
        weight: Tensor | None,
        pos_weight: Tensor | None,
        alpha: float | Tensor | None,
        gamma: float | Tensor,
    ) -> Tensor:
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.alpha, ctx.gamma = alpha, gamma
        loss, _ = _sigmoid_chunk(input, target, weight, pos_weight, alpha, gamma, with_grad=False)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> Any:
        input, target, weight, pos_weight = ctx.saved_tensors
        _, grad = _sigmoid_chunk(
            input, target, weight, pos_weight, ctx.alpha, ctx.gamma, with_grad=True
        )
        return grad_out * grad, None, None, None, None, None
