r"""The focal family's math, once: PolyLoss, the logit shift of logit adjustment and LDAM.

Each formula is written from the logits in log space, like the focal loss's in
:mod:`focalkit.torch._focal`, so values and derivatives stay finite at any finite logit. The
definitions in ``functional.py`` differentiate these with autograd; the kernels in
:mod:`focalkit.torch._kernels.family` use the hand-derived slopes below.

**Poly-1** (Leng et al. 2022). With :math:`s = \log p` and :math:`u = 1 - p`, the term of one class
is the focal term plus :math:`\epsilon` times the next power of :math:`u`,

.. math::
    h(s) = -u^\gamma s + \epsilon u^{\gamma + 1} = u^\gamma (\epsilon u - s), \\
    h'(s) = u^{\gamma - 1} \left(\gamma p s - u - \epsilon (\gamma + 1) p u\right)
          = u^\gamma \left(\gamma \frac{p s}{u} - 1 - \epsilon (\gamma + 1) p\right),

from :math:`du/ds = -p`: the first form of :math:`h'` bounded for :math:`\gamma \ge 1`, the second
for any :math:`\gamma \ge 0` once :math:`p s / u` is read as its limit -1 at :math:`u = 0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit.torch._focal import focal_term, log_one_minus_pt


def poly_term(log_p: Tensor, log_1mp: Tensor, gamma: float | Tensor, epsilon: float) -> Tensor:
    r""":math:`h(s) = -(1 - p)^\gamma \log p + \epsilon (1 - p)^{\gamma + 1}`, from :math:`\log p`
    and :math:`\log(1 - p)`; ``epsilon=0`` is the focal term.

    >>> s = torch.tensor([-0.5])
    >>> u = 1 - s.exp()
    >>> torch.allclose(poly_term(s, u.log(), 2.0, 1.0), -(u**2) * s + u**3)
    True
    """
    term = focal_term(log_p, log_1mp, gamma)
    if epsilon == 0:
        return term
    return term + epsilon * torch.exp((gamma + 1.0) * log_1mp)


def poly_target_terms(
    log_pt: Tensor,
    coef: Tensor,
    gamma: float,
    epsilon: float,
    grad_scale: Tensor | float | None,
) -> tuple[Tensor, Tensor | None]:
    r"""Per element: the loss ``coef * h(s_t)`` and the slope ``coef * grad_scale * h'(s_t)``.

    For the kernels (tensors of one element per row, no autograd). ``log_pt`` is :math:`s_t`,
    0 for an element of ``coef`` 0 (whose terms are then 0); for :math:`\gamma \ge 1` the slope
    takes the bounded form of the module docstring, otherwise the form with the ratio
    :math:`p s / u`, read as -1 where :math:`u = 0`. ``grad_scale=None`` skips the slope.

    >>> s = torch.tensor([-0.5, -3.0], dtype=torch.float64, requires_grad=True)
    >>> u = -torch.expm1(s)
    >>> h = u**0.5 * (2.0 * u - s)
    >>> (grad,) = torch.autograd.grad(h.sum(), s)
    >>> coef = torch.ones(2, dtype=torch.float64)
    >>> loss, slope = poly_target_terms(s.detach(), coef, 0.5, 2.0, 1.0)
    >>> torch.allclose(loss, h) and torch.allclose(slope, grad)
    True
    """
    minus_u = torch.expm1(log_pt)
    one_minus_p = minus_u.neg()
    power = one_minus_p if gamma == 1 else one_minus_p.pow(gamma)
    loss = torch.addcmul(-log_pt, one_minus_p, torch.full_like(log_pt, epsilon))  # eps u - s
    loss = loss.mul_(power).mul_(coef)
    if grad_scale is None:
        return loss, None
    # p s -> 0 as s -> -inf; the clamp keeps it 0 there instead of 0 * inf.
    log_pt = log_pt.clamp_min(torch.finfo(log_pt.dtype).min)
    prob = log_pt.exp()
    p_log_p = prob * log_pt
    if gamma >= 1:
        # u^(gamma - 1) (gamma p s - u - eps (gamma + 1) p u)
        inner = (
            (gamma * p_log_p).add_(minus_u).sub_(prob * one_minus_p, alpha=epsilon * (gamma + 1))
        )
        if gamma != 1:
            inner.mul_(one_minus_p.pow(gamma - 1.0))
        slope = inner
    else:
        inside = one_minus_p > 0
        safe = torch.where(inside, one_minus_p, torch.ones_like(one_minus_p))
        ratio = torch.where(inside, p_log_p / safe, -torch.ones_like(p_log_p))
        slope = (gamma * ratio).sub_(1.0).sub_(prob, alpha=epsilon * (gamma + 1)).mul_(power)
    return loss, slope.mul_(coef * grad_scale)


class LogitShift(NamedTuple):
    r"""The affine map of the logits before the softmax: :math:`z = s (x + b - \Delta_y e_y)`.

    ``offset`` is :math:`b` (``logit_offset``, e.g. the logit adjustment), ``margin`` each
    element's :math:`\Delta_y` at its target class (LDAM; 0 for ignored elements) and ``scale``
    :math:`s` (LDAM's). The loss's gradient with respect to :math:`x` is :math:`s` times its
    gradient with respect to :math:`z`: the offset and the margins are constants.
    """

    offset: Tensor | None  # (C,)
    margin: Tensor | None  # (N, 1, d...) each element's target margin, 0 where ignored
    target_index: Tensor | None  # (N, 1, d...) the target classes, where margin is not None
    scale: float | None

    def apply(self, x: Tensor) -> Tensor:
        """The shifted logits, differentiable in ``x`` (and in a tensor setting that needs it)."""
        if self.offset is not None:
            x = x + self.offset.reshape((1, -1) + (1,) * (x.dim() - 2))
        if self.margin is not None and self.target_index is not None:
            x = x.scatter_add(1, self.target_index, -self.margin)
        if self.scale is not None:
            x = x * self.scale
        return x

    def is_identity(self) -> bool:
        return self.offset is None and self.margin is None and self.scale is None


def binary_cross_entropy(x: Tensor, y: Tensor) -> Tensor:
    r""":math:`-(y \log p + (1 - y) \log(1 - p))`, :math:`p = \sigma(x)`, as two terms of one
    sign, each from a log-sigmoid: exact in the tails, where the form
    :math:`(1 - y) x - \log p` cancels."""
    return -(y * F.logsigmoid(x) + (1.0 - y) * F.logsigmoid(-x))


def poly_binary_term(x: Tensor, y: Tensor, gamma: float | Tensor, epsilon: float) -> Tensor:
    r""":math:`m^\gamma\, \mathrm{BCE}(x, y) + \epsilon\, m^{\gamma + 1}`, :math:`m = 1 - p_t`,
    with :math:`\log m` from the logits (:func:`focalkit.torch._focal.log_one_minus_pt`).

    >>> x, y = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 1.0])
    >>> m = 1 - torch.sigmoid(x)
    >>> torch.allclose(poly_binary_term(x, y, 2.0, 1.0), m**2 * -torch.sigmoid(x).log() + m**3)
    True
    """
    bce = binary_cross_entropy(x, y)
    if not isinstance(gamma, Tensor) and gamma == 0 and epsilon == 0:
        return bce
    log_m = log_one_minus_pt(x, y)
    term = bce if not isinstance(gamma, Tensor) and gamma == 0 else torch.exp(gamma * log_m) * bce
    if epsilon == 0:
        return term
    return term + epsilon * torch.exp((gamma + 1.0) * log_m)


def asymmetric_terms(
    x: Tensor, y: Tensor, gamma_pos: float, gamma_neg: float, clip: float
) -> Tensor:
    r"""The asymmetric loss per element, without the weight:
    :math:`-y (1 - p)^{\gamma_+} \log p - (1 - y)\, p_m^{\gamma_-} \log(1 - p_m)`,
    :math:`p_m = \max(p - m, 0)`.

    :math:`\log p` and :math:`\log(1 - p)` are log-sigmoids of the logits; with a clip
    :math:`m > 0`, :math:`1 - p_m = \sigma(-x) + m` wherever :math:`p > m`, a sum of two
    non-negative terms, and where :math:`p \le m` the negative term and its gradient are exactly
    0 (both branches of the ``where`` hold finite values).

    >>> x, y = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    >>> p = torch.sigmoid(x)
    >>> positive, negative = -(1 - p[0]) * p[0].log(), -((p[1] - 0.05) ** 4) * (1.05 - p[1]).log()
    >>> expected = torch.stack([positive, negative])
    >>> torch.allclose(asymmetric_terms(x, y, 1.0, 4.0, 0.05), expected)
    True
    """
    log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    positive = y if gamma_pos == 0 else y * torch.exp(gamma_pos * log_1mp)
    loss = -positive * log_p
    not_y = 1.0 - y
    if clip == 0:
        if gamma_neg != 0:
            not_y = not_y * torch.exp(gamma_neg * log_p)
        return loss - not_y * log_1mp
    prob = torch.sigmoid(x)
    above = prob > clip
    log_1m_shifted = torch.log(torch.sigmoid(-x) + clip)  # log(1 - p_m) where p > clip
    if gamma_neg != 0:
        shifted = torch.where(above, prob - clip, torch.ones_like(prob))
        not_y = not_y * torch.exp(gamma_neg * torch.log(shifted))
    negative = torch.where(above, not_y * log_1m_shifted, torch.zeros_like(prob))
    return loss - negative


def varifocal_terms(x: Tensor, q: Tensor, alpha: float, gamma: float) -> Tensor:
    r"""The varifocal loss per element, without the weight: :math:`q\, \mathrm{BCE}(x, q)` where
    :math:`q > 0`, :math:`-\alpha p^\gamma \log(1 - p)` where :math:`q = 0`.

    Both branches are finite at any finite logit; a NaN target takes the first, so it gives NaN.

    >>> x, q = torch.tensor([1.0, -0.5]), torch.tensor([0.8, 0.0])
    >>> p = torch.sigmoid(x)
    >>> bce = -(0.8 * p[0].log() + 0.2 * (1 - p[0]).log())
    >>> expected = torch.stack([0.8 * bce, -0.75 * p[1] ** 2 * (1 - p[1]).log()])
    >>> torch.allclose(varifocal_terms(x, q, 0.75, 2.0), expected)
    True
    """
    log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    positive = -q * (q * log_p + (1.0 - q) * log_1mp)
    negative = log_1mp if gamma == 0 else torch.exp(gamma * log_p) * log_1mp
    return torch.where(q == 0, negative * -alpha, positive)


def log_abs_difference(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`\log |y - p|`, :math:`p = \sigma(x)`, and where it is finite (:math:`y \ne p`).

    Hard labels take the log-sigmoid itself, times a factor that is exactly 1 there but carries
    the derivative in :math:`y`: at :math:`y = 0`, :math:`|y - p| = \sigma(x)(1 - y(1 + e^{-x}))`,
    and at :math:`y = 1`, :math:`\sigma(-x)(1 + (y - 1)(1 + e^{x}))`. Soft labels take
    :math:`|y \sigma(-x) - (1 - y) \sigma(x)|`; where that is 0 the result holds 0 (a finite
    placeholder) and the mask is false.
    """
    at_one, at_zero = y == 1, y == 0
    hard = at_one | at_zero
    y_soft = torch.where(hard, torch.full_like(y, 0.5), y)
    difference = y_soft * torch.sigmoid(-x) - (1.0 - y_soft) * torch.sigmoid(x)
    nonzero = difference != 0
    soft = torch.log(torch.where(nonzero, difference.abs(), torch.ones_like(difference)))
    # 1 + e^{|x|} stays finite (beyond, its factor y or 1 - y is 0); the other elements read
    # y = 0 (y = 1), so that no branch holds a non-finite value or derivative.
    limit = math.log(torch.finfo(x.dtype).max) - 1.0
    y_zero = torch.where(at_zero, y, torch.zeros_like(y))
    y_one = torch.where(at_one, y, torch.ones_like(y))
    zero = F.logsigmoid(x) + torch.log1p(-y_zero * (1.0 + torch.exp((-x).clamp(max=limit))))
    one = F.logsigmoid(-x) + torch.log1p((y_one - 1.0) * (1.0 + torch.exp(x.clamp(max=limit))))
    log_difference = torch.where(at_zero, zero, torch.where(at_one, one, soft))
    return log_difference, hard | nonzero


