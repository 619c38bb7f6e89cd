r"""Softmax focal loss over logits whose classes are split across a process group.

Each process holds a contiguous slice of the class dimension (slices in rank order, sizes free).
With :math:`M` the largest logit over every class, the global statistics of an element are

.. math::
    Z = \sum_c e^{x_c - M} = R + K, \qquad
    \log p_c = x_c - M - \log Z,

where :math:`K` counts the classes whose logit is :math:`M` and :math:`R` sums the others.
Each process computes them over its slice relative to its own largest logit :math:`m_r`
(:math:`R_r`, :math:`K_r`, one pass over the logits, no communication); an all-reduce (MAX)
gives :math:`M` (the shard sizes ride along), each process rescales by :math:`e^{m_r - M}`, and
an all-reduce (SUM) gives :math:`R` and :math:`K`, with the target's logit and whether it is
the unique largest one (for class-index targets). :math:`\log(1 - p_c)` is then
:math:`\log R - \log Z` for the unique largest logit (exact however confident) and
``log1p(-p_c)`` for the others (:math:`p_c \le 1/2`), as ``_focal.log_softmax_and_complement``
computes it in one process.

With the focal term :math:`f(s) = -(1 - p)^\gamma s` of :math:`s = \log p` and the weighted
target distribution :math:`Q_c` (``_focal``), the loss and its gradient are

.. math::
    \ell = \sum_c Q_c f(s_c), \qquad
    \frac{\partial \ell}{\partial x_j} = a_j - p_j \sum_c a_c, \quad a_c = Q_c f'(s_c).

For class indices without smoothing :math:`Q` is one-hot: :math:`\ell` is known from the two
all-reduces, and the gradient is :math:`f'(s_t)(\delta_{jt} - p_j)`, one number per element
times the softmax, so backward needs no communication. Smoothing and probability targets have
terms on every class: each process sums its own, and a third all-reduce (SUM) gives
:math:`\ell` and :math:`\sum_c a_c`; backward needs no communication either.

The fused form computes the logits of a chunk of rows at a time from the replicated hidden
states and this process's rows of the classifier: a pass for the statistics, then (for the
gradients) a pass that multiplies each chunk's gradient back into those of the input, the
classifier and the bias. The input's gradient is the sum of every process's part, all-reduced
in backward.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from focalkit._core import validation
from focalkit._core.validation import Reduction
from focalkit.torch import _arguments, _inputs
from focalkit.torch._arguments import Alpha, Divisor
from focalkit.torch._focal import focal_slope, focal_term
from focalkit.torch._inputs import ArrayLike
from focalkit.torch._kernels._common import chunk_of, mean_grad_scale, no_autocast, row_chunks
from focalkit.torch._kernels.fused import fused_chunk_rows
from focalkit.torch._reduction import divide, reduce

__all__ = ["vocab_parallel_linear_softmax_focal_loss", "vocab_parallel_softmax_focal_loss"]

# Elements of the logits per chunk in the passes of the unfused loss (each holds a few
# temporaries of a chunk's size).
CHUNK_ELEMENTS = 1 << 22


class _Group:
    """The processes the classes are split over: this one's position, and the all-reduces.

    Without an initialised process group (or ``torch.distributed`` itself) it is this process
    alone, and nothing is communicated.
    """

    def __init__(self, group: Any, where: str, position: int | None = None) -> None:
        self.group = group
        if dist.is_available() and dist.is_initialized():
            self.size = dist.get_world_size(group)
            rank = dist.get_rank(group)
            if rank < 0:
                raise ValueError(f"{where}: this process is not a member of group")
            self.position = rank if position is None else position
        elif group is not None:
            raise ValueError(
                f"{where}: group was given, but torch.distributed has no process group initialised"
            )
        else:
            self.size, self.position = 1, 0

    def all_reduce(self, tensor: Tensor, maximum: bool = False) -> Tensor:
        if self.size > 1:
            op = dist.ReduceOp.MAX if maximum else dist.ReduceOp.SUM
            dist.all_reduce(tensor, op=op, group=self.group)
        return tensor


class _Setup(NamedTuple):
    """One call's settings; per-element tensors are shaped ``(N, 1, d...)``."""

    group: _Group
    target_index: Tensor | None  # global class indices, ignored ones 0; None: probabilities
    kept: Tensor | None  # whether the target is not ignore_index; None: probabilities
    q: Tensor | None  # this process's slice of the class probabilities
    class_coef: Tensor | None  # (C,) alpha * weight, every class
    row_coef: Tensor | None  # scale * kept; None: all ones
    gamma: float
    label_smoothing: float
    reduction: str
    divisor: Tensor  # the 'mean' divisor
    mean_scale: Tensor  # the 'mean' gradient's factor (one, or one per element)
    num_classes: int | None  # from weight or alpha; checked against the slices' total
    ignore_index: int
    compute_dtype: torch.dtype
    where: str


class _Stats(NamedTuple):
    """Global statistics of each element's logits, shaped ``(N, 1, d...)``."""

    top: Tensor  # M, the largest logit
    log_norm: Tensor  # log Z
    log_rest: Tensor  # log R, R the sum of e^(x - M) over the classes below M
    single_top: Tensor  # whether one class alone holds M (K = 1)
    offset: Tensor  # this process's first class (0-dim int64)
    num_classes: Tensor  # C over the group (0-dim int64)


