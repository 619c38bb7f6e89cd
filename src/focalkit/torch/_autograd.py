r"""Hand-derived gradients where autograd of the formula is unsafe.

The losses on logits (``softmax_focal_loss``, ``sigmoid_focal_loss``) need none: they take
:math:`\log(1 - p)` straight from the logits, which keeps every derivative finite. The losses on
log-probabilities and probabilities cannot: with ``gamma < 1`` the derivative of
:math:`(1 - p)^\gamma` is infinite at :math:`p = 1`, where the loss's own derivative is finite, and
autograd of the product gives ``0 * inf = NaN``. Each function here writes the derivative of the
product, simplified until it is bounded. The backward passes are built from differentiable
operations on the saved inputs, so double backward works too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# F.binary_cross_entropy's backward divides by max(p (1 - p), EPSILON), with EPSILON = 1e-12 held
# as a float32 (9.99999996e-13); the same constant gives the same gradient to the last bit.
_BCE_EPSILON = float(torch.tensor(1e-12, dtype=torch.float32))


def nll_focal_term(log_p: Tensor, gamma: float) -> Tensor:
    r""":math:`f(s) = -(1 - e^s)^\gamma s` for log-probabilities :math:`s \le 0`; safe gradient."""
    out: Tensor = _NLLFocalTerm.apply(log_p, gamma)  # type: ignore[no-untyped-call]
    return out


def nll_focal_term_derivative(log_p: Tensor, gamma: float) -> Tensor:
    r""":math:`f'(s) = (1 - p)^\gamma (\gamma \frac{p \log p}{1 - p} - 1)`, with :math:`p = e^s`.

    The ratio :math:`p \log p / (1 - p)` tends to -1 as :math:`p \to 1` and to 0 as
    :math:`p \to 0`; both limits are written out, so the derivative is finite for every
    :math:`s \in [-\infty, 0]`.
    """
    one_minus_p = -torch.expm1(log_p)
    inside = log_p < 0
    safe_one_minus_p = torch.where(inside, one_minus_p, torch.ones_like(log_p))
    # p log p, with 0 * -inf read as its limit 0 (log_p = -inf is a valid log-probability).
    p_log_p = log_p.exp() * log_p.clamp_min(torch.finfo(log_p.dtype).min)
    ratio = torch.where(inside, p_log_p / safe_one_minus_p, -torch.ones_like(log_p))
    return one_minus_p.pow(gamma) * (gamma * ratio - 1.0)


class _NLLFocalTerm(torch.autograd.Function):
    generate_vmap_rule = True  # forward and backward are PyTorch operations: torch.func works

    @staticmethod
    def forward(log_p: Tensor, gamma: float) -> Tensor:
        return -(-torch.expm1(log_p)).pow(gamma) * log_p

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        log_p, gamma = inputs
        ctx.save_for_backward(log_p)
        ctx.gamma = gamma

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (log_p,) = ctx.saved_tensors
        return grad * nll_focal_term_derivative(log_p, ctx.gamma), None


def binary_focal_term(
    prob: Tensor,
    target: Tensor,
    gamma: float,
    weight: Tensor | None = None,
    alpha: float | Tensor | None = None,
) -> Tensor:
    r""":math:`\alpha_t w (1 - p_t)^\gamma \cdot \mathrm{BCE}(p, y)` on probabilities, with a safe
    gradient.

    ``BCE`` clamps its logs at -100 as ``F.binary_cross_entropy`` does, and the gradient uses the
    same convention as that function's (its log-derivative is
    :math:`(p - y) / \max(p (1 - p), 10^{-12})`), so ``gamma=0`` reproduces it exactly.
    ``target``, ``weight`` and ``alpha`` (:math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`)
    are not differentiated; backward recomputes :math:`\alpha_t w` instead of keeping it.
    """
    apply = _BinaryFocalTerm.apply
    out: Tensor = apply(prob, target, gamma, weight, alpha)  # type: ignore[no-untyped-call]
    return out


def binary_coefficient(
    value: Tensor, target: Tensor, weight: Tensor | None, alpha: float | Tensor | None
) -> Tensor:
    r"""``value`` times :math:`w` and :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`."""
    if weight is not None:
        value = value * weight
    if alpha is None:
        return value
    return value * (alpha * target + (1.0 - alpha) * (1.0 - target))


def _binary_parts(prob: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``1 - p_t`` and the unweighted binary cross-entropy with logs clamped at -100."""
    one_minus_pt = target * (1.0 - prob) + (1.0 - target) * prob
    log_p = prob.log().clamp_min(-100.0)
    log_1mp = torch.log1p(-prob).clamp_min(-100.0)
    bce = -(target * log_p + (1.0 - target) * log_1mp)
    return one_minus_pt, bce


class _BinaryFocalTerm(torch.autograd.Function):
    generate_vmap_rule = True  # forward and backward are PyTorch operations: torch.func works

    @staticmethod
    def forward(
        prob: Tensor,
        target: Tensor,
        gamma: float,
        weight: Tensor | None,
        alpha: float | Tensor | None,
    ) -> Tensor:
        one_minus_pt, bce = _binary_parts(prob, target)
        return binary_coefficient(one_minus_pt.pow(gamma) * bce, target, weight, alpha)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        prob, target, gamma, weight, alpha = inputs
        alpha_tensor = alpha if isinstance(alpha, Tensor) else None
        ctx.save_for_backward(prob, target, weight, alpha_tensor)
        ctx.gamma = gamma
        ctx.alpha = None if alpha_tensor is not None else alpha

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # d/dp [m^g B] = m^g (g (1 - 2y) B / m + B'),  m = 1 - p_t,  dm/dp = 1 - 2y.
        # B / m -> 1 where m -> 0 (p = y in {0, 1}); the limit is written out.
        prob, target, weight, alpha_tensor = ctx.saved_tensors
        alpha = alpha_tensor if alpha_tensor is not None else ctx.alpha
        gamma = ctx.gamma
        one_minus_pt, bce = _binary_parts(prob, target)
        positive = one_minus_pt > 0
        safe = torch.where(positive, one_minus_pt, torch.ones_like(one_minus_pt))
        ratio = torch.where(positive, bce / safe, torch.ones_like(bce))
        bce_derivative = (prob - target) / (prob * (1.0 - prob)).clamp_min(_BCE_EPSILON)
        derivative = one_minus_pt.pow(gamma) * (
            gamma * (1.0 - 2.0 * target) * ratio + bce_derivative
        )
        return binary_coefficient(grad * derivative, target, weight, alpha), None, None, None, None
