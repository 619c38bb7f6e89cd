r"""The sigmoid focal loss kernels: ``SigmoidFocal`` (chunked, one buffer) and
``SigmoidFocalElementwise`` (for ``torch.compile``).

Per element with :math:`m = 1 - p_t`, :math:`B` the BCE and :math:`q = \sigma(-x) = 1 - p`:

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

from functools import partial
from typing import Any

import torch
from torch import Tensor

from focalkit.torch._focal import alpha_t
from focalkit.torch._kernels._common import (
    Recompute,
    ScaledGrad,
    chunk_rows,
    computed_grad,
    no_autocast,
    row_chunks,
    save,
)
from focalkit.torch._reduction import reduce
from focalkit.torch._settings import SigmoidSettings

# Elements per chunk: the sigmoid chunk holds several temporaries of its size (see Scratch).
SIGMOID_CHUNK = 1 << 19


class SigmoidFocal(ScaledGrad):
    """Element-wise sigmoid focal loss; see the module docstring.

    The settings' ``target``, ``weight``, ``pos_weight``, ``alpha`` and ``gamma`` broadcast to
    the input's shape (the target has it) or are numbers.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor, settings: SigmoidSettings, recompute: Recompute) -> Tensor:
        with no_autocast(input):  # the math is float32 already; keep reductions there
            out, unit_grad, factor = _sigmoid_forward(
                input, settings, needs_grad=settings.needs_grad
            )
        rerun = partial(_sigmoid_forward, input, settings, needs_grad=True)
        save(ctx, input, unit_grad, recompute, lambda: computed_grad(rerun()), 3, None, factor)
        return out


def _sigmoid_forward(
    input: Tensor, settings: SigmoidSettings, *, needs_grad: bool
) -> tuple[Tensor, Tensor | None, float | None]:
    """Loss, unit gradient, and the factor still to multiply that gradient by (None: none)."""
    compute_dtype, target, weight, pos_weight, alpha, gamma, reduction, _ = settings
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
        (min(rows, chunk_rows(row_elements, SIGMOID_CHUNK)), *batched.shape[1:]),
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
    # 'sum' and 'mean' stream the sum over the chunks (a loss per element would be a second
    # tensor of the input's size) and reduce that total: 'mean' divides it by the element count.
    count = total.new_tensor(input.numel())
    out = reduce(total if losses is None else losses.reshape(input.shape), reduction, count)
    # 'mean''s 1 / count is applied by backward's scaling, not a pass here.
    factor = 1.0 / max(input.numel(), 1) if reduction == "mean" else None
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
    if alpha is not None:
        coef, owned = alpha_t(y, alpha, not_y, in_place=True, out=out("coef")), True
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
