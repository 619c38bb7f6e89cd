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


# ------------------------------------------------------------------------------ the focal family
#
# PolyLoss, asymmetric loss, varifocal loss, quality and distribution focal loss, logit adjustment
# and LDAM, each from its paper's formula: first element by element in float64 NumPy, then as a
# float64 torch formula (for autograd gradients), then the peers' published formulas re-typed.


def _is_probability_target(target: Any) -> bool:
    """A floating target holds class probabilities; an integer one holds class indices."""
    if isinstance(target, torch.Tensor):
        return bool(target.is_floating_point())
    return bool(np.issubdtype(np.asarray(target).dtype, np.floating))


def _poly_softmax_element(
    log_p: list[float],
    q: list[float],
    alpha: PerClass,
    weight: PerClass,
    gamma: float,
    epsilon: float,
) -> float:
    """``sum_c q_c alpha_c w_c [-(1 - p_c)^gamma log p_c + epsilon (1 - p_c)^(gamma + 1)]``."""
    total = 0.0
    for c, (log_pc, qc) in enumerate(zip(log_p, q, strict=True)):
        if qc == 0.0:
            continue
        coefficient = qc * _per_class_value(alpha, c) * _per_class_value(weight, c)
        one_minus = _one_minus(log_p, c)
        total += coefficient * (-(one_minus**gamma) * log_pc + epsilon * one_minus ** (gamma + 1.0))
    return total


