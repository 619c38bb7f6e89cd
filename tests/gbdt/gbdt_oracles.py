"""Oracles for the gradient-boosting objectives: torch autograd and 150-digit finite differences.

- :func:`torch_binary` / :func:`torch_softmax`: gradient and Hessian diagonal of
  ``focalkit.sigmoid_focal_loss`` / ``softmax_focal_loss`` by float64 autograd (a second autograd
  pass per class for the diagonal). Accurate to ~1e-13 relative where values are not tiny.
- :func:`decimal_binary` / :func:`decimal_softmax`: the focal loss written from its definition
  in 150-digit ``decimal`` arithmetic and differentiated by central differences (step 1e-40 for
  the gradient, 1e-30 for the Hessian), exact to ~1e-40 relative however tiny the values. Slow:
  for a few dozen rows. It shares no code with focalkit.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

import focalkit

Array = NDArray[np.float64]
CONTEXT = decimal.Context(prec=150, Emin=-999999, Emax=999999)
D = CONTEXT.create_decimal


def torch_binary(
    margin: Array, label: Array, gamma: float, alpha: float | None
) -> tuple[Array, Array]:
    x = torch.tensor(margin, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(label, dtype=torch.float64)
    loss = focalkit.sigmoid_focal_loss(x, y, reduction="sum", gamma=gamma, alpha=alpha)
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    (hess,) = torch.autograd.grad(grad.sum(), x)  # rows are independent: the diagonal
    return grad.detach().numpy(), hess.numpy()


def torch_softmax(
    margins: Array, label: NDArray[np.int64], gamma: float, alpha: object
) -> tuple[Array, Array]:
    z = torch.tensor(margins, dtype=torch.float64, requires_grad=True)
    alpha_arg = torch.tensor(alpha, dtype=torch.float64) if isinstance(alpha, list) else alpha
    loss = focalkit.softmax_focal_loss(
        z, torch.tensor(label), reduction="sum", gamma=gamma, alpha=alpha_arg
    )
    (grad,) = torch.autograd.grad(loss, z, create_graph=True)
    hess = np.empty_like(margins)
    for k in range(margins.shape[1]):
        (row,) = torch.autograd.grad(grad[:, k].sum(), z, retain_graph=True)
        hess[:, k] = row[:, k].numpy()
    return grad.detach().numpy(), hess


def _derivatives(f: Callable[[decimal.Decimal], decimal.Decimal], at: float) -> tuple[float, float]:
    with decimal.localcontext(CONTEXT):  # every operation in 150 digits
        x = D(at)
        h1, h2 = D("1e-40"), D("1e-30")
        first = (f(x + h1) - f(x - h1)) / (2 * h1)
        second = (f(x + h2) - 2 * f(x) + f(x - h2)) / (h2 * h2)
        return float(first), float(second)


def _power(base: decimal.Decimal, gamma: float) -> decimal.Decimal:
    return D(1) if gamma == 0 else CONTEXT.exp(D(gamma) * CONTEXT.ln(base))


def decimal_binary(
    margin: float, label: int, gamma: float, alpha: float | None
) -> tuple[float, float]:
    """``(dl/dx, d2l/dx2)`` of ``alpha_t (1 - p_t)^gamma (-log p_t)``, p_t = sigmoid(+-x)."""
    alpha_t = D(1) if alpha is None else (D(alpha) if label == 1 else 1 - D(alpha))

    def loss(x: decimal.Decimal) -> decimal.Decimal:
        u = x if label == 1 else -x
        p_t = 1 / (1 + CONTEXT.exp(-u))
        one_minus_pt = 1 / (1 + CONTEXT.exp(u))
        return -alpha_t * _power(one_minus_pt, gamma) * CONTEXT.ln(p_t)

    return _derivatives(loss, margin)


def decimal_softmax(
    margins: Sequence[float], label: int, gamma: float, alpha: float | Sequence[float] | None
) -> tuple[Array, Array]:
    """Gradient and Hessian diagonal of ``-alpha_t (1 - p_t)^gamma log p_t``, p = softmax."""
    if alpha is None:
        alpha_t = D(1)
    elif isinstance(alpha, float):
        alpha_t = D(alpha)
    else:
        alpha_t = D(alpha[label])
    grad, hess = np.empty(len(margins)), np.empty(len(margins))
    for j in range(len(margins)):

        def loss(zj: decimal.Decimal, j: int = j) -> decimal.Decimal:
            z = [zj if k == j else D(v) for k, v in enumerate(margins)]
            exps = [CONTEXT.exp(v) for v in z]
            total = sum(exps, D(0))
            others = sum((e for k, e in enumerate(exps) if k != label), D(0))
            log_pt = z[label] - CONTEXT.ln(total)
            return -alpha_t * _power(others / total, gamma) * log_pt

        grad[j], hess[j] = _derivatives(loss, margins[j])
    return grad, hess