class _Local(NamedTuple):
    """This process's statistics before any communication, per element."""

    top: Tensor  # m_r, the largest logit of this slice (-inf for an empty slice)
    arg: Tensor  # its position in the slice
    rest: Tensor  # the sum of e^(x - m_r) over the slice's logits below m_r
    tops: Tensor  # how many of the slice's logits equal m_r


# --- the passes over a chunk of logits (class dim 1) ---------------------------------------


def _local_chunk(x: Tensor, *, in_place: bool) -> _Local:
    """A chunk's :class:`_Local` statistics; ``in_place`` overwrites ``x``."""
    if x.shape[1] == 0:
        shape = (x.shape[0], 1, *x.shape[2:])
        zeros = x.new_zeros(shape)
        return _Local(torch.full_like(zeros, -math.inf), zeros.long(), zeros, zeros)
    top, arg = x.max(1, keepdim=True)
    is_top = x == top
    # A slice of -inf logits only: exp(-inf - 0) = 0 for all, and no NaN from -inf - -inf.
    shift = torch.where(top == -math.inf, 0.0, top)
    e = x.sub_(shift) if in_place else x - shift
    rest = e.exp_().masked_fill_(is_top, 0.0).sum(1, keepdim=True)
    return _Local(top, arg, rest, is_top.sum(1, keepdim=True).to(rest.dtype))


def _class_weights(
    x: Tensor, setup: _Setup, stats: _Stats, index: Tensor | None, q: Tensor | None
) -> Tensor:
    """``Q`` over this slice's classes (of a chunk): the target distribution times
    ``alpha * weight``, smoothed; the elements' ``row_coef`` is not in it."""
    num_local = x.shape[1]
    class_view = (1, -1) + (1,) * (x.dim() - 2)
    coef = None
    if setup.class_coef is not None:
        coef = setup.class_coef[stats.offset + torch.arange(num_local, device=x.device)]
    smoothing = setup.label_smoothing
    share = smoothing / stats.num_classes.to(x.dtype)
    if q is not None:
        weights = q.to(x.dtype)
        if smoothing > 0:
            weights = weights * (1.0 - smoothing) + share
        return weights if coef is None else weights * coef.reshape(class_view)
    if index is None:
        raise ValueError("a class-index or a class-probability target is required")
    weights = x.new_zeros(()) + share if coef is None else coef.reshape(class_view) * share
    weights = weights.expand_as(x).clone()
    if num_local == 0:
        return weights
    local = index - stats.offset
    owned = (local >= 0) & (local < num_local)
    local = torch.where(owned, local, 0)
    on_target = torch.full_like(local, 1.0 - smoothing, dtype=x.dtype)
    if setup.class_coef is not None:
        on_target = on_target * setup.class_coef[index]
    return weights.scatter_add_(1, local, torch.where(owned, on_target, 0.0))


