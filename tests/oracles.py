"""Slow, obvious float64 reference implementations ("oracles") of the focal losses.

Each oracle follows its definition one element at a time in float64 NumPy, on purpose: it shares
no code with focalkit and uses none of torch's losses, so agreement with it means something. The
only torch code here is :func:`torchvision_sigmoid_focal_loss`, a transcription of torchvision's
published formula, and :func:`finite_difference_grad`, which works on torch tensors.

Reductions: ``'none'`` returns the per-element array, ``'sum'`` its sum and ``'mean'`` what each
oracle's docstring says; every result is float64 NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

Array = NDArray[np.float64]
PerClass = float | Sequence[float] | NDArray[Any] | torch.Tensor | None

REDUCTIONS = ("none", "mean", "sum")


def _to_numpy(value: Any, dtype: type = np.float64) -> NDArray[Any]:
    """A NumPy copy of an array-like or a torch tensor (detached, on the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64 if dtype is np.float64 else value.dtype)
        value = value.numpy()
    return np.array(value, dtype=dtype)


def _per_class_value(values: PerClass, c: int) -> float:
    """``values[c]``, a scalar applied to every class, or 1 for ``None``."""
    if values is None:
        return 1.0
    array = _to_numpy(values)
    if array.ndim == 0:
        return float(array)
    return float(array[c])