def quality_focal_terms(x: Tensor, y: Tensor, beta: float) -> Tensor:
    r"""The quality focal loss per element, without the weight:
    :math:`|y - p|^\beta\, \mathrm{BCE}(x, y)`.

    :math:`|y - p|^\beta = e^{\beta \log|y - p|}` from :func:`log_abs_difference`, 0 where
    :math:`p = y` (with a gradient of 0 there, the cusp's one-sided limits being of either sign).

    >>> x, y = torch.tensor([1.0, -0.5]), torch.tensor([0.3, 1.0])
    >>> p = torch.sigmoid(x)
    >>> bce = -(y * p.log() + (1 - y) * (1 - p).log())
    >>> torch.allclose(quality_focal_terms(x, y, 2.0), (y - p).abs() ** 2 * bce)
    True
    """
    bce = binary_cross_entropy(x, y)
    if beta == 0:
        return bce
    log_difference, finite = log_abs_difference(x, y)
    modulation = torch.exp(beta * log_difference)
    return torch.where(finite, modulation, torch.zeros_like(modulation)) * bce


def distribution_focal_terms(x: Tensor, y: Tensor) -> Tensor:
    r"""The distribution focal loss per element: with :math:`l = \min(\lfloor y \rfloor, n - 1)`
    and :math:`r = l + 1`, :math:`(r - y)\, \mathrm{CE}(x, l) + (y - l)\, \mathrm{CE}(x, r)`.

    ``x`` holds the logits of bins :math:`0, \dots, n` along dim 1, ``y`` the targets in
    :math:`[0, n]` (the input's shape without dim 1). A NaN target reads bin 0 for its gather
    and keeps its NaN in both coefficients.

    >>> x, y = torch.tensor([[0.5, 1.0, -1.0]]), torch.tensor([1.25])
    >>> log_p = x.log_softmax(1)[0]
    >>> torch.allclose(distribution_focal_terms(x, y), -(0.75 * log_p[1] + 0.25 * log_p[2]))
    True
    """
    left, right_share = distribution_bins(y, x.shape[1] - 1)
    left_index = left.unsqueeze(1)
    log_p = F.log_softmax(x, 1)
    log_left = log_p.gather(1, left_index).squeeze(1)
    log_right = log_p.gather(1, left_index + 1).squeeze(1)
    return -((1.0 - right_share) * log_left + right_share * log_right)