def _class_terms(
    x: Tensor,
    setup: _Setup,
    stats: _Stats,
    chunk: slice,
    grad_coef: Tensor | float | None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """A chunk's loss summed over this slice's classes, ``a = Q f'(s) grad_coef`` (None where
    ``grad_coef`` is None) and ``p``."""
    top, log_norm = stats.top[chunk], stats.log_norm[chunk]
    log_p = (x - top).sub_(log_norm)
    unique_top = (x == top) & stats.single_top[chunk]
    log_1mp = torch.where(unique_top, stats.log_rest[chunk] - log_norm, torch.log1p(-log_p.exp()))
    weights = _class_weights(
        x,
        setup,
        stats,
        None if setup.target_index is None else setup.target_index[chunk],
        None if setup.q is None else setup.q[chunk],
    )
    row_coef = None if setup.row_coef is None else setup.row_coef[chunk]
    if row_coef is not None:
        weights = weights * row_coef
    loss = (weights * focal_term(log_p, log_1mp, setup.gamma)).sum(1, keepdim=True)
    prob = log_p.exp()
    if grad_coef is None:
        return loss, None, prob
    slope = focal_slope(log_p, setup.gamma, prob=prob, one_minus_p=log_1mp.exp())
    return loss, slope.mul_(weights).mul_(grad_coef), prob


# --- statistics and the terms of class-index targets ---------------------------------------


def _join(parts: list[_Local]) -> _Local:
    if len(parts) == 1:
        return parts[0]
    return _Local(*(torch.cat(values) for values in zip(*parts, strict=True)))


def _statistics(
    local: _Local, setup: _Setup, num_local: int, target_logit: Any
) -> tuple[_Stats, Tensor | None, Tensor | None, Tensor | None]:
    """The two all-reduces: :class:`_Stats`, and for class indices without smoothing the
    target's ``log p`` and ``log(1 - p)`` and where this slice holds it.

    ``target_logit(local_index)`` gives the logits at ``local_index`` (read where this slice
    holds the target).
    """
    group = setup.group
    sizes = local.rest.new_zeros(group.size)
    sizes[group.position] = num_local
    flat = group.all_reduce(torch.cat([local.top.reshape(-1), sizes]), maximum=True)
    count = local.top.numel()
    top = flat[:count].reshape(local.top.shape)
    sizes = flat[count:].round().long()
    offset, num_classes = sizes[: group.position].sum(), sizes.sum()
    below = local.top < top
    rest = torch.where(below, (local.rest + local.tops) * (local.top - top).exp(), local.rest)
    tops = torch.where(below, 0.0, local.tops)
    one_hot = setup.target_index is not None and setup.label_smoothing == 0
    parts = [rest.reshape(-1), tops.reshape(-1)]
    owned = local_index = None
    if one_hot and setup.target_index is not None and setup.kept is not None:
        local_index = setup.target_index - offset
        owned = setup.kept & (local_index >= 0) & (local_index < num_local)
        local_index = torch.where(owned, local_index, 0)
        # The target is this slice's largest logit and the largest over all: its logit is M.
        target_top = owned & (local_index == local.arg) & ~below
        logit = torch.where(target_top, top, torch.where(owned, target_logit(local_index), 0.0))
        parts += [logit.reshape(-1), target_top.to(rest.dtype).reshape(-1)]
    sums = group.all_reduce(torch.cat(parts)).reshape(len(parts), *local.top.shape)
    rest, tops = sums[0], sums[1]
    single = tops == 1
    log_norm = torch.where(single, torch.log1p(rest), (rest + tops).log())
    stats = _Stats(top, log_norm, rest.log(), single, offset, num_classes)
    _check_num_classes(setup, num_classes)
    if not one_hot:
        return stats, None, None, None
    log_pt = (sums[2] - top).sub_(log_norm)
    log_1mpt = torch.where(
        (sums[3] > 0) & single, stats.log_rest - log_norm, torch.log1p(-log_pt.exp())
    )
    return stats, torch.stack([log_pt, log_1mpt]), local_index, owned


def _target_terms(
    log_pt: Tensor, log_1mpt: Tensor, setup: _Setup, grad_coef: Tensor | float
) -> tuple[Tensor, Tensor]:
    """Class indices without smoothing: each element's loss and ``coef f'(s_t) grad_coef``."""
    if setup.class_coef is None or setup.target_index is None:
        coef = setup.row_coef
    else:
        coef = setup.class_coef[setup.target_index]
        coef = coef if setup.row_coef is None else coef * setup.row_coef
    if coef is None:
        raise ValueError("class-index targets need their elements' coefficients")
    # Elements of weight 0 (ignored ones) take s_t = 0: no NaN from a logit they do not use.
    used = coef != 0
    log_pt = torch.where(used, log_pt, 0.0)
    log_1mpt = torch.where(used, log_1mpt, -math.inf)
    loss = torch.where(used, coef * focal_term(log_pt, log_1mpt, setup.gamma), 0.0)
    slope = focal_slope(log_pt, setup.gamma, one_minus_p=log_1mpt.exp()).mul_(coef * grad_coef)
    return loss, slope


def _check_num_classes(setup: _Setup, num_classes: Tensor) -> None:
    """Data checks once the slices' total is known: ``weight``/``alpha`` and the targets."""
    if not _inputs._data_checks_active(num_classes):
        return
    if setup.num_classes is not None:
        _require_classes(num_classes, setup.num_classes, setup.where)
        return  # class indices were checked against it already
    index, kept = setup.target_index, setup.kept
    if index is None or kept is None:
        return
    ok = ~kept | ((index >= 0) & (index < num_classes))
    if ok.device.type == "cuda":
        torch._assert_async(
            ok.all(),
            f"{setup.where}: target class indices must be in [0, C), C the number of classes "
            f"over the group, or equal ignore_index={setup.ignore_index}",
        )
    elif not bool(ok.all()):
        raise ValueError(
            validation.target_index_out_of_range(setup.where, int(num_classes), setup.ignore_index)
        )


def _require_classes(num_classes: Tensor, expected: int, where: str) -> None:
    message = (
        f"{where}: weight and alpha must have one value per class over the group "
        f"({expected}); the slices of the class dimension add up to another number"
    )
    ok = torch.eq(num_classes, expected)
    if ok.device.type == "cuda":
        torch._assert_async(ok, message)
    elif not bool(ok):
        raise ValueError(message)


def _unit_grad_(
    x: Tensor,
    stats: _Stats,
    chunk: slice,
    slope: Tensor,
    local_index: Tensor,
    owned: Tensor,
    *,
    in_place: bool,
) -> Tensor:
    """``slope (onehot - p)`` over a chunk of this slice, for class indices without
    smoothing; ``in_place`` writes it into ``x``."""
    slope = slope[chunk]
    work = x if in_place else x.clone()
    work.sub_(stats.top[chunk]).sub_(stats.log_norm[chunk]).exp_().mul_(-slope)
    if work.shape[1] == 0:
        return work
    return work.scatter_add_(1, local_index[chunk], torch.where(owned[chunk], slope, 0.0))


def _kept_loss(loss: Tensor, setup: _Setup) -> Tensor:
    """0 for ignored elements, whatever their logits (NaN in padding stays out of the loss)."""
    return loss if setup.kept is None else torch.where(setup.kept, loss, 0.0)


def _distribution_grad(
    x: Tensor, setup: _Setup, stats: _Stats, chunk: slice, total: Tensor, grad_coef: Any
) -> Tensor:
    """``a - p sum(a)`` over a chunk of this slice, for a target distribution (``total`` is
    the sum over every class, with the same ``grad_coef``)."""
    _, a, prob = _class_terms(x, setup, stats, chunk, grad_coef)
    if a is None:
        raise RuntimeError("no gradient was computed")
    return a.sub_(prob.mul_(total[chunk]))


# --- the unfused loss ------------------------------------------------------------------------


def _chunks(x: Tensor) -> Iterator[slice]:
    return row_chunks(x.shape[0], x[:1].numel(), CHUNK_ELEMENTS)


class _VocabParallelSoftmaxFocal(torch.autograd.Function):
    """The unfused loss over this process's slice of the classes; see the module docstring."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, setup: _Setup) -> Tensor:
        dtype = setup.compute_dtype
        with no_autocast(input):
            parts = [_local_chunk(input[c].to(dtype), in_place=False) for c in _chunks(input)]
            local = _join(parts) if parts else _local_chunk(input.to(dtype), in_place=False)

            def target_logit(local_index: Tensor) -> Tensor:
                if input.shape[1] == 0:
                    return local_index.to(dtype) * 0.0
                return input.gather(1, local_index).to(dtype)

            stats, target, local_index, owned = _statistics(
                local, setup, input.shape[1], target_logit
            )
            grad_scale = setup.mean_scale if setup.reduction == "mean" else 1.0
            if target is not None:
                loss, slope = _target_terms(target[0], target[1], setup, grad_scale)
                ctx.slope, ctx.total = slope, None
            else:
                pieces = []
                for c in _chunks(input):
                    part, a, _ = _class_terms(
                        input[c].to(dtype), setup, stats, c, chunk_of(grad_scale, c)
                    )
                    if a is None:
                        raise RuntimeError("no gradient was computed")
                    pieces.append(torch.cat([part, a.sum(1, keepdim=True)], 1))
                empty = local.rest.new_zeros((0, 2, *input.shape[2:]))
                both = torch.cat(pieces) if pieces else empty
                both = setup.group.all_reduce(both.contiguous())
                loss, ctx.total, ctx.slope = _kept_loss(both[:, :1], setup), both[:, 1:], None
        ctx.setup, ctx.stats, ctx.local_index, ctx.owned = setup, stats, local_index, owned
        ctx.grad_scale = grad_scale
        ctx.save_for_backward(input)
        return reduce(loss.squeeze(1), setup.reduction, setup.divisor)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> Any:
        (input,) = ctx.saved_tensors
        setup: _Setup = ctx.setup
        if grad_out.dim() > 0:  # 'none': one incoming gradient per element
            grad_out = grad_out.unsqueeze(1)
        grad = torch.empty_like(input, dtype=setup.compute_dtype)
        with no_autocast(input):
            for c in _chunks(input):
                x = input[c].to(setup.compute_dtype)
                if ctx.slope is not None:
                    part = _unit_grad_(
                        x, ctx.stats, c, ctx.slope, ctx.local_index, ctx.owned, in_place=False
                    )
                else:
                    part = _distribution_grad(
                        x, setup, ctx.stats, c, ctx.total, chunk_of(ctx.grad_scale, c)
                    )
                grad[c] = part.mul_(grad_out[c] if grad_out.dim() > 0 else grad_out)
        return grad.to(input.dtype), None


# --- the fused loss --------------------------------------------------------------------------


class _Logits:
    """A chunk of rows' logits on this slice, in one buffer reused for every chunk."""

    def __init__(
        self, input: Tensor, classifier: Tensor, bias: Tensor | None, rows: int, dtype: Any
    ) -> None:
        self.input, self.classifier, self.bias, self.dtype = input, classifier, bias, dtype
        self.buffer = None
        if classifier.dtype == dtype and not torch.is_autocast_enabled(input.device.type):
            shape = (min(rows, input.shape[0]), classifier.shape[0])
            self.buffer = input.new_empty(shape, dtype=dtype)

    def __call__(self, part: slice) -> Tensor:
        hidden = self.input[part]
        if self.buffer is None:  # autocast, or half precision: F.linear, then the math dtype
            return F.linear(hidden, self.classifier, self.bias).to(self.dtype)
        out = self.buffer[: hidden.shape[0]]
        if self.bias is None:
            return torch.mm(hidden, self.classifier.t(), out=out)
        return torch.addmm(self.bias, hidden, self.classifier.t(), out=out)


def _row_slices(rows: int, chunk: int) -> list[slice]:
    return [slice(start, min(start + chunk, rows)) for start in range(0, rows, chunk)]


class _FusedState(NamedTuple):
    """What the gradient pass reads, kept from forward."""

    setup: _Setup
    stats: _Stats
    slope: Tensor | None  # class indices without smoothing: coef f'(s_t) grad_scale per row
    total: Tensor | None  # a target distribution: sum_c a_c per row
    local_index: Tensor | None
    owned: Tensor | None
    grad_scale: Tensor | float
    chunk: int


def _fused_grads(
    input: Tensor,
    classifier: Tensor,
    bias: Tensor | None,
    state: _FusedState,
    wants: tuple[bool, bool, bool],
    grad_out: Tensor | None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """This process's parts of the three gradients (``grad_out`` per row for ``'none'``)."""
    setup, stats, chunk = state.setup, state.stats, state.chunk
    compute = setup.compute_dtype
    grad_input = torch.empty_like(input) if wants[0] else None
    grad_classifier = None
    if wants[1]:
        grad_classifier = torch.zeros(classifier.shape, dtype=compute, device=classifier.device)
    grad_bias = None
    if wants[2] and bias is not None:
        grad_bias = torch.zeros(bias.shape, dtype=compute, device=bias.device)
    slope, total, grad_coef = state.slope, state.total, state.grad_scale
    if grad_out is not None:
        rows_out = grad_out.reshape(-1, 1).to(compute)
        slope = None if slope is None else slope * rows_out
        total = None if total is None else total * rows_out
        grad_coef = rows_out if isinstance(grad_coef, float) else grad_coef * rows_out
    logits = _Logits(input, classifier, bias, chunk, compute)
    for part in _row_slices(input.shape[0], chunk):
        x = logits(part)
        with no_autocast(x):
            if slope is not None and state.local_index is not None and state.owned is not None:
                grad = _unit_grad_(
                    x, stats, part, slope, state.local_index, state.owned, in_place=True
                )
            elif total is not None:
                grad = _distribution_grad(x, setup, stats, part, total, chunk_of(grad_coef, part))
            else:
                raise RuntimeError("no gradient was computed")
        unit = grad.to(classifier.dtype)
        if grad_input is not None:
            if grad_input.dtype == unit.dtype:
                torch.mm(unit, classifier, out=grad_input[part])
            else:
                grad_input[part] = unit @ classifier
        if grad_classifier is not None:
            grad_classifier.addmm_(unit.t().to(compute), input[part].to(compute))
        if grad_bias is not None:
            grad_bias.add_(grad.sum(0))
    return grad_input, grad_classifier, grad_bias


class _VocabParallelLinearSoftmaxFocal(torch.autograd.Function):
    """The fused loss over this process's rows of the classifier; see the module docstring."""

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        classifier: Tensor,
        bias: Tensor | None,
        setup: _Setup,
        chunk: int,
        grad_mode: bool,
    ) -> Tensor:
        # (grad_mode: whether the caller records a graph; forward itself runs without one)
        wants = (
            grad_mode and input.requires_grad,
            grad_mode and classifier.requires_grad,
            grad_mode and bias is not None and bias.requires_grad,
        )
        compute, rows, num_local = setup.compute_dtype, input.shape[0], classifier.shape[0]
        logits = _Logits(input, classifier, bias, chunk, compute)
        parts = []
        for part in _row_slices(rows, chunk):
            x = logits(part)
            with no_autocast(x):
                parts.append(_local_chunk(x, in_place=True))
        empty = input.new_zeros((0, num_local), dtype=compute)
        local = _join(parts) if parts else _local_chunk(empty, in_place=True)

        def target_logit(local_index: Tensor) -> Tensor:
            if num_local == 0:
                return local_index.to(compute) * 0.0
            index = local_index.squeeze(1)
            rows_of_classifier = classifier[index].to(compute)
            value = (input.to(compute) * rows_of_classifier).sum(1, keepdim=True)
            return value if bias is None else value + bias[index].to(compute).unsqueeze(1)

        with no_autocast(input):
            stats, target, local_index, owned = _statistics(local, setup, num_local, target_logit)
            grad_scale = setup.mean_scale if setup.reduction == "mean" else 1.0
            slope = total = None
            if target is not None:
                loss, slope = _target_terms(target[0], target[1], setup, grad_scale)
            else:
                pieces = []
                for part in _row_slices(rows, chunk):
                    x = logits(part)
                    piece, a, _ = _class_terms(x, setup, stats, part, chunk_of(grad_scale, part))
                    if a is None:
                        raise RuntimeError("no gradient was computed")
                    pieces.append(torch.cat([piece, a.sum(1, keepdim=True)], 1))
                both = torch.cat(pieces) if pieces else local.rest.new_zeros((0, 2))
                both = setup.group.all_reduce(both.contiguous())
                loss, total = _kept_loss(both[:, :1], setup), both[:, 1:]
        state = _FusedState(setup, stats, slope, total, local_index, owned, grad_scale, chunk)
        ctx.state, ctx.wants, ctx.grads = state, wants, None
        ctx.save_for_backward(input, classifier, bias)
        if setup.reduction != "none" and any(wants):
            ctx.grads = _fused_grads(input, classifier, bias, state, wants, None)
        return reduce(loss.squeeze(1), setup.reduction, setup.divisor)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> Any:
        input, classifier, bias = ctx.saved_tensors
        state: _FusedState = ctx.state
        grads: list[Tensor | None]
        if state.setup.reduction == "none":
            grads = list(_fused_grads(input, classifier, bias, state, ctx.wants, grad_out))
        else:
            stored = ctx.grads
            if stored is None:  # a second backward through a retained graph
                stored = _fused_grads(input, classifier, bias, state, ctx.wants, None)
            ctx.grads = None
            grads = [None if g is None else g.mul_(grad_out) for g in stored]
        grad_input, grad_classifier, grad_bias = grads
        if grad_input is not None:  # every process's classes contribute to it
            grad_input = state.setup.group.all_reduce(grad_input)
        return (
            None if grad_input is None else grad_input.to(input.dtype),
            None if grad_classifier is None else grad_classifier.to(classifier.dtype),
            None if grad_bias is None else grad_bias.to(classifier.dtype),
            None,
            None,
            None,
        )


# --- arguments -------------------------------------------------------------------------------


def _per_class(value: ArrayLike | None, name: str, like: Tensor, where: str) -> Tensor | None:
    if value is None:
        return None
    tensor = _inputs.as_tensor(value, name, like, where)
    validation.check_per_class_length(name, tensor.shape, None, where)
    return tensor


def _setup(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    gamma: float,
    alpha: Alpha,
    group: _Group,
    where: str,
) -> _Setup:
    """The settings of a call on a checked ``(N, C_local, d...)`` input."""
    compute_dtype = _inputs.dtypes(input)[0]
    like = input.new_empty((), dtype=compute_dtype)
    w = _per_class(weight, "weight", like, where)
    alpha_value = _inputs.alpha_setting(alpha, validation.NONNEGATIVE, where)
    scale: float | Tensor | None = None
    alpha_per_class = None
    if isinstance(alpha_value, Tensor) and alpha_value.dim() > 0:
        alpha_per_class = _per_class(alpha_value, "alpha", like, where)
    elif isinstance(alpha_value, Tensor):
        scale = alpha_value.to(like)
    else:
        scale = alpha_value
    num_classes = None
    for tensor, name in ((w, "weight"), (alpha_per_class, "alpha")):
        if tensor is not None:
            validation.check_per_class_length(name, tensor.shape, num_classes, where)
            num_classes = tensor.shape[0]
    class_coef = _arguments.product(alpha_per_class, w)
    element_shape = (input.shape[0], 1, *input.shape[2:])
    loss_shape = torch.Size((input.shape[0], *input.shape[2:]))
    index = kept = q = None
    if target.is_floating_point():
        if target.shape == loss_shape:
            raise validation.class_indices_dtype_error(where, target.shape, target.dtype, True)
        if target.shape != input.shape:
            raise ValueError(
                f"{where}: expected target of shape {tuple(input.shape)} (this process's slice "
                f"of the class probabilities) or {tuple(loss_shape)} (class indices) for input "
                f"of shape {tuple(input.shape)}, got {tuple(target.shape)}"
            )
        _inputs.check_unit_interval_values(target, "target (class probabilities)", where)
        q = target
        divisor = torch.tensor(loss_shape.numel(), dtype=compute_dtype, device=input.device)
        row_coef = None if scale is None else like.new_full(element_shape, 1.0) * scale
        mean_scale = mean_grad_scale(divisor)
    else:
        if num_classes is None:  # the range check waits for the slices' total
            with validation.validate_inputs(False):
                indices = _inputs.class_indices(
                    target, loss_shape, input.shape, 1, ignore_index, where
                )
        else:
            indices = _inputs.class_indices(
                target, loss_shape, input.shape, num_classes, ignore_index, where
            )
        kept = (indices != ignore_index).unsqueeze(1)
        index = torch.where(kept, indices.unsqueeze(1), 0)
        divisor = _arguments.kept_weight(kept.squeeze(1), index, w, compute_dtype)
        row_coef = kept.to(compute_dtype)
        if scale is not None:
            row_coef = row_coef * scale
        mean_scale = mean_grad_scale(divisor, None if w is None else kept.squeeze(1))
    return _Setup(
        group,
        index,
        kept,
        q,
        class_coef,
        row_coef,
        gamma,
        label_smoothing,
        reduction,
        divisor,
        mean_scale,
        num_classes,
        ignore_index,
        compute_dtype,
        where,
    )


def _dtensor_type() -> Any:
    """``DTensor`` where its module is loaded (a DTensor exists only then; importing it would
    cost seconds), else None."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


Mesh = tuple[Any, int | None]  # a DTensor's process group and this process's place on its mesh


def _local_of(value: Any, name: str, shard_dim: int | None, where: str) -> tuple[Any, Mesh]:
    """A DTensor's local tensor, with its mesh's group and this process's place on the mesh
    (anything else as it is, with ``(None, None)``).

    ``shard_dim`` is the dimension that must be sharded (None: replicated).
    """
    dtensor = _dtensor_type()
    if dtensor is None or not isinstance(value, dtensor):
        return value, (None, None)
    from torch.distributed.tensor import Replicate, Shard

    mesh = value.device_mesh
    expected = Replicate() if shard_dim is None else Shard(shard_dim)
    if mesh.ndim != 1 or tuple(value.placements) != (expected,):
        raise ValueError(
            f"{where}: {name} must be a DTensor on a 1-D mesh with placements ({expected},), "
            f"got {tuple(value.placements)} on a {mesh.ndim}-D mesh"
        )
    return value.to_local(), (mesh.get_group(), mesh.get_local_rank())


def _mesh_group(where: str, group: Any, meshes: list[Mesh]) -> Mesh:
    """The group and place of the DTensor arguments (all on one mesh), or ``group``.

    The place on the mesh orders the slices: a mesh may list its processes in any order.
    """
    found = [mesh for mesh in meshes if mesh[0] is not None]
    if not found:
        return group, None
    mesh_group, position = found[0]
    if any(g is not mesh_group for g, _ in found) or (group is not None and group != mesh_group):
        raise ValueError(f"{where}: the DTensor arguments and group must use one mesh")
    return mesh_group, position


# --- the public functions --------------------------------------------------------------------


def vocab_parallel_softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    gamma: float = 2.0,
    alpha: Alpha = None,
    group: Any = None,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Softmax focal loss of logits split over a process group along the class dimension.

    Each process passes its contiguous slice of the classes, :math:`(N, C_r, d_1, ...)`, the
    slices in rank order of ``group`` (sizes may differ). Every process gets the loss that
    :func:`~focalkit.torch.softmax_focal_loss` gives on the logits gathered along dim 1,

    .. math::
        \ell_n = -\sum_{c=1}^{C} q_{n,c}\, \alpha_c\, w_c\, (1 - p_{n,c})^{\gamma}
        \log p_{n,c}, \qquad p_n = \operatorname{softmax}(x_n) \text{ over all } C
        = \textstyle\sum_r C_r \text{ classes},

    with the same reductions, and its slice's gradient is that slice of the gathered logits'
    gradient. Label smoothing is the global one, :math:`(1 - \varepsilon) q + \varepsilon / C`
    (not an average over each process's classes). Nothing of the logits' size is sent: for
    class-index targets without smoothing, forward makes two all-reduces of a few numbers per
    element (the largest logit, with the slices' sizes; then the sum of exponentials, the
    target's logit and whether it is the largest), as a vocabulary-parallel cross-entropy does;
    label smoothing and probability targets add one more (each process's share of the loss and
    of the gradient's shared term). Backward communicates nothing.

    Without an initialised process group it is this process alone:
    ``softmax_focal_loss`` itself.

    A ``DTensor`` input sharded on the class dimension (placements ``(Shard(1),)`` on a 1-D
    mesh) is taken as its local slice, with the mesh's group and this process's place on the
    mesh; the target may be a replicated ``DTensor`` (class indices) or sharded like the input
    (probabilities). The result is an ordinary tensor, the same on every process.

    Args:
        input: This process's slice of the logits.
        target: Class indices in :math:`[0, C)` over all the classes (an integer tensor, the same
            on every process), or this process's slice of the class probabilities (a floating
            tensor of the input's shape).
        weight: Per-class weight :math:`w` for all :math:`C` classes, shape :math:`(C)`.
        ignore_index, reduction: as in :func:`~focalkit.torch.softmax_focal_loss`.
        label_smoothing: :math:`\varepsilon \in [0, 1]`, over all :math:`C` classes.
        gamma: Focusing parameter :math:`\gamma \ge 0` (a number). Default: 2.
        alpha: ``None``, a number, or one value per class for all :math:`C` classes.
        group: The process group the classes are split over. Default: the default group.
        divisor: as in :func:`~focalkit.torch.softmax_focal_loss`.

    Shape:
        - Input: :math:`(C_r)`, :math:`(N, C_r)` or :math:`(N, C_r, d_1, ..., d_K)`.
        - Target: :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)` of class indices, or
          the input's shape for probabilities.
        - Output: scalar; with ``reduction='none'``, the target's shape (without :math:`C`).

    Example:
        One process here (no process group); under ``torchrun`` each process passes its slice.

        >>> import torch
        >>> from focalkit import softmax_focal_loss
        >>> from focalkit.torch.distributed import vocab_parallel_softmax_focal_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.0, 1.0, 3.0, -2.0]])
        >>> target = torch.tensor([0, 3])
        >>> vocab_parallel_softmax_focal_loss(logits, target, label_smoothing=0.1)
        tensor(2.5170)
        >>> softmax_focal_loss(logits, target, label_smoothing=0.1)
        tensor(2.5170)
    """
    where = "vocab_parallel_softmax_focal_loss()"
    validation.check_reduction(reduction, where)
    computed = _arguments.reduction_for(reduction, divisor, where)
    gamma = _arguments.float_gamma(gamma, where)
    label_smoothing = _inputs.check_number(
        "label_smoothing", label_smoothing, validation.UNIT_INTERVAL, where
    )
    validation.check_ignore_index(ignore_index, where)
    input, input_mesh = _local_of(input, "input", _class_dim(input), where)
    probabilities = isinstance(target, Tensor) and target.is_floating_point()
    target, target_mesh = _local_of(
        target, "target", _class_dim(target) if probabilities else None, where
    )
    group, position = _mesh_group(where, group, [input_mesh, target_mesh])
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    if input.dim() == 0:
        raise ValueError(f"{where}: input must have shape (C), (N, C) or (N, C, d1, ...), got ()")
    if input.dim() == 1:  # unbatched
        loss = vocab_parallel_softmax_focal_loss(
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            gamma=gamma,
            alpha=alpha,
            group=group,
            divisor=divisor,
        )
        return loss.squeeze(0) if reduction == "none" else loss
    out_dtype = _inputs.dtypes(input)[1]
    setup = _setup(
        input,
        target,
        weight,
        ignore_index,
        computed,
        label_smoothing,
        gamma,
        alpha,
        _Group(group, where, position),
        where,
    )
    out: Tensor = _VocabParallelSoftmaxFocal.apply(input, setup)  # type: ignore[no-untyped-call]
    return divide(out, divisor).to(out_dtype)


def vocab_parallel_linear_softmax_focal_loss(
    input: Tensor,
    classifier: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
    alpha: Alpha = None,
    chunk_size: int | None = None,
    group: Any = None,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""The fused form of :func:`vocab_parallel_softmax_focal_loss`: the loss of
    ``F.linear(input, classifier, bias)`` with the classifier's rows split over ``group``.

    ``classifier`` is this process's contiguous block of rows of the output layer,
    :math:`(C_r, D)` (blocks in rank order, sizes free), ``bias`` its slice, and ``input`` the
    hidden states, the same on every process. Every process gets the value that
    :func:`~focalkit.torch.linear_softmax_focal_loss` gives with the whole classifier; the
    gradients of ``classifier`` and ``bias`` are this process's rows of the whole ones, and the
    gradient of ``input`` is the whole one (each process's part, all-reduced in backward).

    The logits exist one chunk of rows at a time, :math:`(\text{chunk}, C_r)`: peak memory
    beyond the returned gradients falls as :math:`1/P`. A first pass over the chunks takes the
    statistics of the softmax, the all-reduces of :func:`vocab_parallel_softmax_focal_loss`
    follow (two for class indices, three with label smoothing), and a second pass computes the
    gradients (label smoothing takes one more pass first, for its terms on every class). So
    each chunk's logits are computed twice (three times with smoothing), where the one-process
    fused loss computes them once: communication stays at a few numbers per row.

    Args:
        input: Hidden states, :math:`(*, D)`, the same on every process.
        classifier: This process's rows of the output layer's weight, :math:`(C_r, D)`.
        target: Class indices over all the classes, :math:`(*)`, the same on every process.
        bias: This process's slice of the output layer's bias, :math:`(C_r)`, or ``None``.
        weight, ignore_index, reduction, label_smoothing, gamma, alpha: as in
            :func:`vocab_parallel_softmax_focal_loss`; ``weight`` and ``alpha`` cover all the
            classes.
        chunk_size: Rows per chunk. Default: chosen from the shapes, as in
            :func:`~focalkit.torch.linear_softmax_focal_loss`.
        group, divisor: as in :func:`vocab_parallel_softmax_focal_loss`.

    ``classifier`` and ``bias`` may be ``DTensor`` s sharded on dim 0 (``(Shard(0),)`` on a 1-D
    mesh), ``input`` and ``target`` replicated ones: their local tensors are used, with the
    mesh's group.

    Shape:
        - Output: scalar; with ``reduction='none'``, :math:`(*)`.

    Example:
        >>> import torch
        >>> from focalkit import linear_softmax_focal_loss
        >>> from focalkit.torch.distributed import vocab_parallel_linear_softmax_focal_loss
        >>> hidden, head = torch.randn(6, 8), torch.randn(50, 8)
        >>> target = torch.randint(0, 50, (6,))
        >>> fused = vocab_parallel_linear_softmax_focal_loss(hidden, head, target, chunk_size=4)
        >>> torch.allclose(fused, linear_softmax_focal_loss(hidden, head, target), atol=1e-6)
        True
    """
    where = "vocab_parallel_linear_softmax_focal_loss()"
    validation.check_reduction(reduction, where)
    computed = _arguments.reduction_for(reduction, divisor, where)
    gamma = _arguments.float_gamma(gamma, where)
    label_smoothing = _inputs.check_number(
        "label_smoothing", label_smoothing, validation.UNIT_INTERVAL, where
    )
    validation.check_ignore_index(ignore_index, where)
    validation.check_positive_int("chunk_size", chunk_size, where, optional=True)
    classifier, classifier_mesh = _local_of(classifier, "classifier", 0, where)
    bias, bias_mesh = _local_of(bias, "bias", 0, where)
    input, input_mesh = _local_of(input, "input", None, where)
    target, target_mesh = _local_of(target, "target", None, where)
    group, position = _mesh_group(
        where, group, [classifier_mesh, bias_mesh, input_mesh, target_mesh]
    )
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    num_local = _arguments.check_linear_head(input, classifier, bias, where, "C_local")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise validation.class_indices_dtype_error(
            where, target.shape, target.dtype, target.shape == input.shape[:-1]
        )
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise validation.shape_mismatch(
            where, "target", input.shape[:-1], target.shape, input.shape
        )
    rows = target.numel()
    hidden = input.reshape(rows, input.shape[-1])  # -1 is ambiguous for D = 0
    compute_dtype, out_dtype = _inputs.dtypes(input)
    # The (rows, C_local) logits, as a view of no memory, for the settings' shapes and dtype.
    shape_of_logits = hidden.new_empty((), dtype=input.dtype).expand(rows, num_local)
    setup = _setup(
        shape_of_logits,
        target.reshape(rows),
        weight,
        ignore_index,
        computed,
        label_smoothing,
        gamma,
        alpha,
        _Group(group, where, position),
        where,
    )
    chunk = chunk_size or fused_chunk_rows(
        rows, max(1, num_local), compute_dtype, one_hot=label_smoothing == 0
    )
    loss: Tensor = _VocabParallelLinearSoftmaxFocal.apply(  # type: ignore[no-untyped-call]
        hidden, classifier, bias, setup, max(1, min(chunk, rows)), torch.is_grad_enabled()
    )
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return divide(loss, divisor).to(out_dtype)


def _class_dim(value: object) -> int:
    return 0 if isinstance(value, Tensor) and value.dim() == 1 else 1
