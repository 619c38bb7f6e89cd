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

from focalkit.torch._focal import binary_coefficient, focal_slope

# F.binary_cross_entropy's backward divides by max(p (1 - p), EPSILON), with EPSILON = 1e-12 held
# as a float32 (9.99999996e-13); the same constant gives the same gradient to the last bit.
_BCE_EPSILON = float(torch.tensor(1e-12, dtype=torch.float32))


def nll_focal_term(log_p: Tensor, gamma: float) -> Tensor:
    r""":math:`f(s) = -(1 - e^s)^\gamma s` for log-probabilities :math:`s \le 0`; safe gradient."""
    function = _NLLFocalTerm if torch.compiler.is_compiling() else _NLLFocalTermWithJvp
    out: Tensor = function.apply(log_p, gamma)  # type: ignore[no-untyped-call]
    return out


class _NLLFocalTerm(torch.autograd.Function):
    # forward and backward are PyTorch operations: torch.func's transforms work. No jvp here:
    # Dynamo does not trace a Function that defines one, so torch.compile takes this class.
    generate_vmap_rule = True

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
        return grad * focal_slope(log_p, ctx.gamma), None


class _NLLFocalTermWithJvp(_NLLFocalTerm):
    """With the forward-mode derivative: eager forward AD, torch.func.jvp, jacfwd, hessian."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        _NLLFocalTerm.setup_context(ctx, inputs, output)
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx: Any, log_p_tangent: Tensor, gamma_tangent: None) -> Tensor:
        (log_p,) = ctx.saved_tensors
        return log_p_tangent * focal_slope(log_p, ctx.gamma)


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
    apply = (_BinaryFocalTerm if torch.compiler.is_compiling() else _BinaryFocalTermWithJvp).apply
    out: Tensor = apply(prob, target, gamma, weight, alpha)  # type: ignore[no-untyped-call]
    return out


def _binary_parts(prob: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``1 - p_t`` and the unweighted binary cross-entropy with logs clamped at -100."""
    one_minus_pt = target * (1.0 - prob) + (1.0 - target) * prob
    log_p = prob.log().clamp_min(-100.0)
    log_1mp = torch.log1p(-prob).clamp_min(-100.0)
    bce = -(target * log_p + (1.0 - target) * log_1mp)
    return one_minus_pt, bce


class _BinaryFocalTerm(torch.autograd.Function):
    # forward and backward are PyTorch operations: torch.func's transforms work. No jvp here:
    # Dynamo does not trace a Function that defines one, so torch.compile takes this class.
    generate_vmap_rule = True

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
        prob, target, weight, alpha_tensor = ctx.saved_tensors
        alpha = alpha_tensor if alpha_tensor is not None else ctx.alpha
        derivative = _binary_derivative(prob, target, ctx.gamma)
        return binary_coefficient(grad * derivative, target, weight, alpha), None, None, None, None


class _BinaryFocalTermWithJvp(_BinaryFocalTerm):
    """With the forward-mode derivative: eager forward AD, torch.func.jvp, jacfwd, hessian."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _BinaryFocalTerm.setup_context(ctx, inputs, output)
        prob, target, _, weight, alpha = inputs
        ctx.save_for_forward(prob, target, weight, alpha if isinstance(alpha, Tensor) else None)
        ctx.set_materialize_grads(False)  # jvp: None, not zeros, for inputs without a tangent

    @staticmethod
    def backward(ctx: Any, grad: Tensor | None) -> tuple[Tensor | None, ...]:
        if grad is None:  # grads are not materialized (for jvp's sake)
            return None, None, None, None, None
        return _BinaryFocalTerm.backward(ctx, grad)

    @staticmethod
    def jvp(
        ctx: Any,
        prob_tangent: Tensor | None,
        target_tangent: Tensor | None,
        gamma_tangent: None,
        weight_tangent: Tensor | None,
        alpha_tangent: Tensor | None,
    ) -> Tensor:
        # The term is linear in w and in alpha (alpha_t = alpha y + (1 - alpha)(1 - y)).
        if target_tangent is not None:
            raise ValueError("binary_focal_loss(): target is not differentiated; pass its primal")
        prob, target, weight, alpha_tensor = ctx.saved_tensors
        alpha = alpha_tensor if alpha_tensor is not None else ctx.alpha
        tangent = torch.zeros_like(prob)
        if prob_tangent is not None:
            derivative = _binary_derivative(prob, target, ctx.gamma)
            tangent = binary_coefficient(prob_tangent * derivative, target, weight, alpha)
        if weight_tangent is None and alpha_tangent is None:
            return tangent
        one_minus_pt, bce = _binary_parts(prob, target)
        term = one_minus_pt.pow(ctx.gamma) * bce
        if weight_tangent is not None:
            tangent = tangent + binary_coefficient(term * weight_tangent, target, None, alpha)
        if alpha_tangent is not None:
            tangent = tangent + binary_coefficient(term, target, weight, None) * (
                alpha_tangent * (2.0 * target - 1.0)
            )
        return tangent


def _binary_derivative(prob: Tensor, target: Tensor, gamma: float) -> Tensor:
    r""":math:`\partial [m^\gamma B] / \partial p = m^\gamma (\gamma (1 - 2y) B / m + B')`, with
    :math:`m = 1 - p_t` and :math:`\partial m / \partial p = 1 - 2y`.

    :math:`B / m \to 1` where :math:`m \to 0` (:math:`p = y \in \{0, 1\}`); the limit is
    written out.
    """
    one_minus_pt, bce = _binary_parts(prob, target)
    positive = one_minus_pt > 0
    safe = torch.where(positive, one_minus_pt, torch.ones_like(one_minus_pt))
    ratio = torch.where(positive, bce / safe, torch.ones_like(bce))
    bce_derivative = (prob - target) / (prob * (1.0 - prob)).clamp_min(_BCE_EPSILON)
    return one_minus_pt.pow(gamma) * (gamma * (1.0 - 2.0 * target) * ratio + bce_derivative)
