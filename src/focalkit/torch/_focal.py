r"""The focal loss's math, once: the formulas that the definitions, the hand-derived autograd
Functions and the kernels share.

With :math:`s = \log p` and :math:`u = 1 - p`, the focal term and its slope are

.. math::
    f(s) = -u^\gamma s, \qquad
    f'(s) = u^{\gamma - 1} (\gamma p s - u) = u^\gamma \left(\gamma \frac{p s}{u} - 1\right),

the first form bounded for :math:`\gamma \ge 1`, the second for any :math:`\gamma \ge 0`
once :math:`p s / u` is read as its limit -1 at :math:`u = 0`. Both :math:`\log p` and
:math:`\log(1 - p)` come from the logits (:func:`log_softmax_and_complement`,
:func:`log_one_minus_pt`), never from :math:`1 - p`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def logsumexp(x: Tensor, dim: int) -> Tensor:
    """``logsumexp`` over ``dim`` (kept) that is ``-inf`` with a zero gradient for empty rows.

    A row of all ``-inf`` (no classes left) gives ``-inf``; ``torch.logsumexp`` would give a NaN
    gradient there.
    """
    shift = x.amax(dim, keepdim=True).detach()
    shift = torch.where(torch.isinf(shift), torch.zeros_like(shift), shift)
    total = (x - shift).exp().sum(dim, keepdim=True)
    empty = total == 0
    safe_total = torch.where(empty, torch.ones_like(total), total)
    return torch.where(empty, torch.full_like(total, -torch.inf), shift + safe_total.log())


def log_softmax_and_complement(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    r""":math:`\log p` and :math:`\log(1 - p)` for every class, :math:`p = \mathrm{softmax}(x)`.

    :math:`\log(1 - p_c)` comes from the logits, not from :math:`p`: for all classes but the most
    likely one :math:`p_c \le 1/2` and ``log1p(-p)`` is exact; for the most likely one it is
    :math:`\log\sigma(d)` with :math:`d = \log\sum_{j \ne c} e^{x_j - x_c}`, finite however
    confident the logits. So :math:`(1 - p)^\gamma = e^{\gamma \log(1 - p)}` has finite
    derivatives of every order, even where :math:`p` rounds to 1.
    """
    log_p = F.log_softmax(x, dim)
    top = x.argmax(dim, keepdim=True)
    is_top = torch.zeros_like(x, dtype=torch.bool).scatter(dim, top, True)
    others = (x - x.gather(dim, top)).masked_fill(is_top, -torch.inf)
    log_1mp_top = F.logsigmoid(logsumexp(others, dim))
    log_1mp_rest = torch.log1p(-log_p.masked_fill(is_top, -torch.inf).exp())
    return log_p, torch.where(is_top, log_1mp_top, log_1mp_rest)


def focal_term(log_p: Tensor, log_1mp: Tensor, gamma: float | Tensor) -> Tensor:
    r""":math:`-(1 - p)^\gamma \log p`, from :math:`\log p` and :math:`\log(1 - p)`."""
    if isinstance(gamma, float) and gamma == 0:
        return -log_p
    return -torch.exp(gamma * log_1mp) * log_p


def log_one_minus_pt(x: Tensor, y: Tensor) -> Tensor:
    r""":math:`\log(1 - p_t) = \log(y \sigma(-x) + (1 - y) \sigma(x))`, from log-sigmoids.

    Finite at any finite logit, with finite derivatives of every order, in ``x`` and in ``y``.
    Soft labels take a log-add-exp whose arguments are kept finite in both branches of the
    ``where`` (``torch.logaddexp``'s second derivative is NaN once its arguments differ by more
    than ~88 in float32, so it is written out). A hard label takes the log-sigmoid itself, times
    a factor that is exactly 1 there but carries the derivatives in ``y``: at :math:`y = 1`,
    :math:`1 - p_t = \sigma(-x) (1 + (1 - y)(e^x - 1))`, and at :math:`y = 0`,
    :math:`\sigma(x) (1 + y (e^{-x} - 1))`.
    """
    log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    at_one, at_zero = y == 1, y == 0
    y_soft = torch.where(at_one | at_zero, torch.full_like(y, 0.5), y)
    first, second = y_soft.log() + log_1mp, torch.log1p(-y_soft) + log_p
    larger = torch.maximum(first, second)
    soft = larger + torch.log1p(torch.exp(torch.minimum(first, second) - larger))
    # e^{|x|} - 1 stays finite (beyond, its factor 1 - y or y is 0); the other elements read
    # y = 1 (y = 0), so that no branch holds a non-finite value or derivative.
    limit = math.log(torch.finfo(x.dtype).max) - 1.0
    y_one = torch.where(at_one, y, torch.ones_like(y))
    y_zero = torch.where(at_zero, y, torch.zeros_like(y))
    one = log_1mp + torch.log1p((1.0 - y_one) * torch.expm1(x.clamp(max=limit)))
    zero = log_p + torch.log1p(y_zero * torch.expm1((-x).clamp(max=limit)))
    return torch.where(at_one, one, torch.where(at_zero, zero, soft))


def bounded_focal_slope(
    log_p: Tensor, prob: Tensor, minus_u: Tensor, gamma: float, *, out: Tensor | None = None
) -> tuple[Tensor, float, Tensor | None]:
    r"""The slope :math:`f'(s)` for :math:`\gamma \ge 1`, bounded and with no division.

    From :math:`f(s) = -u^\gamma s` with :math:`u = 1 - e^s`, :math:`du/ds = -p`:

    .. math::
        f'(s) = \gamma u^{\gamma - 1} p s - u^\gamma = u^{\gamma - 1} (\gamma p s - u),

    both factors bounded for :math:`\gamma \ge 1`. ``prob`` is :math:`p` and ``minus_u`` is
    :math:`p - 1`; :math:`t = \gamma p s + (p - 1)` is written into ``out`` (a fresh tensor
    where ``out`` is ``None``) and multiplied in place by :math:`g = u^{\gamma - 1}`. Returns
    ``(slope, sign, g)``: ``sign * slope`` is :math:`f'(s)`; at :math:`\gamma = 2`, :math:`g` is
    taken as :math:`p - 1` and ``sign`` is -1 (no power at all); ``g`` is returned where it was
    computed as a power (:math:`\gamma \ne 1, 2`), for the caller's loss. ``s = -inf`` needs
    ``log_p`` clamped to a finite value by the caller (:math:`p s \to 0` there).

    >>> s = torch.tensor([-0.5])
    >>> slope, sign, _ = bounded_focal_slope(s, s.exp(), s.exp() - 1, 2.0)
    >>> torch.allclose(sign * slope, focal_slope(s, 2.0))
    True
    """
    t = torch.addcmul(minus_u, prob, log_p, value=gamma, out=out)
    if gamma == 2:
        return t.mul_(minus_u), -1.0, None
    if gamma == 1:
        return t, 1.0, None
    g = torch.neg(minus_u).pow_(gamma - 1.0)
    return t.mul_(g), 1.0, g


def focal_slope(
    log_p: Tensor,
    gamma: float | Tensor,
    *,
    prob: Tensor | None = None,
    one_minus_p: Tensor | None = None,
    power: Tensor | None = None,
    scale: float | Tensor | None = None,
    out: Tensor | None = None,
) -> Tensor:
    r"""The slope :math:`f'(s) = u^\gamma (\gamma p s / u - 1)` of :math:`f(s) = -u^\gamma s`,
    :math:`u = 1 - p`, :math:`p = e^s`, for any :math:`\gamma \ge 0` (a number or a tensor).

    The ratio :math:`p s / u` tends to -1 as :math:`u \to 0` and to 0 as :math:`s \to -\infty`;
    where :math:`u = 0`, :math:`u^\gamma` is 0 (:math:`\gamma > 0`) or the ratio is multiplied by
    :math:`\gamma = 0`, so the slope is finite for every :math:`s \in [-\infty, 0]`. ``prob``,
    ``one_minus_p`` and ``power`` are :math:`p`, :math:`u` and :math:`u^\gamma` where the caller
    has them (by default ``exp``, ``-expm1`` and ``pow`` of ``log_p``); ``power`` may carry more
    factors (target weights), and the result is multiplied by ``scale``.

    Two forms of one formula:

    - ``out=None``: differentiable to any order, for the hand-derived backward passes. Both
      limits are written out, and the unused branch of each ``torch.where`` holds finite values.
    - ``out`` given: the kernels' form, written into ``out`` in place, one pass per operation
      and no mask: :math:`u` is clamped at the smallest normal number, in place (any finite
      ratio is right where :math:`u = 0`), and ``log_p`` must be finite where :math:`p s` should
      be 0 (the caller clamps it, or accepts NaN at :math:`s = -\infty`).

    >>> s = torch.tensor([-2.0, -0.1])
    >>> u = 1 - s.exp()
    >>> torch.allclose(focal_slope(s, 0.5), u**0.5 * (0.5 * s.exp() * s / u - 1))
    True
    >>> focal_slope(torch.tensor([0.0, -torch.inf]), 0.5)  # the limits at p = 1 and p = 0
    tensor([ 0., -1.])
    """
    if one_minus_p is None:
        one_minus_p = -torch.expm1(log_p)
    if out is None:
        inside = one_minus_p > 0
        safe_one_minus_p = torch.where(inside, one_minus_p, torch.ones_like(one_minus_p))
        # p log p, with 0 * -inf read as its limit 0 (log_p = -inf is a valid log-probability).
        prob = log_p.exp() if prob is None else prob
        p_log_p = prob * log_p.clamp_min(torch.finfo(log_p.dtype).min)
        ratio = torch.where(inside, p_log_p / safe_one_minus_p, -torch.ones_like(log_p))
        power = one_minus_p.pow(gamma) if power is None else power
        slope = power * (gamma * ratio - 1.0)
        return slope if scale is None else slope * scale
    if power is None:
        power = one_minus_p.pow(gamma)
    tiny = torch.finfo(one_minus_p.dtype).tiny
    prob = log_p.exp() if prob is None else prob
    ratio = torch.mul(prob, log_p, out=out).div_(one_minus_p.clamp_min_(tiny))
    # scale (gamma ratio - 1) in one pass, then the power.
    scale_t = torch.as_tensor(1.0 if scale is None else scale, dtype=out.dtype, device=out.device)
    return torch.addcmul(-scale_t, ratio, gamma * scale_t, out=out).mul_(power)


def alpha_t(
    target: Tensor,
    alpha: float | Tensor,
    not_target: Tensor | None = None,
    *,
    in_place: bool = False,
    out: Tensor | None = None,
) -> Tensor:
    r""":math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`, two terms of one sign.

    With :math:`\alpha, y \in [0, 1]` both terms are non-negative, so the sum loses nothing to
    cancellation (the form :math:`1 - \alpha + y (2 \alpha - 1)` would). ``not_target`` is
    :math:`1 - y` where the caller has it. ``in_place=True`` is the kernels' form: written into
    ``out`` (a fresh tensor where ``out`` is ``None``) with in-place operations, for tensors of
    one shape that need no gradient; otherwise the operations are differentiable and broadcast.

    >>> alpha_t(torch.tensor([1.0, 0.0, 0.5]), 0.25)
    tensor([0.2500, 0.7500, 0.5000])
    """
    if not_target is None:
        not_target = 1.0 - target
    if not in_place:
        return alpha * target + (1.0 - alpha) * not_target
    if isinstance(alpha, Tensor):
        one = torch.tensor(1.0, dtype=target.dtype, device=target.device)
        return torch.sub(one, alpha, out=out).mul_(not_target).addcmul_(target, alpha)
    return torch.mul(not_target, 1.0 - alpha, out=out).add_(target, alpha=alpha)


def binary_coefficient(
    value: Tensor, target: Tensor, weight: Tensor | None, alpha: float | Tensor | None
) -> Tensor:
    r"""``value`` times :math:`w` and :math:`\alpha_t` (:func:`alpha_t`)."""
    if weight is not None:
        value = value * weight
    if alpha is None:
        return value
    return value * alpha_t(target, alpha)