def distribution_bins(y: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    r"""The lower bin :math:`l = \min(\lfloor y
    floor, n - 1)` (int64) of each target in
        :math:`[0, n]` and the upper bin's share :math:`y - l`; a NaN target reads bin 0 and keeps
        its NaN in the share."""
    readable = torch.where(torch.isnan(y), torch.zeros_like(y), y)
    left = readable.floor().clamp(0, bins - 1)
    return left.long(), y - left


# The element-wise losses' values and gradients, for the kernels (no autograd). Each takes the
# logits x and the target y of one chunk, in the compute dtype, and returns the loss and, where
# ``with_grad``, its derivative in x, both without the weight. With p = sigmoid(x) and
# q = sigmoid(-x) = 1 - p, each computed from x (so that both keep their relative precision in
# the tails), dp/dx = p q, d log p / dx = q and d log q / dx = -p.
#
# They are written for speed on the CPU: every temporary comes from ``out(name)``, a buffer of
# x's shape that the kernel reuses for every chunk (None: a fresh tensor), since fresh
# chunk-sized tensors are new pages to fault in; "loss" and "grad" are where the results go.
# No torch.where and no pow for small whole exponents (both several times slower per element
# than a product); masks are products with sign(.).

Out = Callable[[str], Tensor | None]


def fresh(name: str) -> None:
    """The ``out`` that gives fresh tensors."""
    return None


def _log_sigmoid(x: Tensor, out: Tensor | None) -> Tensor:
    if out is None:
        return F.logsigmoid(x)
    result: Tensor = torch._C._nn.log_sigmoid(x, out=out)  # type: ignore[call-arg]
    return result


def _power(base: Tensor, exponent: float, out: Tensor | None) -> Tensor | None:
    """``base ** exponent`` in a tensor of its own (``None`` for exponent 0, read as 1), by
    products for 2 to 4."""
    if exponent == 0:
        return None
    if exponent == 1:
        return base.clone() if out is None else out.copy_(base)
    if exponent == 2:
        return torch.mul(base, base, out=out)
    if exponent == 3:
        return torch.mul(base, base, out=out).mul_(base)
    if exponent == 4:
        return torch.mul(base, base, out=out).square_()
    return torch.pow(base, exponent, out=out)


def _one_minus(y: Tensor, out: Tensor | None) -> Tensor:
    return torch.neg(y, out=out).add_(1.0)


def asymmetric_value_and_slope(
    x: Tensor,
    y: Tensor,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    with_grad: bool,
    out: Out = fresh,
) -> tuple[Tensor, Tensor | None]:
    r"""The asymmetric loss per element and its derivative.

    .. math::
        \ell_+ = -y q^{\gamma_+} \log p, \qquad
        \ell_+' = y q^{\gamma_+} (\gamma_+ p \log p - q); \\
        \ell_- = -(1 - y) p_m^{\gamma_-} \log(1 - p_m), \qquad
        \ell_-' = (1 - y)\, p q\, p_m^{\gamma_-}
            \left( \frac{1}{q + m} - \gamma_- \frac{\log(1 - p_m)}{p_m} \right)

    with :math:`p_m = \max(p - m, 0)` and :math:`\ell_-' = 0` where :math:`p_m = 0`; for
    :math:`m = 0` the second reads :math:`(1 - y) p^{\gamma_-} (p - \gamma_- q \log q)`. Every
    factor is bounded: :math:`\log(1 - p_m) / p_m \to -1` as :math:`p_m \to 0`, and
    :math:`1 - p_m = q + m \ge m` for :math:`m > 0`.

    >>> x = torch.tensor([2.0, -1.0, 0.5, -4.0], dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([1.0, 0.0, 0.3, 0.0], dtype=torch.float64)
    >>> loss = asymmetric_terms(x, y, 1.0, 4.0, 0.05)
    >>> value, slope = asymmetric_value_and_slope(x.detach(), y, 1.0, 4.0, 0.05, True)
    >>> (grad,) = torch.autograd.grad(loss.sum(), x)
    >>> torch.allclose(value, loss) and torch.allclose(slope, grad)
    True
    """
    minus_x = torch.neg(x, out=out("minus_x"))
    log_p = _log_sigmoid(x, out("log_p"))
    p = torch.exp(log_p, out=out("p"))
    log_q = _log_sigmoid(minus_x, out("log_q")) if clip == 0 else None
    q = minus_x.sigmoid_()  # minus_x is no longer read
    not_y = _one_minus(y, out("not_y"))
    focus = _power(q, gamma_pos, out("focus"))
    positive = y if focus is None else focus.mul_(y)  # y q^gamma_pos
    loss = torch.mul(positive, log_p, out=out("loss")).neg_()
    grad = None
    if with_grad:  # y q^gamma_pos (gamma_pos p log p - q)
        grad = torch.mul(p, log_p, out=out("grad")).mul_(gamma_pos).sub_(q).mul_(positive)
    if log_q is not None:  # clip = 0: (1 - y) p^gamma_neg
        focus = _power(p, gamma_neg, out("focus"))
        negative = not_y if focus is None else not_y.mul_(focus)
        loss.addcmul_(negative, log_q, value=-1.0)
        if grad is not None:  # (1 - y) p^gamma_neg (p - gamma_neg q log q)
            grad.addcmul_(negative, log_q.mul_(q).mul_(-gamma_neg).add_(p))
        return loss, grad
    shifted = torch.sub(p, clip, out=out("shifted")).clamp_min_(0.0)  # p_m
    log_1m_shifted = torch.neg(shifted, out=out("log_1m_shifted")).log1p_()  # 0 where p <= clip
    focus = _power(shifted, gamma_neg, out("focus"))
    negative = not_y.mul_(shifted.sign() if focus is None else focus)  # 0 where p <= clip
    loss.addcmul_(negative, log_1m_shifted, value=-1.0)
    if grad is not None:
        inner = torch.add(q, clip, out=out("inner")).reciprocal_()
        if gamma_neg != 0:  # log(1 - p_m) / p_m, 0 where p_m = 0
            ratio = torch.clamp_min(shifted, torch.finfo(x.dtype).tiny, out=out("focus"))
            inner.sub_(torch.div(log_1m_shifted, ratio, out=ratio), alpha=gamma_neg)
        grad.addcmul_(negative, inner.mul_(p).mul_(q))
    return loss, grad


def varifocal_value_and_slope(
    x: Tensor,
    target: Tensor,
    alpha: float,
    gamma: float,
    with_grad: bool,
    out: Out = fresh,
) -> tuple[Tensor, Tensor | None]:
    r"""The varifocal loss per element and its derivative: where :math:`t > 0`,
    :math:`t\, \mathrm{BCE}(x, t)` with derivative :math:`t (p - t)`; where :math:`t = 0`,
    :math:`-\alpha p^\gamma \log q` with derivative :math:`\alpha p^\gamma (p - \gamma q \log q)`.
    The negatives are :math:`1 - \operatorname{sign}(t)` (``t >= 0``; a NaN target stays NaN).

    >>> x = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    >>> t = torch.tensor([0.9, 0.0, 0.3], dtype=torch.float64)
    >>> loss = varifocal_terms(x, t, 0.75, 2.0)
    >>> value, slope = varifocal_value_and_slope(x.detach(), t, 0.75, 2.0, True)
    >>> (grad,) = torch.autograd.grad(loss.sum(), x)
    >>> torch.allclose(value, loss) and torch.allclose(slope, grad)
    True
    """
    minus_x = torch.neg(x, out=out("minus_x"))
    log_p = _log_sigmoid(x, out("log_p"))
    log_q = _log_sigmoid(minus_x, out("log_q"))
    p = torch.exp(log_p, out=out("p"))
    negative = torch.sign(target, out=out("negative")).sub_(1.0).mul_(-alpha)  # alpha at t = 0
    focus = _power(p, gamma, out("focus"))
    if focus is not None:
        negative.mul_(focus)  # alpha p^gamma at the negatives
    # t BCE(x, t) = -(t^2 log p + t (1 - t) log q); the negatives' term adds -alpha p^g log q
    coefficient = torch.mul(target, target, out=out("coefficient")).sub_(target).neg_()
    coefficient.add_(negative)
    loss = torch.mul(target, target, out=out("loss")).mul_(log_p)
    loss.addcmul_(coefficient, log_q).neg_()
    if not with_grad:
        return loss, None
    q = torch.exp(log_q, out=minus_x)  # minus_x is no longer read
    grad = torch.sub(p, target, out=out("grad")).mul_(target)
    grad.addcmul_(negative, log_q.mul_(q).mul_(-gamma).add_(p))  # alpha p^g (p - g q log q)
    return loss, grad


def quality_focal_value_and_slope(
    x: Tensor, y: Tensor, beta: float, with_grad: bool, out: Out = fresh
) -> tuple[Tensor, Tensor | None]:
    r"""The quality focal loss per element and its derivative. With :math:`d = y - p`
    (:math:`y q - (1 - y) p`, exact for hard labels) and :math:`B` the BCE,

    .. math::
        \ell = |d|^\beta B, \qquad
        \ell' = -\operatorname{sign}(d)\, |d|^{\beta - 1} (\beta p q B + d^2),

    taken as 0 where :math:`d = 0` (the cusp).

    >>> x = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([1.0, 0.0, 0.3], dtype=torch.float64)
    >>> loss = quality_focal_terms(x, y, 1.5)
    >>> value, slope = quality_focal_value_and_slope(x.detach(), y, 1.5, True)
    >>> (grad,) = torch.autograd.grad(loss.sum(), x)
    >>> torch.allclose(value, loss) and torch.allclose(slope, grad)
    True
    """
    minus_x = torch.neg(x, out=out("minus_x"))
    log_p = _log_sigmoid(x, out("log_p"))
    log_q = _log_sigmoid(minus_x, out("log_q"))
    p = torch.exp(log_p, out=out("p"))
    q = torch.exp(log_q, out=minus_x)  # minus_x is no longer read
    not_y = _one_minus(y, out("not_y"))
    bce = torch.mul(y, log_p, out=log_p).addcmul_(not_y, log_q).neg_()  # log p, log q: done
    difference = torch.mul(y, q, out=log_q).addcmul_(not_y, p, value=-1.0)  # d = y - p
    magnitude = torch.abs(difference, out=not_y)
    power = _power(magnitude, beta, out("power"))
    loss = torch.mul(bce, 1.0 if power is None else power, out=out("loss"))
    if not with_grad:
        return loss, None
    # sign(d) |d|^(beta - 1), 0 where d = 0
    if beta == 2:
        factor = difference
    elif beta == 1:
        factor = torch.sign(difference, out=magnitude)
    else:
        factor = magnitude.clamp_min_(torch.finfo(x.dtype).tiny).pow_(beta - 1.0)
        factor.mul_(difference.sign())
    grad = torch.mul(p, q, out=out("grad")).mul_(bce).mul_(beta).addcmul_(difference, difference)
    return loss, grad.mul_(factor).neg_()


def poly_binary_value_and_slope(
    x: Tensor, y: Tensor, gamma: float, epsilon: float, with_grad: bool, out: Out = fresh
) -> tuple[Tensor, Tensor | None]:
    r"""The Poly-1 binary term per element and its derivative (without :math:`\alpha_t w`).
    With :math:`m = 1 - p_t = y q + (1 - y) p`, :math:`m' = p q (1 - 2 y)`, :math:`B` the BCE
    and :math:`B' = p - y`,

    .. math::
        \ell = m^\gamma B + \epsilon m^{\gamma + 1}, \qquad
        \ell' = m^\gamma \left( \gamma \frac{m'}{m} B + B' + \epsilon (\gamma + 1) m' \right),

    where :math:`|m' / m| \le 1` (0 where :math:`m = 0`, which needs :math:`p q = 0`).

    >>> x = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    >>> y = torch.tensor([1.0, 0.0, 0.3], dtype=torch.float64)
    >>> loss = poly_binary_term(x, y, 0.5, 2.0)
    >>> value, slope = poly_binary_value_and_slope(x.detach(), y, 0.5, 2.0, True)
    >>> (grad,) = torch.autograd.grad(loss.sum(), x)
    >>> torch.allclose(value, loss) and torch.allclose(slope, grad)
    True
    """
    minus_x = torch.neg(x, out=out("minus_x"))
    log_p = _log_sigmoid(x, out("log_p"))
    log_q = _log_sigmoid(minus_x, out("log_q"))
    p = torch.exp(log_p, out=out("p"))
    q = torch.exp(log_q, out=minus_x)  # minus_x is no longer read
    not_y = _one_minus(y, out("not_y"))
    bce = torch.mul(y, log_p, out=log_p).addcmul_(not_y, log_q).neg_()  # log p, log q: done
    m = torch.mul(y, q, out=log_q).addcmul_(not_y, p)
    power = _power(m, gamma, out("power"))
    loss = torch.add(bce, m, alpha=epsilon, out=out("loss"))
    if power is not None:
        loss.mul_(power)
    if not with_grad:
        return loss, None
    slope_m = torch.mul(p, q, out=q).mul_(not_y.sub_(y))  # m' = p q (1 - 2 y)
    ratio = torch.clamp_min(m, torch.finfo(x.dtype).tiny, out=not_y)  # (1 - 2y) no longer read
    ratio = torch.div(slope_m, ratio, out=ratio)  # m' / m
    grad = torch.sub(p, y, out=out("grad")).add_(slope_m, alpha=epsilon * (gamma + 1.0))
    grad.addcmul_(ratio, bce, value=gamma)
    return loss, grad if power is None else grad.mul_(power)
