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