def _reduce(losses: Array, reduction: str, divisor: float) -> Array:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.asarray(losses.sum(), dtype=np.float64)
    if reduction == "mean":  # the mean of nothing (no weight kept) is nan, as in PyTorch
        return np.asarray(losses.sum() / divisor if divisor else math.nan, dtype=np.float64)
    raise ValueError(f"oracle: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _log_softmax(z: Array) -> list[float]:
    """``log softmax(z)`` for one vector, stably: subtract the maximum first.

    The normaliser is ``1 + s`` with ``s`` the sum over every class but the (first) largest, and
    ``log1p(s)`` keeps ``log p`` of a confident class exact where ``log(1 + s)`` rounds to 0.
    """
    values = [float(v) for v in z]
    top_index = max(range(len(values)), key=lambda k: values[k])
    top = values[top_index]
    rest = sum(math.exp(v - top) for k, v in enumerate(values) if k != top_index)
    log_total = math.log1p(rest)
    return [v - top - log_total for v in values]


def _one_minus(log_p: list[float], c: int) -> float:
    """``1 - p_c`` as the sum of the other probabilities: no cancellation when ``p_c`` is near 1."""
    return sum(math.exp(value) for k, value in enumerate(log_p) if k != c)


def _softmax_element(
    log_p: list[float], q: list[float], alpha: PerClass, weight: PerClass, gamma: float
) -> float:
    """``-sum_c q_c alpha_c w_c (1 - p_c)^gamma log p_c`` for one element."""
    total = 0.0
    for c, (log_pc, qc) in enumerate(zip(log_p, q, strict=True)):
        if qc == 0.0:  # the term is 0; skipping it keeps 0 * inf out when log p_c = -inf
            continue
        a = _per_class_value(alpha, c)
        w = _per_class_value(weight, c)
        total += -qc * a * w * _one_minus(log_p, c) ** gamma * log_pc
    return total


def _class_slice(index: tuple[int, ...]) -> tuple[Any, ...]:
    """The index of the class vector ``logits[n, :, d1, ..., dk]`` for ``index = (n, d1..dk)``."""
    return (index[0], slice(None), *index[1:])


def softmax_focal_oracle(
    logits: Any,
    target: Any,
    *,
    gamma: Any,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Array:
    """Softmax focal loss for class-index targets, one element at a time in float64.

    ``logits`` is ``(N, C)`` or ``(N, C, d1, ..., dk)`` and ``target`` ``(N)`` or
    ``(N, d1, ..., dk)``. For element ``n`` with target ``t``, ``p = softmax(logits[n])`` and
    ``q = (1 - label_smoothing) * onehot(t) + label_smoothing / C``::

        loss_n = -sum_c q_c * alpha_c * w_c * (1 - p_c)**gamma * log(p_c)

    ``alpha`` is ``None`` (1), a float applied to every class, or one value per class; ``weight``
    is ``None`` or one value per class. Elements whose target is ``ignore_index`` contribute 0.
    ``'mean'`` divides the summed loss by ``sum(weight[t])`` over the elements not ignored (their
    count if ``weight`` is ``None``); alpha never enters the divisor. ``gamma`` is a float or one
    value per element (broadcastable to the target's shape). ``1 - p_c`` is the sum of the other
    classes' probabilities and ``log p`` uses ``log1p``, so confident elements keep their digits.
    """
    x = _to_numpy(logits)
    t = _to_numpy(target, np.int64)
    gammas = _broadcast(gamma, t.shape)
    num_classes = x.shape[1]
    if t.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"oracle: target shape {t.shape} does not fit logits {x.shape}")
    losses = np.zeros(t.shape, dtype=np.float64)
    divisor = 0.0
    for index in np.ndindex(t.shape):
        c = int(t[index])
        if c == ignore_index:
            continue
        log_p = _log_softmax(x[_class_slice(index)])
        q = [
            (1.0 - label_smoothing) * (1.0 if k == c else 0.0) + label_smoothing / num_classes
            for k in range(num_classes)
        ]
        losses[index] = _softmax_element(log_p, q, alpha, weight, float(gammas[index]))
        divisor += _per_class_value(weight, c)
    return _reduce(losses, reduction, divisor)


def softmax_focal_prob_oracle(
    logits: Any,
    target_probs: Any,
    *,
    gamma: Any,
    alpha: PerClass = None,
    weight: PerClass = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Array:
    """Softmax focal loss for probability targets (the logits' shape), in float64.

    ``q = target * (1 - label_smoothing) + label_smoothing / C`` and the per-element loss is the
    sum of :func:`softmax_focal_oracle`. ``'mean'`` divides by the number of elements
    ``N * d1 * ... * dk``, not by weights, as ``F.cross_entropy`` does for probability targets.
    """
    x = _to_numpy(logits)
    y = _to_numpy(target_probs)
    if y.shape != x.shape:
        raise ValueError(f"oracle: target shape {y.shape} differs from logits {x.shape}")
    num_classes = x.shape[1]
    element_shape = (x.shape[0], *x.shape[2:])
    gammas = _broadcast(gamma, element_shape)
    losses = np.zeros(element_shape, dtype=np.float64)
    for index in np.ndindex(element_shape):
        log_p = _log_softmax(x[_class_slice(index)])
        q = [
            float(v) * (1.0 - label_smoothing) + label_smoothing / num_classes
            for v in y[_class_slice(index)]
        ]
        losses[index] = _softmax_element(log_p, q, alpha, weight, float(gammas[index]))
    return _reduce(losses, reduction, float(losses.size))


def _log_sigmoid(x: float) -> float:
    """``log(sigmoid(x))`` without overflow for either sign of ``x``."""
    if x >= 0:
        return -math.log1p(math.exp(-x))
    return x - math.log1p(math.exp(x))


def _alpha_t(alpha: float | None, y: float) -> float:
    if alpha is None:
        return 1.0
    return alpha * y + (1.0 - alpha) * (1.0 - y)


def _broadcast(value: Any, shape: tuple[int, ...]) -> Array:
    if value is None:
        return np.ones(shape, dtype=np.float64)
    return np.broadcast_to(_to_numpy(value), shape)


def sigmoid_focal_oracle(
    logits: Any,
    target: Any,
    *,
    gamma: Any,
    alpha: Any = 0.25,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> Array:
    """Sigmoid focal loss on logits, element by element in float64.

    With ``p = sigmoid(x)``, ``log p`` and ``log(1 - p)`` computed stably from the logit::

        bce     = -w * (pos_weight * y * log(p) + (1 - y) * log(1 - p))
        p_t     = p * y + (1 - p) * (1 - y)
        alpha_t = alpha * y + (1 - alpha) * (1 - y)        (1 when alpha is None)
        loss    = alpha_t * (1 - p_t)**gamma * bce

    ``weight`` and ``pos_weight`` broadcast to the logits as in ``BCEWithLogitsLoss`` (a 1-D
    ``pos_weight`` runs along the last dimension). ``alpha`` and ``gamma`` are floats or
    broadcast to the logits likewise. ``'mean'`` is the mean over all elements. ``1 - p_t`` is
    ``y (1 - p) + (1 - y) p`` with both probabilities from the logit, exact in the tails.
    """
    x = _to_numpy(logits)
    y = _to_numpy(target)
    w = _broadcast(weight, x.shape)
    pw = _broadcast(pos_weight, x.shape)
    gammas = _broadcast(gamma, x.shape)
    alphas = None if alpha is None else _broadcast(alpha, x.shape)
    losses = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        xi, yi = float(x[index]), float(y[index])
        log_p, log_1mp = _log_sigmoid(xi), _log_sigmoid(-xi)
        bce = -float(w[index]) * (float(pw[index]) * yi * log_p + (1.0 - yi) * log_1mp)
        # 1 - p_t = y (1 - p) + (1 - y) p, a sum of non-negative terms for y in [0, 1]
        one_minus_pt = yi * math.exp(log_1mp) + (1.0 - yi) * math.exp(log_p)
        a = None if alphas is None else float(alphas[index])
        losses[index] = _alpha_t(a, yi) * one_minus_pt ** float(gammas[index]) * bce
    return _reduce(losses, reduction, float(losses.size))


def _clamped_log(value: float) -> float:
    """``max(log(value), -100)``, ``log(0)`` included, as ``F.binary_cross_entropy`` clamps."""
    if value <= 0.0:
        return -100.0
    return max(math.log(value), -100.0)


def binary_focal_oracle(
    probs: Any,
    target: Any,
    *,
    gamma: float,
    alpha: Any = 0.25,
    weight: Any = None,
    reduction: str = "mean",
) -> Array:
    """Binary focal loss on probabilities, element by element in float64.

    As :func:`sigmoid_focal_oracle` with ``p`` given directly and no ``pos_weight`` (``alpha``
    a float or broadcast to the input); each log is
    clamped at -100 as ``F.binary_cross_entropy`` does::

        bce  = -w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))
        loss = alpha_t * (1 - p_t)**gamma * bce
    """
    p_all = _to_numpy(probs)
    y = _to_numpy(target)
    w = _broadcast(weight, p_all.shape)
    alphas = None if alpha is None else _broadcast(alpha, p_all.shape)
    losses = np.zeros(p_all.shape, dtype=np.float64)
    for index in np.ndindex(p_all.shape):
        p, yi = float(p_all[index]), float(y[index])
        bce = -float(w[index]) * (yi * _clamped_log(p) + (1.0 - yi) * _clamped_log(1.0 - p))
        one_minus_pt = yi * (1.0 - p) + (1.0 - yi) * p
        a = None if alphas is None else float(alphas[index])
        losses[index] = _alpha_t(a, yi) * one_minus_pt**gamma * bce
    return _reduce(losses, reduction, float(losses.size))


def torchvision_sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2,
    reduction: str = "none",
) -> torch.Tensor:
    """``torchvision.ops.sigmoid_focal_loss``, its published formula written out in torch.

    torchvision cannot be imported beside the CPU build of torch installed here (its wheels pin
    a matching torch build), so the formula of ``torchvision/ops/focal_loss.py`` is transcribed
    instead, keeping its argument names: ``p = sigmoid(inputs)``, ``ce`` the unreduced
    ``binary_cross_entropy_with_logits``, ``p_t = p t + (1 - p)(1 - t)``,
    ``loss = ce (1 - p_t)**gamma``, then ``alpha_t = alpha t + (1 - alpha)(1 - t)`` multiplies it
    when ``alpha >= 0`` (a negative ``alpha`` turns the weighting off). An unknown ``reduction``
    raises ``ValueError``, as current torchvision does.
    """
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(
        f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: "
        "'none', 'mean', 'sum'"
    )


def finite_difference_grad(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` in float64.

    ``fn`` maps a float64 tensor shaped like ``x`` to a scalar; the result has ``x``'s shape.
    """
    if x.dtype != torch.float64:
        raise TypeError(f"finite_difference_grad(): x must be float64, got {x.dtype}")
    base = x.detach().clone(memory_format=torch.contiguous_format)
    grad = torch.zeros_like(base)
    flat_base, flat_grad = base.view(-1), grad.view(-1)
    with torch.no_grad():
        for i in range(flat_base.numel()):
            original = flat_base[i].item()
            flat_base[i] = original + eps
            upper = float(fn(base))
            flat_base[i] = original - eps
            lower = float(fn(base))
            flat_base[i] = original
            flat_grad[i] = (upper - lower) / (2.0 * eps)
    return grad


# ------------------------------------------------ float64 torch formulas, for autograd gradients
#
# The same definitions once more, written with plain torch operations in float64 so that autograd
# gives their gradients (the NumPy oracles above give values only). Each is checked against its
# NumPy oracle and against finite differences in ``test_oracles.py``. Every probability comes
# from the logits in log space, so the values and gradients keep their digits in the tails.


def _as_float64(value: Any, like: torch.Tensor) -> torch.Tensor | None:
    if value is None:
        return None
    return torch.as_tensor(value, dtype=torch.float64, device=like.device)


def _class_view(per_class: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(C,)`` viewed as ``(1, C, 1, ..., 1)`` for an input of ``ndim`` dimensions."""
    return per_class.reshape(1, -1, *([1] * (ndim - 2)))


def log_softmax_and_complement(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p_c`` and ``log(1 - p_c)`` along dimension 1, both from the logits.

    With ``d_c = log sum_{j != c} exp(x_j - x_c)``: ``p_c = 1 / (1 + e^{d_c})``, so
    ``log p_c = -log(1 + e^{d_c})`` and ``log(1 - p_c) = d_c - log(1 + e^{d_c})``. Needs C >= 2.
    """
    differences = x.unsqueeze(1) - x.unsqueeze(2)  # [n, c, j, ...] = x_j - x_c
    num_classes = x.shape[1]
    diagonal = torch.eye(num_classes, dtype=torch.bool, device=x.device)
    diagonal = diagonal.reshape(1, num_classes, num_classes, *([1] * (x.dim() - 2)))
    masked = torch.where(diagonal, torch.full_like(differences, -math.inf), differences)
    d = torch.logsumexp(masked, dim=2)
    log_p = -torch.logaddexp(torch.zeros_like(d), d)
    return log_p, d + log_p


def _softmax_parts(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float | torch.Tensor,
    alpha: PerClass,
    weight: PerClass,
    ignore_index: int,
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``q_c alpha_c w_c``, ``log p_c``, ``(1 - p_c)^gamma``, the ``'mean'`` divisor and which
    elements are kept (not ``ignore_index``)."""
    x = logits.to(torch.float64)
    num_classes = x.shape[1]
    coef = torch.ones(num_classes, dtype=torch.float64, device=x.device)
    for factor in (_as_float64(alpha, x), _as_float64(weight, x)):
        if factor is not None:
            coef = coef * factor
    if target.is_floating_point():
        q = target.to(torch.float64)
        divisor = torch.tensor(float(q[:, 0].numel()), dtype=torch.float64)
        kept = torch.ones_like(q[:, 0], dtype=torch.bool)
    else:
        index = target.to(torch.int64)
        kept = index != ignore_index
        safe = torch.where(kept, index, torch.zeros_like(index))
        q = F.one_hot(safe, num_classes).movedim(-1, 1).to(torch.float64)
        q = q * kept.unsqueeze(1)
        w = _as_float64(weight, x)
        divisor = kept.sum().to(torch.float64) if w is None else (w[safe] * kept).sum()
    if label_smoothing:  # an ignored element keeps q = 0
        mass = 1.0 if target.is_floating_point() else q.sum(1, keepdim=True)
        q = q * (1.0 - label_smoothing) + mass * (label_smoothing / num_classes)
    log_p, log_1mp = log_softmax_and_complement(x)
    g = _as_float64(gamma, x)
    assert g is not None
    if g.dim() > 0:
        g = g.unsqueeze(1)  # one gamma per element: along every class
    return q * _class_view(coef, x.dim()), log_p, torch.exp(g * log_1mp), divisor, kept


def softmax_focal_error_scale(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float | torch.Tensor,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """How far an error of 1 in every ``log p_c`` moves the loss: ``sum_c q_c |alpha_c w_c|
    (1 - p_c)^gamma`` per element, reduced like the loss (``'mean'`` by the same divisor).

    ``log_softmax`` in a floating dtype carries an absolute error of a few ``eps`` in ``log p``
    (``log p`` of a confident class rounds to 0), which is as close as ``F.cross_entropy`` itself
    gets; ``eps`` times this scale is that error carried through the focal loss.
    """
    unbatched = logits.dim() == 1
    if unbatched:
        logits, target = logits.unsqueeze(0), target.unsqueeze(0)
    weighted_q, _, focal, divisor, _ = _softmax_parts(
        logits, target, gamma, alpha, weight, ignore_index, label_smoothing
    )
    per_element = (weighted_q.abs() * focal).sum(1)
    if reduction == "none":
        return per_element.squeeze(0) if unbatched else per_element
    if reduction == "sum":
        return per_element.sum()
    return per_element.sum() / divisor.abs()


def softmax_focal_reference(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float | torch.Tensor,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`softmax_focal_oracle` (integer ``target``) or :func:`softmax_focal_prob_oracle`
    (floating ``target``) as a float64 torch formula; ``(C,)`` input is one unbatched element."""
    if logits.dim() == 1:
        loss = softmax_focal_reference(
            logits.unsqueeze(0),
            target.unsqueeze(0),
            gamma=gamma,
            alpha=alpha,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            reduction=reduction,
        )
        return loss.squeeze(0) if reduction == "none" else loss
    weighted_q, log_p, focal, divisor, kept = _softmax_parts(
        logits, target, gamma, alpha, weight, ignore_index, label_smoothing
    )
    terms = weighted_q * focal * log_p
    per_element = -torch.where(weighted_q == 0, torch.zeros_like(terms), terms).sum(1)
    if reduction == "none":
        return per_element
    if reduction == "sum":
        return per_element.sum()
    return _mean(per_element, divisor, logits[kept.unsqueeze(1).expand_as(logits)])


def _mean(
    per_element: torch.Tensor, divisor: torch.Tensor, kept_inputs: torch.Tensor
) -> torch.Tensor:
    """``sum / divisor``. A zero divisor gives ``nan`` with, as ``F.cross_entropy`` and
    ``F.nll_loss``, ``nan`` gradients for the inputs in ``kept_inputs`` (the kept elements' logits,
    or their target log-probabilities, all of weight 0) and 0 for the others."""
    if divisor != 0:
        return per_element.sum() / divisor
    return (kept_inputs * math.nan).sum() + math.nan


def _power(u: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``u**gamma`` whose slope at ``u = 0`` is 0 (autograd's is ``inf * 0`` for ``gamma < 1``):
    where ``u`` is 0 (``log p`` rounded to 0, or ``1 - p`` underflowed) the focal term is 0 to
    first order, and so is its derivative."""
    positive = u > 0
    safe = torch.where(positive, u, torch.ones_like(u))
    at_zero = (gamma == 0).to(torch.float64)  # 0**0 = 1
    return torch.where(positive, safe**gamma, at_zero)


def nll_focal_reference(
    log_probs: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """``-alpha_t w_t (1 - e^s)^gamma s`` with ``s = log_probs[n, t]``, in float64; ``'mean'``
    divides by the kept weights, as ``F.nll_loss``."""
    s = log_probs.to(torch.float64)
    if s.dim() == 1:
        s, target = s.unsqueeze(0), target.unsqueeze(0)
    num_classes = s.shape[1]
    coef = torch.ones(num_classes, dtype=torch.float64)
    for factor in (_as_float64(alpha, s), _as_float64(weight, s)):
        if factor is not None:
            coef = coef * factor
    index = target.to(torch.int64)
    kept = index != ignore_index
    safe = torch.where(kept, index, torch.zeros_like(index))
    s_t = s.gather(1, safe.unsqueeze(1)).squeeze(1)
    focal = _power(-torch.expm1(s_t), torch.as_tensor(gamma, dtype=torch.float64))
    per_element = -coef[safe] * focal * s_t * kept
    w = _as_float64(weight, s)
    divisor = kept.sum().to(torch.float64) if w is None else (w[safe] * kept).sum()
    if log_probs.dim() == 1 and reduction == "none":
        return per_element.squeeze(0)
    if reduction == "none":
        return per_element
    return per_element.sum() if reduction == "sum" else _mean(per_element, divisor, s_t[kept])


def _alpha_t_tensor(alpha: Any, y: torch.Tensor) -> torch.Tensor | float:
    a = _as_float64(alpha, y)
    return 1.0 if a is None else a * y + (1.0 - a) * (1.0 - y)


def _reduce_elementwise(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def sigmoid_focal_reference(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float | torch.Tensor,
    alpha: Any = 0.25,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`sigmoid_focal_oracle` as a float64 torch formula (differentiable in ``target`` too).

    ``1 - p_t = y sigmoid(-x) + (1 - y) sigmoid(x)``, each from ``logsigmoid``."""
    x = logits.to(torch.float64)
    y = target.to(torch.float64)
    log_p, log_1mp = F.logsigmoid(x), F.logsigmoid(-x)
    pw = _as_float64(pos_weight, x)
    bce = -((1.0 if pw is None else pw) * y * log_p + (1.0 - y) * log_1mp)
    w = _as_float64(weight, x)
    if w is not None:
        bce = bce * w
    one_minus_pt = y * log_1mp.exp() + (1.0 - y) * log_p.exp()
    g = _as_float64(gamma, x)
    assert g is not None
    focal = _power(one_minus_pt, g)
    loss = _alpha_t_tensor(alpha, y) * focal * bce
    return _reduce_elementwise(loss, reduction)


def binary_focal_reference(
    probs: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float,
    alpha: Any = 0.25,
    weight: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`binary_focal_oracle` as a float64 torch formula, logs clamped at -100."""
    p = probs.to(torch.float64)
    y = target.to(torch.float64)
    bce = -(y * p.log().clamp_min(-100.0) + (1.0 - y) * (1.0 - p).log().clamp_min(-100.0))
    w = _as_float64(weight, p)
    if w is not None:
        bce = bce * w
    one_minus_pt = y * (1.0 - p) + (1.0 - y) * p
    loss = _alpha_t_tensor(alpha, y) * one_minus_pt**gamma * bce
    return _reduce_elementwise(loss, reduction)