def poly_softmax_oracle(
    logits: Any,
    target: Any,
    *,
    epsilon: float,
    gamma: float = 0.0,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Array:
    """Poly-1 softmax focal loss (Leng et al. 2022), one element at a time in float64.

    ``logits`` is ``(N, C, d1, ..., dk)``; ``target`` holds class indices (integer, the logits'
    shape without ``C``) or class probabilities (floating, the logits' shape). With
    ``p = softmax(logits[n])`` and ``q`` the (smoothed) target distribution::

        loss_n = sum_c q_c alpha_c w_c [-(1 - p_c)**gamma log p_c + epsilon (1 - p_c)**(gamma+1)]

    ``'mean'`` divides as :func:`softmax_focal_oracle` (summed ``weight[t]`` of the elements not
    ignored) for class indices and as :func:`softmax_focal_prob_oracle` (the element count) for
    probabilities. ``epsilon = 0`` is the softmax focal oracle.
    """
    x = _to_numpy(logits)
    num_classes = x.shape[1]
    element_shape = (x.shape[0], *x.shape[2:])
    losses = np.zeros(element_shape, dtype=np.float64)
    if _is_probability_target(target):
        y = _to_numpy(target)
        if y.shape != x.shape:
            raise ValueError(f"oracle: target shape {y.shape} differs from logits {x.shape}")
        for index in np.ndindex(element_shape):
            q = [
                float(v) * (1.0 - label_smoothing) + label_smoothing / num_classes
                for v in y[_class_slice(index)]
            ]
            log_p = _log_softmax(x[_class_slice(index)])
            losses[index] = _poly_softmax_element(log_p, q, alpha, weight, gamma, epsilon)
        return _reduce(losses, reduction, float(losses.size))
    t = _to_numpy(target, np.int64)
    if t.shape != element_shape:
        raise ValueError(f"oracle: target shape {t.shape} does not fit logits {x.shape}")
    divisor = 0.0
    for index in np.ndindex(element_shape):
        c = int(t[index])
        if c == ignore_index:
            continue
        q = [
            (1.0 - label_smoothing) * (1.0 if k == c else 0.0) + label_smoothing / num_classes
            for k in range(num_classes)
        ]
        log_p = _log_softmax(x[_class_slice(index)])
        losses[index] = _poly_softmax_element(log_p, q, alpha, weight, gamma, epsilon)
        divisor += _per_class_value(weight, c)
    return _reduce(losses, reduction, divisor)


def _sigmoid_parts(x: float) -> tuple[float, float, float, float]:
    """``log p``, ``log(1 - p)``, ``p`` and ``1 - p`` for ``p = sigmoid(x)``, all from the logit."""
    log_p, log_1mp = _log_sigmoid(x), _log_sigmoid(-x)
    return log_p, log_1mp, math.exp(log_p), math.exp(log_1mp)


def _elementwise(
    logits: Any, target: Any, weight: Any, element: Callable[[float, float], float]
) -> Array:
    """``weight * element(x, y)`` over every element, ``weight`` broadcast to the logits."""
    x = _to_numpy(logits)
    y = np.broadcast_to(_to_numpy(target), x.shape)
    w = _broadcast(weight, x.shape)
    losses = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        losses[index] = float(w[index]) * element(float(x[index]), float(y[index]))
    return losses


def poly_sigmoid_oracle(
    logits: Any,
    target: Any,
    *,
    epsilon: float,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: Any = None,
    reduction: str = "mean",
) -> Array:
    """Poly-1 sigmoid focal loss, element by element in float64::

        loss = w alpha_t [ (1 - p_t)**gamma BCE + epsilon (1 - p_t)**(gamma + 1) ]

    with ``BCE = -(y log p + (1 - y) log(1 - p))``, ``1 - p_t = y (1 - p) + (1 - y) p`` and
    ``alpha_t = alpha y + (1 - alpha)(1 - y)`` (1 for ``alpha=None``); ``'mean'`` over every
    element. ``epsilon = 0`` is :func:`sigmoid_focal_oracle` without ``pos_weight``.
    """

    def element(x: float, y: float) -> float:
        log_p, log_1mp, p, one_minus_p = _sigmoid_parts(x)
        bce = -(y * log_p + (1.0 - y) * log_1mp)
        one_minus_pt = y * one_minus_p + (1.0 - y) * p
        focal = one_minus_pt**gamma * bce + epsilon * one_minus_pt ** (gamma + 1.0)
        return _alpha_t(alpha, y) * focal

    losses = _elementwise(logits, target, weight, element)
    return _reduce(losses, reduction, float(losses.size))


def asymmetric_oracle(
    logits: Any,
    target: Any,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    weight: Any = None,
    reduction: str = "mean",
) -> Array:
    """Asymmetric loss (Ridnik et al. 2021), element by element in float64::

        p_m  = max(p - clip, 0)
        loss = w [ -y (1 - p)**gamma_pos log p - (1 - y) p_m**gamma_neg log(1 - p_m) ]

    The negative term is 0 where ``p <= clip``; elsewhere ``1 - p_m = (1 - p) + clip`` with
    ``1 - p`` from the logit, so no digit is lost when ``p`` is near 1. ``'mean'`` over every
    element.
    """

    def element(x: float, y: float) -> float:
        log_p, log_1mp, p, one_minus_p = _sigmoid_parts(x)
        positive = 0.0 if y == 0.0 else -y * one_minus_p**gamma_pos * log_p
        negative = 0.0
        if y != 1.0 and p > clip:
            p_m = p - clip
            log_1m_pm = log_1mp if clip == 0.0 else math.log(one_minus_p + clip)
            negative = -(1.0 - y) * p_m**gamma_neg * log_1m_pm
        return positive + negative

    losses = _elementwise(logits, target, weight, element)
    return _reduce(losses, reduction, float(losses.size))


def varifocal_oracle(
    logits: Any,
    target: Any,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    weight: Any = None,
    reduction: str = "mean",
) -> Array:
    """Varifocal loss (Zhang et al. 2021), element by element in float64::

        loss = -w q (q log p + (1 - q) log(1 - p))     where q > 0
        loss = -w alpha p**gamma log(1 - p)            where q = 0

    ``q`` is the IoU-aware target in [0, 1]; ``'mean'`` over every element.
    """

    def element(x: float, q: float) -> float:
        log_p, log_1mp, p, _ = _sigmoid_parts(x)
        if q > 0.0:
            return -q * (q * log_p + (1.0 - q) * log_1mp)
        return -alpha * p**gamma * log_1mp

    losses = _elementwise(logits, target, weight, element)
    return _reduce(losses, reduction, float(losses.size))


def quality_focal_oracle(
    logits: Any, target: Any, *, beta: float = 2.0, weight: Any = None, reduction: str = "mean"
) -> Array:
    """Quality focal loss (Li et al. 2020), element by element in float64::

        loss = -w |y - p|**beta ((1 - y) log(1 - p) + y log p)

    ``|y - p|`` is taken as ``|y (1 - p) - (1 - y) p|``, exact for hard labels in the tails.
    ``'mean'`` over every element.
    """

    def element(x: float, y: float) -> float:
        log_p, log_1mp, p, one_minus_p = _sigmoid_parts(x)
        distance = abs(y * one_minus_p - (1.0 - y) * p)
        return -(distance**beta) * ((1.0 - y) * log_1mp + y * log_p)

    losses = _elementwise(logits, target, weight, element)
    return _reduce(losses, reduction, float(losses.size))


def distribution_focal_oracle(
    logits: Any, target: Any, *, weight: Any = None, reduction: str = "mean"
) -> Array:
    """Distribution focal loss (Li et al. 2020), one sample at a time in float64.

    ``logits`` is ``(N, n + 1)`` over the bins ``0..n``, ``target`` ``(N,)`` reals in
    ``[0, n]``, ``weight`` one per sample. With ``l = min(floor(y), n - 1)`` and ``r = l + 1``::

        loss_i = w_i [ (r - y) CE(x_i, l) + (y - l) CE(x_i, r) ]

    ``'mean'`` divides by ``N``.
    """
    x = _to_numpy(logits)
    y = _to_numpy(target)
    n = x.shape[1] - 1
    w = _broadcast(weight, y.shape)
    losses = np.zeros(y.shape, dtype=np.float64)
    for i in range(y.shape[0]):
        yi = float(y[i])
        if not 0.0 <= yi <= n:
            raise ValueError(f"oracle: target {yi} outside [0, {n}]")
        left = min(math.floor(yi), n - 1)
        right = left + 1
        log_p = _log_softmax(x[i])
        losses[i] = float(w[i]) * (-(right - yi) * log_p[left] - (yi - left) * log_p[right])
    return _reduce(losses, reduction, float(losses.size))


def ldam_oracle(
    logits: Any,
    target: Any,
    margins: Any,
    *,
    scale: float = 30.0,
    gamma: float = 0.0,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """LDAM (Cao et al. 2019) with a focal factor, one element at a time in float64.

    For element ``n`` with target ``t`` (not ``ignore_index``), ``z = scale * x`` except
    ``z_t = scale * (x_t - margins[t])``; ``p = softmax(z)`` and
    ``loss_n = -alpha_t w_t (1 - p_t)**gamma log p_t``. ``'mean'`` divides by the summed
    ``weight[t]`` of the elements not ignored, as ``F.cross_entropy``.
    """
    x = _to_numpy(logits)
    t = _to_numpy(target, np.int64)
    m = _to_numpy(margins)
    losses = np.zeros(t.shape, dtype=np.float64)
    divisor = 0.0
    for index in np.ndindex(t.shape):
        c = int(t[index])
        if c == ignore_index:
            continue
        z = [scale * float(v) for v in x[_class_slice(index)]]
        z[c] = scale * (float(x[_class_slice(index)][c]) - float(m[c]))
        log_p = _log_softmax(np.asarray(z))
        coefficient = _per_class_value(alpha, c) * _per_class_value(weight, c)
        losses[index] = -coefficient * _one_minus(log_p, c) ** gamma * log_p[c]
        divisor += _per_class_value(weight, c)
    return _reduce(losses, reduction, divisor)


def logit_adjustment_oracle(counts: Sequence[float], tau: float = 1.0) -> list[float]:
    """``tau * log(n_c / sum_k n_k)`` for each class, one class at a time."""
    total = math.fsum(float(n) for n in counts)
    return [tau * math.log(float(n) / total) for n in counts]


def ldam_margins_oracle(counts: Sequence[float], max_margin: float = 0.5) -> list[float]:
    """``Delta_c = max_margin * (min_k n_k / n_c)**(1/4)``: proportional to ``n_c**(-1/4)``,
    the rarest class's margin ``max_margin``."""
    smallest = min(float(n) for n in counts)
    return [max_margin * (smallest / float(n)) ** 0.25 for n in counts]


# --------------------------------------------------- the focal family as float64 torch formulas


def poly_softmax_reference(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    epsilon: float,
    gamma: float = 0.0,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`poly_softmax_oracle` as a float64 torch formula; ``(C,)`` input is one element.

    ``(1 - p_c)^gamma`` and ``(1 - p_c)^(gamma + 1)`` both come from ``log(1 - p_c)`` taken from
    the logits (:func:`log_softmax_and_complement`)."""
    if logits.dim() == 1:
        loss = poly_softmax_reference(
            logits.unsqueeze(0),
            target.unsqueeze(0),
            epsilon=epsilon,
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
    _, log_1mp = log_softmax_and_complement(logits.to(torch.float64))
    terms = weighted_q * focal * (-log_p + epsilon * log_1mp.exp())
    per_element = torch.where(weighted_q == 0, torch.zeros_like(terms), terms).sum(1)
    if reduction == "none":
        return per_element
    if reduction == "sum":
        return per_element.sum()
    return _mean(per_element, divisor, logits[kept.unsqueeze(1).expand_as(logits)])


def ldam_reference(
    logits: torch.Tensor,
    target: torch.Tensor,
    margins: Any,
    *,
    scale: float = 30.0,
    gamma: float = 0.0,
    alpha: PerClass = None,
    weight: PerClass = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`ldam_oracle` as a float64 torch formula: :func:`softmax_focal_reference` on
    ``scale * (logits - margins[t] onehot(t))``, no margin where ``t`` is ``ignore_index``."""
    x = logits.to(torch.float64)
    index = target.to(torch.int64)
    kept = index != ignore_index
    safe = torch.where(kept, index, torch.zeros_like(index))
    margin = torch.as_tensor(margins, dtype=torch.float64)[safe] * kept
    one_hot = F.one_hot(safe, x.shape[1]).movedim(-1, 1).to(torch.float64)
    z = scale * (x - margin.unsqueeze(1) * one_hot)
    return softmax_focal_reference(
        z,
        target,
        gamma=gamma,
        alpha=alpha,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def _sigmoid_logs(
    logits: torch.Tensor, target: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = logits.to(torch.float64)
    y = torch.as_tensor(target, dtype=torch.float64).expand_as(x)
    return y, F.logsigmoid(x), F.logsigmoid(-x)


def _weighted(loss: torch.Tensor, weight: Any, reduction: str) -> torch.Tensor:
    w = _as_float64(weight, loss)
    return _reduce_elementwise(loss if w is None else loss * w, reduction)


def poly_sigmoid_reference(
    logits: torch.Tensor,
    target: Any,
    *,
    epsilon: float,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`poly_sigmoid_oracle` as a float64 torch formula."""
    y, log_p, log_1mp = _sigmoid_logs(logits, target)
    bce = -(y * log_p + (1.0 - y) * log_1mp)
    one_minus_pt = y * log_1mp.exp() + (1.0 - y) * log_p.exp()
    g = torch.as_tensor(gamma, dtype=torch.float64)
    loss = _power(one_minus_pt, g) * bce + epsilon * _power(one_minus_pt, g + 1.0)
    return _weighted(_alpha_t_tensor(alpha, y) * loss, weight, reduction)


def asymmetric_reference(
    logits: torch.Tensor,
    target: Any,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    weight: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`asymmetric_oracle` as a float64 torch formula: where ``p <= clip`` the negative
    term is the constant 0 (its gradient too)."""
    y, log_p, log_1mp = _sigmoid_logs(logits, target)
    p, one_minus_p = log_p.exp(), log_1mp.exp()
    positive = -y * _power(one_minus_p, torch.as_tensor(gamma_pos, dtype=torch.float64)) * log_p
    if clip == 0.0:
        p_m, log_1m_pm = p, log_1mp
    else:
        above = p > clip
        zero = torch.zeros_like(p)
        p_m = torch.where(above, p - clip, zero)
        log_1m_pm = torch.where(above, torch.log(one_minus_p + clip), zero)
    focal = _power(p_m, torch.as_tensor(gamma_neg, dtype=torch.float64))
    negative = -(1.0 - y) * focal * log_1m_pm
    return _weighted(positive + negative, weight, reduction)


def varifocal_reference(
    logits: torch.Tensor,
    target: Any,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    weight: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`varifocal_oracle` as a float64 torch formula."""
    q, log_p, log_1mp = _sigmoid_logs(logits, target)
    positive = -q * (q * log_p + (1.0 - q) * log_1mp)
    negative = -alpha * _power(log_p.exp(), torch.as_tensor(gamma, dtype=torch.float64)) * log_1mp
    return _weighted(torch.where(q > 0, positive, negative), weight, reduction)


def quality_focal_reference(
    logits: torch.Tensor,
    target: Any,
    *,
    beta: float = 2.0,
    weight: Any = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`quality_focal_oracle` as a float64 torch formula."""
    y, log_p, log_1mp = _sigmoid_logs(logits, target)
    distance = (y * log_1mp.exp() - (1.0 - y) * log_p.exp()).abs()
    factor = _power(distance, torch.as_tensor(beta, dtype=torch.float64))
    return _weighted(-factor * ((1.0 - y) * log_1mp + y * log_p), weight, reduction)


def distribution_focal_reference(
    logits: torch.Tensor, target: Any, *, weight: Any = None, reduction: str = "mean"
) -> torch.Tensor:
    """:func:`distribution_focal_oracle` as a float64 torch formula."""
    x = logits.to(torch.float64)
    y = torch.as_tensor(target, dtype=torch.float64)
    n = x.shape[1] - 1
    left = y.floor().clamp(max=n - 1).to(torch.int64)
    right = left + 1
    log_p = x.log_softmax(1)
    log_left = log_p.gather(1, left.unsqueeze(1)).squeeze(1)
    log_right = log_p.gather(1, right.unsqueeze(1)).squeeze(1)
    loss = -(right - y) * log_left - (y - left) * log_right
    return _weighted(loss, weight, reduction)


# ------------------------------------------------- the peers' published formulas, re-typed
#
# Each keeps its source's argument names and its quirks (clamps, in-place operations, reductions);
# the tests say where focalkit agrees with it and where, and why, it does not.


def timm_asymmetric_loss_multilabel(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma_neg: float = 4,
    gamma_pos: float = 1,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    disable_torch_grad_focal_loss: bool = False,
) -> torch.Tensor:
    """timm's ``AsymmetricLossMultiLabel.forward`` (``timm/loss/asymmetric_loss.py``, the form
    that returns the sum), as published but with ``torch.set_grad_enabled`` for the removed
    ``torch._C.set_grad_enabled``.

    Quirks kept: probabilities are clamped at ``eps`` before the log (a positive logit below
    ``log(eps) ~ -18.4`` gets a constant loss and no gradient); the focal weight is a power of
    ``1 - pt`` with the mixed exponent ``gamma_pos y + gamma_neg (1 - y)`` (for soft labels, not
    the paper's two terms); the loss is multiplied in place (``loss *= one_sided_w``); nothing is
    computed in float32 for half inputs (``eps = 1e-8`` rounds to 0 in float16).
    """
    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not disable_torch_grad_focal_loss):
            pt0 = xs_pos * y
            pt1 = xs_neg * (1 - y)  # pt = p if t > 0 else 1-p
            pt = pt0 + pt1
            one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
            one_sided_w = torch.pow(1 - pt, one_sided_gamma)
        loss *= one_sided_w
    return -loss.sum()


def mmdet_weight_reduce_loss(
    loss: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | None = None,
) -> torch.Tensor:
    """mmdetection's ``weight_reduce_loss`` (``mmdet/models/losses/utils.py``): multiply by
    ``weight``, then ``'mean'`` is ``loss.mean()`` (or ``sum / (avg_factor + eps32)``)."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        if reduction == "mean":
            return loss.mean()
        return loss.sum() if reduction == "sum" else loss
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    if reduction != "none":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    return loss


def mmdet_varifocal_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    reduction: str = "mean",
    avg_factor: float | None = None,
) -> torch.Tensor:
    """mmdetection's ``varifocal_loss`` (``mmdet/models/losses/varifocal_loss.py``)."""
    assert pred.size() == target.size()
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = (
            target * (target > 0.0).float()
            + alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
        )
    else:
        focal_weight = (target > 0.0).float() + alpha * (pred_sigmoid - target).abs().pow(gamma) * (
            target <= 0.0
        ).float()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return mmdet_weight_reduce_loss(loss, weight, reduction, avg_factor)


def mmdet_quality_focal_loss(
    pred: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor], beta: float = 2.0
) -> torch.Tensor:
    """mmdetection's ``quality_focal_loss`` (``mmdet/models/losses/gfocal_loss.py``) before its
    ``@weighted_loss`` decorator: ``target`` is ``(label, score)``, label ``C`` the background;
    returns ``(N,)``, each sample's loss summed over the classes."""
    label, score = target
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(
        beta
    )
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction="none"
    ) * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def mmdet_quality_focal_loss_tensor_target(
    pred: torch.Tensor, target: torch.Tensor, beta: float = 2.0
) -> torch.Tensor:
    """mmdetection 3.x's ``quality_focal_loss_tensor_target`` (logits, ``activated=False``):
    a dense ``(N, C)`` target; returns ``(N, 1)``, each sample's loss summed over the classes."""
    assert pred.size() == target.size()
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    target = target.type_as(pred)
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(
        beta
    )
    pos = target != 0
    scale_factor = target[pos] - pred_sigmoid[pos]
    loss[pos] = F.binary_cross_entropy_with_logits(
        pred[pos], target[pos], reduction="none"
    ) * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=True)


def mmdet_distribution_focal_loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """mmdetection's ``distribution_focal_loss`` before ``@weighted_loss``: ``(N,)``. A label of
    exactly ``n`` asks for bin ``n + 1``, which does not exist (``F.cross_entropy`` raises)."""
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.float() - label
    weight_right = label - dis_left.float()
    return (
        F.cross_entropy(pred, dis_left, reduction="none") * weight_left
        + F.cross_entropy(pred, dis_right, reduction="none") * weight_right
    )


def ultralytics_varifocal_loss(
    pred_score: torch.Tensor,
    gt_score: torch.Tensor,
    label: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
) -> torch.Tensor:
    """ultralytics' ``VarifocalLoss.forward`` (``ultralytics/utils/loss.py``): ``alpha`` weighs
    the negatives, as mmdetection's; the mean over the classes, summed over the batch."""
    weight = alpha * pred_score.sigmoid().pow(gamma) * (1 - label) + gt_score * label
    return (
        (
            F.binary_cross_entropy_with_logits(
                pred_score.float(), gt_score.float(), reduction="none"
            )
            * weight
        )
        .mean(1)
        .sum()
    )


def ldam_drw_loss(
    x: torch.Tensor,
    target: torch.Tensor,
    cls_num_list: Sequence[float],
    max_m: float = 0.5,
    weight: torch.Tensor | None = None,
    s: float = 30.0,
) -> torch.Tensor:
    """The LDAM authors' ``LDAMLoss`` (``kaidic/LDAM-DRW``, ``losses.py``), constructor and
    forward in one, on the CPU and in ``x``'s dtype (the original builds a
    ``torch.cuda.FloatTensor``); the one-hot mask is ``bool`` where the original's ``uint8``
    no longer passes ``torch.where``."""
    m_list_np = 1.0 / np.sqrt(np.sqrt(np.asarray(cls_num_list, dtype=np.float64)))
    m_list_np = m_list_np * (max_m / np.max(m_list_np))
    m_list = torch.as_tensor(m_list_np, dtype=x.dtype)
    index = torch.zeros_like(x, dtype=torch.bool)
    index.scatter_(1, target.data.view(-1, 1), True)
    index_float = index.to(x.dtype)
    batch_m = torch.matmul(m_list[None, :], index_float.transpose(0, 1))
    batch_m = batch_m.view((-1, 1))
    x_m = x - batch_m
    output = torch.where(index, x_m, x)
    return F.cross_entropy(s * output, target, weight=weight)
