"""The fused linear softmax focal loss: ``F.linear`` and the loss without the logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit.torch._kernels._common import chunk_of, no_autocast
from focalkit.torch._kernels.softmax import ChunkTarget, softmax_chunk
from focalkit.torch._reduction import reduce
from focalkit.torch._settings import FusedSettings

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
        return reduce(loss_rows, reduction, divisor)

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
    index, class_coef, row_coef, gamma, label_smoothing, kept = settings[:6]
    mean_scale, reduction, chunk = settings.mean_scale, settings.reduction, settings.chunk
    target = ChunkTarget(index, None, class_coef, row_coef, gamma, label_smoothing, kept)
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
        part_target = target.rows(part)
        if grad_out is not None:  # 'none': each row's incoming gradient scales its row
            row_grad = grad_out[part].reshape(-1, 1).to(compute)
            part_target = part_target._replace(row_coef=row_coef[part] * row_grad)
        with no_autocast(logits):
            loss, pending = softmax_chunk(
                logits, logits, part_target, chunk_of(grad_scale, part) if with_grad else None
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
