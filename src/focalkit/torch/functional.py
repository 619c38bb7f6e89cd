"""Focal losses for PyTorch, with ``torch.nn.functional``'s conventions.

Each function here is the single definition of its loss; the modules in
``focalkit.torch.modules`` only hold settings and call it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit._core import validation
from focalkit._core.validation import Reduction
from focalkit.torch import _arguments, _family, _focal, _inputs, _kernels
from focalkit.torch._arguments import Alpha, Divisor, Gamma
from focalkit.torch._autograd import binary_focal_term, nll_focal_term
from focalkit.torch._focal import binary_coefficient
from focalkit.torch._inputs import ArrayLike
from focalkit.torch._kernels.family import (
    DistributionFocal,
    DistributionSettings,
    ElementwiseFamily,
    ElementwiseSettings,
    ShiftedSoftmaxFocal,
    ValueAndSlope,
)
from focalkit.torch._reduction import divide, reduce
from focalkit.torch._settings import SoftmaxSettings

__all__ = [
    "asymmetric_loss",
    "binary_focal_loss",
    "distribution_focal_loss",
    "ldam_loss",
    "linear_softmax_focal_loss",
    "nll_focal_loss",
    "poly_sigmoid_focal_loss",
    "poly_softmax_focal_loss",
    "quality_focal_loss",
    "sample_dependent_gamma",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "varifocal_loss",
]


def _class_dim_view(per_class: Tensor, ndim: int) -> Tensor:
    """A ``(C,)`` tensor shaped ``(1, C, 1, ..., 1)`` to broadcast against ``(N, C, d1, ...)``."""
    return per_class.reshape((1, -1) + (1,) * (ndim - 2))


def softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    gamma: Gamma = 2.0,
    alpha: Alpha = None,
    divisor: Divisor | None = None,
    logit_offset: ArrayLike | None = None,
) -> Tensor:
    r"""Focal loss on softmax probabilities; ``gamma=0, alpha=None`` is ``F.cross_entropy``.

    With :math:`p_n = \operatorname{softmax}(x_n)` over the classes and :math:`q_n` the target
    distribution (one-hot for class indices; label smoothing makes it
    :math:`(1 - \varepsilon) q_n + \varepsilon / C`), the unreduced loss of element :math:`n` is

    .. math::
        \ell_n = -\sum_{c=1}^{C} q_{n,c}\, \alpha_c\, w_c\, (1 - p_{n,c})^{\gamma} \log p_{n,c}.

    For class-index targets ``'mean'`` divides :math:`\sum_n \ell_n` by :math:`\sum_n w_{y_n}`
    over the elements whose target is not ``ignore_index`` (their count without ``weight``); for
    probability targets it divides by the number of elements :math:`N d_1 \cdots d_K`. Both are
    what ``F.cross_entropy`` does; ``alpha`` never enters the divisor. The mean of nothing (an
    empty batch, or every target ignored) is ``nan`` with a gradient of 0, as in PyTorch.

    Everything is computed in log space, from the logits: :math:`\log p` by ``log_softmax`` and
    :math:`\log(1 - p)` without forming :math:`1 - p`, so values and gradients stay finite at any
    logits and any ``gamma >= 0``. Half-precision inputs are computed in float32 and the result
    comes back in the input's dtype (float32 under ``torch.autocast``).

    Args:
        input: Logits.
        target: Class indices in :math:`[0, C)` (an integer tensor), or class probabilities (a
            floating tensor of the input's shape), as ``F.cross_entropy`` accepts.
        weight: Per-class rescaling weight :math:`w`, shape :math:`(C)`, as in
            ``F.cross_entropy``. Default: all ones.
        ignore_index: Class-index target value that contributes nothing to the loss or to the
            ``'mean'`` divisor. Not used with probability targets. Default: -100.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`. Default: 0.
        gamma: Focusing parameter :math:`\gamma \ge 0`; larger values down-weight well-classified
            elements. A float, or a tensor broadcastable to the unreduced loss (one gamma per
            element, e.g. from :func:`sample_dependent_gamma`), which autograd treats as a
            constant. Default: 2.
        alpha: Class balance :math:`\alpha`: ``None`` (all ones), a float that scales every term,
            or one non-negative value per class, shape :math:`(C)`. Default: ``None``.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the count
            described above: a positive number, or a 0-dim tensor on any device (never read on
            the host). Gives the exact mean over micro-batches or processes whose divisor was
            summed in advance (see :mod:`focalkit.torch.distributed`); also a detector's
            normaliser, such as the number of positive anchors. Default: ``None``.
        logit_offset: A per-class offset :math:`b`, shape :math:`(C)`, added to the logits
            along the class dimension before the softmax: the loss is that of :math:`x + b`, so
            ``gamma=0`` gives ``F.cross_entropy(input + b, target)`` for every other option. With
            ``b = logit_adjustment(counts, tau)`` it is the logit-adjusted loss of Menon et al.
            (``tau=1``: the balanced softmax of Ren et al.); train with it and predict with the
            plain logits. A tensor that requires grad is differentiated. Default: ``None``.

    Shape:
        - Input: :math:`(C)`, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        - Target: :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)` of class indices, or the
          input's shape for probabilities.
        - Output: scalar; with ``reduction='none'``, the target's shape (without :math:`C`).

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import softmax_focal_loss
        >>> input = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> target = torch.tensor([0, 1])
        >>> softmax_focal_loss(input, target, gamma=2.0)
        tensor(0.8568)
        >>> torch.allclose(softmax_focal_loss(input, target, gamma=0.0),
        ...                F.cross_entropy(input, target))
        True
        >>> from focalkit import logit_adjustment
        >>> offset = torch.tensor(logit_adjustment([900, 90, 10]), dtype=torch.float32)
        >>> softmax_focal_loss(input, target, gamma=0.0, logit_offset=offset)  # balanced softmax
        tensor(0.8637)
        >>> torch.allclose(softmax_focal_loss(input, target, gamma=0.0, logit_offset=offset),
        ...                F.cross_entropy(input + offset, target))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002

        Menon et al., "Long-tail learning via logit adjustment", ICLR 2021. arXiv:2007.07314
    """
    where = "softmax_focal_loss()"
    return _softmax_family(
        where,
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        gamma,
        alpha,
        divisor,
        logit_offset=logit_offset,
    )


def _softmax_family(
    where: str,
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: Reduction,
    label_smoothing: float,
    gamma: Gamma,
    alpha: Alpha,
    divisor: Divisor | None,
    *,
    epsilon: float = 0.0,
    logit_offset: ArrayLike | None = None,
    margins: ArrayLike | None = None,
    logit_scale: float | None = None,
) -> Tensor:
    """The softmax focal loss and its family: the Poly-1 term (``epsilon``) and the logit shift
    ``logit_scale * (input + logit_offset - margins[target] onehot)``, checked as ``where``."""
    _arguments.check_common(where, reduction, gamma)
    computed = _arguments.reduction_for(reduction, divisor, where)
    _inputs.check_number("label_smoothing", label_smoothing, validation.UNIT_INTERVAL, where)
    validation.check_ignore_index(ignore_index, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    if input.dim() == 0:
        raise ValueError(f"{where}: input must have shape (C), (N, C) or (N, C, d1, ...), got ()")
    if input.dim() == 1:  # unbatched, as F.cross_entropy accepts
        loss = _softmax_family(
            where,
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index,
            reduction,
            label_smoothing,
            gamma,
            alpha,
            divisor,
            epsilon=epsilon,
            logit_offset=logit_offset,
            margins=margins,
            logit_scale=logit_scale,
        )
        return loss.squeeze(0) if reduction == "none" else loss

    out_dtype = _inputs.dtypes(input)[1]
    settings = _arguments.softmax_settings(
        input, target, weight, ignore_index, computed, label_smoothing, gamma, alpha, where
    )
    compute_dtype = settings.compute_dtype
    shift = _arguments.logit_shift(
        settings, input.shape[1], logit_offset, margins, logit_scale, where
    )

    def definition(input: Tensor) -> Tensor:
        return _softmax_definition(shift.apply(input.to(compute_dtype)), settings, epsilon)

    if not _kernels.applicable(
        input,
        target,
        settings.weight,
        settings.alpha,
        settings.scale,
        settings.gamma,
        shift.offset,
        shift.margin,
        compiled=epsilon == 0 and shift.is_identity(),
    ):
        return divide(definition(input), divisor).to(out_dtype)
    needs_grad = torch.is_grad_enabled() and input.requires_grad
    out: Tensor
    if (epsilon != 0 or not shift.is_identity()) and _arguments.one_hot_target(settings):
        family_settings = _arguments.shifted_softmax_settings(
            settings, shift, epsilon, needs_grad=needs_grad
        )
        out = ShiftedSoftmaxFocal.apply(  # type: ignore[no-untyped-call]
            input, family_settings, definition
        )
        return divide(out, divisor).to(out_dtype)
    if epsilon != 0:  # a target distribution: the definition
        return divide(definition(input), divisor).to(out_dtype)
    # The focal loss of the shifted logits, by the focal loss's kernel.
    if not shift.is_identity():
        input = shift.apply(input.to(compute_dtype))
    kernel_settings = _arguments.softmax_kernel_settings(settings, needs_grad=needs_grad)

    def focal_definition(logits: Tensor) -> Tensor:
        return _softmax_definition(logits.to(compute_dtype), settings)

    out = _kernels.softmax_focal(input, kernel_settings, focal_definition)
    return divide(out, divisor).to(out_dtype)


def _softmax_definition(x: Tensor, settings: SoftmaxSettings, epsilon: float = 0.0) -> Tensor:
    """The softmax focal loss as autograd sees it: the definition the kernels are tested against.

    ``epsilon`` adds the Poly-1 term (:func:`focalkit.torch._family.poly_term`)."""
    index, kept, q, class_coef, scale = (
        settings.target_index,
        settings.kept,
        settings.q,
        settings.class_coef,
        settings.scale,
    )
    gamma, label_smoothing = settings.gamma, settings.label_smoothing
    reduction, divisor = settings.reduction, settings.divisor
    num_classes = x.shape[1]
    log_p, log_1mp = _focal.log_softmax_and_complement(x, 1)
    if q is not None:
        weights = q.to(x.dtype)
        if label_smoothing > 0:
            weights = weights * (1.0 - label_smoothing) + label_smoothing / num_classes
        terms = weights * _family.poly_term(log_p, log_1mp, gamma, epsilon)
        if class_coef is not None:
            terms = terms * _class_dim_view(class_coef, x.dim())
        per_element = terms.sum(1)
        if scale is not None:
            per_element = per_element * scale
        return reduce(per_element, reduction, divisor)
    if index is None or kept is None:
        raise ValueError("a class-index or a class-probability target is required")
    if label_smoothing == 0:
        # Ignored elements read class 0 as a placeholder; s_t = 0 there keeps their terms (and
        # their gradients) 0 even where that class's logit is masked to -inf.
        log_pt = torch.where(kept.unsqueeze(1), log_p.gather(1, index), 0.0)
        log_1mpt = log_1mp.gather(1, index)
        if epsilon != 0:  # the Poly-1 term reads log(1 - p_t): keep it finite too
            log_1mpt = torch.where(kept.unsqueeze(1), log_1mpt, 0.0)
        on_target = _family.poly_term(log_pt, log_1mpt, gamma, epsilon)
        if class_coef is not None:
            on_target = on_target * class_coef[index]
        per_element = on_target.squeeze(1)
    else:
        terms = _family.poly_term(log_p, log_1mp, gamma, epsilon)
        if class_coef is not None:
            terms = terms * _class_dim_view(class_coef, x.dim())
        on_target = terms.gather(1, index).squeeze(1)
        smoothed = terms.sum(1) * (label_smoothing / num_classes)
        per_element = (1.0 - label_smoothing) * on_target + smoothed
    if scale is not None:
        per_element = per_element * scale
    per_element = torch.where(kept, per_element, torch.zeros_like(per_element))
    return reduce(per_element, reduction, divisor)


def poly_softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    epsilon: float = 1.0,
    gamma: Gamma = 0.0,
    alpha: Alpha = None,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Poly-1 softmax loss: the focal loss plus :math:`\epsilon (1 - p)^{\gamma + 1}` per class.

    With :math:`p_n = \operatorname{softmax}(x_n)`, :math:`q_n` the target distribution (one-hot
    for class indices, smoothed by ``label_smoothing``) and :math:`a_c = \alpha_c w_c` exactly as
    in :func:`softmax_focal_loss`, the unreduced loss of element :math:`n` is

    .. math::
        \ell_n = \sum_{c=1}^{C} q_{n,c}\, a_c \left[ -(1 - p_{n,c})^{\gamma} \log p_{n,c}
            + \epsilon\, (1 - p_{n,c})^{\gamma + 1} \right],

    the first term of the focal loss's expansion in powers of :math:`1 - p` given its own
    coefficient (Leng et al.'s Poly-1 form). ``epsilon=0`` is :func:`softmax_focal_loss`;
    ``gamma=0`` with class indices is Poly-1 cross-entropy,
    :math:`\mathrm{CE} + \epsilon (1 - p_t)`; with probability targets and ``gamma=0`` it is
    optax's ``poly_loss_cross_entropy`` (whose ``epsilon`` defaults to 2, this one's to 1).
    ``'mean'`` divides as :func:`softmax_focal_loss` does (the kept targets' summed weight for
    class indices, the number of elements for probabilities). Values and gradients are finite at
    any logits: :math:`\log p` and :math:`\log(1 - p)` come from the logits. Half-precision
    inputs are computed in float32.

    Args:
        input: Logits.
        target: Class indices in :math:`[0, C)`, or class probabilities of the input's shape.
        weight, ignore_index, reduction, label_smoothing: as in :func:`softmax_focal_loss`.
        epsilon: The coefficient :math:`\epsilon` of the Poly-1 term, any real number; the paper
            tunes it, and uses -1 too (which removes the first term of cross-entropy's
            expansion). Default: 1.
        gamma: Focusing parameter :math:`\gamma \ge 0`, a number or a tensor, as in
            :func:`softmax_focal_loss`. Default: 0 (Poly-1 cross-entropy).
        alpha: Class balance, as in :func:`softmax_focal_loss`. Default: ``None``.
        divisor: as in :func:`softmax_focal_loss`.

    Shape:
        - Input: :math:`(C)`, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        - Target: :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)` of class indices, or the
          input's shape for probabilities.
        - Output: scalar; with ``reduction='none'``, the target's shape (without :math:`C`).

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import poly_softmax_focal_loss
        >>> input = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> target = torch.tensor([0, 1])
        >>> poly_softmax_focal_loss(input, target, epsilon=1.0)
        tensor(1.7557)
        >>> p_t = input.softmax(1)[[0, 1], target]
        >>> torch.allclose(poly_softmax_focal_loss(input, target, epsilon=1.0),
        ...                F.cross_entropy(input, target) + (1 - p_t).mean())
        True

    References:
        Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
        Functions", ICLR 2022. arXiv:2204.12511
    """
    where = "poly_softmax_focal_loss()"
    epsilon = validation.check_real("epsilon", epsilon, where)
    return _softmax_family(
        where,
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        gamma,
        alpha,
        divisor,
        epsilon=epsilon,
    )


def ldam_loss(
    input: Tensor,
    target: Tensor,
    margins: ArrayLike,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    *,
    scale: float = 30.0,
    gamma: Gamma = 0.0,
    alpha: Alpha = None,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Label-distribution-aware margin (LDAM) loss: the focal loss of logits that give the
    target class a margin :math:`\Delta_y`, then scaled.

    With :math:`e_y` the one-hot vector of the target class and :math:`s` = ``scale``,

    .. math::
        \ell_n = \mathrm{FL}_{\gamma, \alpha, w}\bigl(s\, (x_n - \Delta_{y_n} e_{y_n}),\ y_n\bigr),

    :func:`softmax_focal_loss` of the shifted logits, so ``gamma=0`` is
    ``F.cross_entropy(s * (input - margins[target] * onehot), target, weight)``: the authors'
    ``LDAMLoss``. Rare classes get larger margins (:func:`~focalkit.ldam_margins`,
    :math:`\Delta_c \propto n_c^{-1/4}`): the model must beat the other classes by
    :math:`\Delta_y` on them to reach the same loss. Elements whose target is ``ignore_index``
    get no margin and contribute nothing; ``'mean'`` divides by the kept targets' summed weight,
    as ``F.cross_entropy`` does. The shifted logits are formed chunk by chunk inside the loss,
    not as a tensor of the input's size.

    Args:
        input: Logits.
        target: Class indices in :math:`[0, C)`, an integer tensor.
        margins: Per-class margins :math:`\Delta \ge 0`, shape :math:`(C)`, e.g.
            ``ldam_margins(counts)``; a tensor that requires grad is differentiated.
        weight, ignore_index, reduction: as in :func:`softmax_focal_loss` (deferred
            re-weighting, DRW, passes class weights as ``weight`` in later epochs).
        scale: The logit scale :math:`s > 0`. Default: 30, the authors'.
        gamma, alpha: The focal loss's, as in :func:`softmax_focal_loss`. Default: ``gamma=0``,
            ``alpha=None`` (cross-entropy).
        divisor: as in :func:`softmax_focal_loss`.

    Shape:
        - Input: :math:`(C)`, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        - Target: :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)`.
        - Output: scalar; with ``reduction='none'``, the target's shape.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import ldam_loss, ldam_margins
        >>> margins = torch.tensor(ldam_margins([1000, 100, 10]), dtype=torch.float32)
        >>> input = torch.tensor([[0.2, 0.1, -0.1], [0.0, 0.1, 0.3]])
        >>> target = torch.tensor([0, 2])
        >>> ldam_loss(input, target, margins)
        tensor(5.4777)
        >>> shifted = input - margins[target, None] * F.one_hot(target, 3)
        >>> torch.allclose(ldam_loss(input, target, margins), F.cross_entropy(30 * shifted, target))
        True

    References:
        Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
        NeurIPS 2019. arXiv:1906.07413
    """
    where = "ldam_loss()"
    scale = validation.check_positive("scale", scale, where)
    if margins is None:
        raise TypeError(f"{where}: margins must be a tensor or a sequence of numbers, got None")
    if isinstance(target, Tensor) and (
        target.is_floating_point() or target.is_complex() or target.dtype == torch.bool
    ):
        is_indices = isinstance(input, Tensor) and target.dim() == input.dim() - 1
        raise validation.class_indices_dtype_error(
            where, target.shape, target.dtype, target.is_floating_point() and is_indices
        )
    return _softmax_family(
        where,
        input,
        target,
        weight,
        ignore_index,
        reduction,
        0.0,
        gamma,
        alpha,
        divisor,
        margins=margins,
        logit_scale=scale,
    )


def _reduce_class_index_loss(
    per_element: Tensor,
    kept: Tensor,
    index: Tensor,
    weight: Tensor | None,
    scale: float | Tensor | None,
    reduction: str,
) -> Tensor:
    """Zero the ignored elements and reduce; ``'mean'`` divides by the kept targets' weights."""
    if scale is not None:
        per_element = per_element * scale
    per_element = torch.where(kept, per_element, torch.zeros_like(per_element))
    return reduce(
        per_element, reduction, _arguments.kept_weight(kept, index, weight, per_element.dtype)
    )


def nll_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    *,
    gamma: float = 2.0,
    alpha: Alpha = None,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Focal loss on log-probabilities; ``gamma=0, alpha=None`` is ``F.nll_loss``.

    For a user who already has probabilities from a softmax of their own:
    ``nll_focal_loss(probs.log(), target)``. With :math:`s_{n,c}` the input (log-probabilities,
    :math:`\le 0`) and :math:`p = e^s`, the unreduced loss of element :math:`n` is

    .. math::
        \ell_n = -\alpha_{y_n} w_{y_n} (1 - p_{n,y_n})^{\gamma}\, s_{n,y_n},

    and ``'mean'`` divides :math:`\sum_n \ell_n` by :math:`\sum_n w_{y_n}` over the elements whose
    target is not ``ignore_index``, as ``F.nll_loss`` does. The gradient is derived by hand:
    autograd of the formula is ``0 * inf = NaN`` at :math:`p = 1` when ``gamma < 1``, where the
    true derivative is 0. On logits, prefer :func:`softmax_focal_loss`: it is exact even where
    :math:`p` rounds to 1.

    Args:
        input: Log-probabilities (values ``<= 0``).
        target: Class indices in :math:`[0, C)`, an integer tensor.
        weight: Per-class rescaling weight, shape :math:`(C)`. Default: all ones.
        ignore_index: Target value that contributes nothing. Default: -100.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        gamma: Focusing parameter :math:`\gamma \ge 0`. Default: 2.
        alpha: ``None``, a float scaling every term, or one value per class. Default: ``None``.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the count
            described above: a positive number, or a 0-dim tensor on any device (never read on
            the host). Gives the exact mean over micro-batches or processes whose divisor was
            summed in advance (see :mod:`focalkit.torch.distributed`); also a detector's
            normaliser, such as the number of positive anchors. Default: ``None``.

    Shape:
        - Input: :math:`(C)`, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        - Target: :math:`()`, :math:`(N)` or :math:`(N, d_1, ..., d_K)`.
        - Output: scalar; with ``reduction='none'``, the target's shape.

    Example:
        >>> import torch
        >>> from focalkit import nll_focal_loss, softmax_focal_loss
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
        >>> target = torch.tensor([0, 1])
        >>> nll_focal_loss(probs.log(), target, gamma=2.0)
        tensor(0.3110)
        >>> logits = torch.tensor([[2.0, 0.5, -1.0]])
        >>> torch.allclose(nll_focal_loss(logits.log_softmax(1), torch.tensor([0])),
        ...                softmax_focal_loss(logits, torch.tensor([0])))
        True
    """
    where = "nll_focal_loss()"
    _arguments.check_common(where, reduction, gamma)
    computed = _arguments.reduction_for(reduction, divisor, where)
    validation.check_ignore_index(ignore_index, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    if _arguments.unbatched(input, where):
        loss = nll_focal_loss(
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index,
            reduction,
            gamma=gamma,
            alpha=alpha,
            divisor=divisor,
        )
        return loss.squeeze(0) if reduction == "none" else loss

    compute_dtype, out_dtype = _inputs.dtypes(input)
    log_p = input.to(compute_dtype)
    _inputs.check_log_probabilities(log_p, where)
    num_classes = log_p.shape[1]
    w = _arguments.per_class(weight, "weight", num_classes, log_p, where)
    scale, alpha_per_class = _arguments.softmax_alpha(alpha, num_classes, log_p, where)
    class_coef = _arguments.product(alpha_per_class, w)
    kept, index = _arguments.class_index_target(target, input, ignore_index, where)
    log_pt = log_p.gather(1, index)
    gamma = _arguments.float_gamma(gamma, where)
    on_target = -log_pt if gamma == 0 else nll_focal_term(log_pt, gamma)
    if class_coef is not None:
        on_target = on_target * class_coef[index]
    per_element = on_target.squeeze(1)
    loss = _reduce_class_index_loss(per_element, kept, index, w, scale, computed)
    return divide(loss, divisor).to(out_dtype)


def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    pos_weight: ArrayLike | None = None,
    *,
    gamma: Gamma = 2.0,
    alpha: Alpha = 0.25,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Element-wise focal loss on logits, for binary and multi-label targets.

    ``gamma=0, alpha=None`` is ``F.binary_cross_entropy_with_logits``; with ``weight`` and
    ``pos_weight`` left out it is ``torchvision.ops.sigmoid_focal_loss``. With
    :math:`p = \sigma(x)`, :math:`p_t = p y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`, the unreduced loss is

    .. math::
        \ell = \alpha_t (1 - p_t)^{\gamma}\, \mathrm{BCE}(x, y),
        \quad \mathrm{BCE}(x, y) = -w \left[ p_w\, y \log p + (1 - y) \log(1 - p) \right],

    with :math:`w` = ``weight`` and :math:`p_w` = ``pos_weight``, exactly as
    ``binary_cross_entropy_with_logits(input, target, weight, pos_weight=pos_weight)``.
    :math:`\log(1 - p_t)` is taken from the logits (``logsigmoid``), so values and gradients are
    finite for any logits and any ``gamma >= 0``. ``'mean'`` averages over all elements.

    Args:
        input: Logits, any shape.
        target: Same shape, values in :math:`[0, 1]`: hard or soft labels. Integer and bool
            targets are accepted and cast.
        weight: Rescaling weight broadcastable to the input. Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        pos_weight: Weight of positive examples, broadcastable to the input (one per class for
            multi-label input :math:`(N, C)`). Default: none.
        gamma: Focusing parameter :math:`\gamma \ge 0`: a float, or a tensor broadcastable to
            the input (treated as a constant by autograd). Default: 2.
        alpha: Balance of positives in :math:`[0, 1]` (:math:`1 - \alpha` for negatives): a float,
            a tensor broadcastable to the input (per-class alpha), or ``None`` for no alpha
            weighting. Default: 0.25, as Lin et al. and torchvision.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the number
            of elements: a positive number, or a 0-dim tensor on any device (never read on the
            host); e.g. the number of positive anchors, or a count summed over micro-batches and
            processes (see :mod:`focalkit.torch.distributed`). Default: ``None``.

    Shape:
        - Input: :math:`(*)`, any number of dimensions.
        - Target: :math:`(*)`, the input's shape.
        - Output: scalar; with ``reduction='none'``, :math:`(*)`.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import sigmoid_focal_loss
        >>> input = torch.tensor([[3.0, -1.0], [-2.0, 0.5]])
        >>> target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> sigmoid_focal_loss(input, target)
        tensor(0.1116)
        >>> torch.allclose(sigmoid_focal_loss(input, target, gamma=0.0, alpha=None),
        ...                F.binary_cross_entropy_with_logits(input, target))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """
    where = "sigmoid_focal_loss()"
    _arguments.check_common(where, reduction, gamma)
    reduction = _arguments.reduction_for(reduction, divisor, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    out_dtype = _inputs.dtypes(input)[1]
    settings = _arguments.sigmoid_settings(
        input, target, weight, reduction, pos_weight, gamma, alpha, where
    )
    compute_dtype, y, w, pw, a, gamma = settings[:6]

    def definition(input: Tensor) -> Tensor:
        x = input.to(compute_dtype)
        # BCE as two terms of one sign, each from a log-sigmoid: exact in the tails, where
        # binary_cross_entropy_with_logits's (1 - y) x - log p cancels (x = -20, y = 0: 0).
        positive = y if pw is None else pw * y
        loss = -(positive * F.logsigmoid(x) + (1.0 - y) * F.logsigmoid(-x))
        if w is not None:
            loss = loss * w
        if isinstance(gamma, Tensor) or gamma != 0:
            loss = torch.exp(gamma * _focal.log_one_minus_pt(x, y)) * loss
        return reduce(binary_coefficient(loss, y, None, a), reduction)

    if _kernels.compiling(target, w, pw, a, gamma):
        loss = _kernels.SigmoidFocalElementwise.apply(  # type: ignore[no-untyped-call]
            input.to(compute_dtype), y, w, pw, a, gamma
        )
        return divide(reduce(loss, reduction), divisor).to(out_dtype)
    if not _kernels.applicable(input, target, w, pw, a, gamma):
        return divide(definition(input), divisor).to(out_dtype)
    needs_grad = torch.is_grad_enabled() and input.requires_grad
    out: Tensor = _kernels.SigmoidFocal.apply(  # type: ignore[no-untyped-call]
        input, settings._replace(needs_grad=needs_grad), definition
    )
    return divide(out, divisor).to(out_dtype)


def poly_sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    *,
    epsilon: float = 1.0,
    gamma: Gamma = 2.0,
    alpha: Alpha = 0.25,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Poly-1 sigmoid loss: :func:`sigmoid_focal_loss` plus :math:`\epsilon (1 - p_t)^{\gamma+1}`.

    With :math:`p = \sigma(x)`, :math:`p_t = p y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)` as in :func:`sigmoid_focal_loss`, the
    unreduced loss is

    .. math::
        \ell = w\, \alpha_t \left[ (1 - p_t)^{\gamma}\, \mathrm{BCE}(x, y)
            + \epsilon\, (1 - p_t)^{\gamma + 1} \right],
        \quad \mathrm{BCE}(x, y) = -\left[ y \log p + (1 - y) \log(1 - p) \right].

    ``epsilon=0`` is :func:`sigmoid_focal_loss` (without ``pos_weight``); ``gamma=0`` and
    ``alpha=None`` is Poly-1 binary cross-entropy, :math:`\mathrm{BCE} + \epsilon (1 - p_t)`.
    ``'mean'`` averages over all elements. :math:`\log(1 - p_t)` is taken from the logits, so
    values and gradients are finite at any finite logits and any ``gamma >= 0``.

    Args:
        input: Logits, any shape.
        target: Same shape, values in :math:`[0, 1]` (hard or soft labels).
        weight: Rescaling weight :math:`w` broadcastable to the input. Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        epsilon: The coefficient :math:`\epsilon` of the Poly-1 term, any real number.
            Default: 1.
        gamma: Focusing parameter :math:`\gamma \ge 0`, a number or a tensor broadcastable to
            the input. Default: 2.
        alpha: Balance of positives in :math:`[0, 1]`, a tensor broadcastable to the input, or
            ``None``. Default: 0.25.
        divisor: as in :func:`sigmoid_focal_loss`.

    Shape:
        - Input: :math:`(*)`. Target: :math:`(*)`. Output: scalar, or :math:`(*)` with
          ``reduction='none'``.

    Example:
        >>> import torch
        >>> from focalkit import poly_sigmoid_focal_loss, sigmoid_focal_loss
        >>> input = torch.tensor([[3.0, -1.0], [-2.0, 0.5]])
        >>> target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> poly_sigmoid_focal_loss(input, target, epsilon=1.0)
        tensor(0.1613)
        >>> torch.allclose(poly_sigmoid_focal_loss(input, target, epsilon=0.0),
        ...                sigmoid_focal_loss(input, target))
        True

    References:
        Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
        Functions", ICLR 2022. arXiv:2204.12511
    """
    where = "poly_sigmoid_focal_loss()"
    epsilon = validation.check_real("epsilon", epsilon, where)
    _arguments.check_common(where, reduction, gamma)
    computed = _arguments.reduction_for(reduction, divisor, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    out_dtype = _inputs.dtypes(input)[1]
    settings = _arguments.sigmoid_settings(
        input, target, weight, computed, None, gamma, alpha, where
    )
    compute_dtype, y, w, _, a, gamma = settings[:6]
    call = _ElementwiseCall(compute_dtype, out_dtype, y, w, computed)

    def terms(x: Tensor, y: Tensor) -> Tensor:
        return binary_coefficient(_family.poly_binary_term(x, y, gamma, epsilon), y, None, a)

    kernel = None
    if not isinstance(a, Tensor) and not isinstance(gamma, Tensor):
        number_gamma = float(gamma)

        def kernel(
            x: Tensor, y: Tensor, with_grad: bool, out: _family.Out
        ) -> tuple[Tensor, Tensor | None]:
            loss, grad = _family.poly_binary_value_and_slope(
                x, y, number_gamma, epsilon, with_grad, out
            )
            if a is None:
                return loss, grad
            coefficient = _focal.alpha_t(y, a)
            return loss.mul_(coefficient), None if grad is None else grad.mul_(coefficient)

    return _elementwise_loss(input, call, divisor, terms, kernel)


class _ElementwiseCall(NamedTuple):
    """A checked call of an element-wise loss on logits."""

    compute_dtype: torch.dtype
    out_dtype: torch.dtype
    target: Tensor  # the input's shape, in the compute dtype
    weight: Tensor | None  # broadcastable to the input, in the compute dtype
    reduction: str  # the reduction to compute ('sum' where a divisor divides it)


def _elementwise_call(
    where: str,
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None,
    reduction: Reduction,
    divisor: Divisor | None,
) -> _ElementwiseCall:
    validation.check_reduction(reduction, where)
    computed = _arguments.reduction_for(reduction, divisor, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    compute_dtype, out_dtype = _inputs.dtypes(input)
    like = input.new_empty((), dtype=compute_dtype).expand(input.shape)  # no memory
    y = _arguments.elementwise_target(target, input, compute_dtype, where)
    w = _arguments.elementwise_tensor(weight, "weight", like, where)
    return _ElementwiseCall(compute_dtype, out_dtype, y, w, computed)


def _elementwise_loss(
    input: Tensor,
    call: _ElementwiseCall,
    divisor: Divisor | None,
    terms: Callable[[Tensor, Tensor], Tensor],
    value_and_slope: ValueAndSlope | None,
) -> Tensor:
    """``terms(x, y)`` times the weight, reduced, divided and in the output dtype: by the
    element-wise kernel over ``value_and_slope`` where it applies, else by autograd."""

    def definition(input: Tensor) -> Tensor:
        loss = terms(input.to(call.compute_dtype), call.target)
        if call.weight is not None:
            loss = loss * call.weight
        return reduce(loss, call.reduction)

    if value_and_slope is None or not _kernels.applicable(input, call.target, call.weight):
        return divide(definition(input), divisor).to(call.out_dtype)
    settings = ElementwiseSettings(
        value_and_slope,
        call.target,
        call.weight,
        call.reduction,
        call.compute_dtype,
        torch.is_grad_enabled() and input.requires_grad,
    )
    out: Tensor = ElementwiseFamily.apply(input, settings, definition)  # type: ignore[no-untyped-call]
    return divide(out, divisor).to(call.out_dtype)


def asymmetric_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Asymmetric loss (ASL) for multi-label classification, on logits.

    With :math:`p = \sigma(x)` and the shifted probability :math:`p_m = \max(p - m, 0)`
    (:math:`m` = ``clip``), the unreduced loss is

    .. math::
        \ell = w \left[ -y\, (1 - p)^{\gamma_+} \log p
            - (1 - y)\, p_m^{\gamma_-} \log(1 - p_m) \right],

    linear in the target :math:`y \in [0, 1]`. Negatives are focused harder
    (:math:`\gamma_- > \gamma_+`), and those with :math:`p \le m`, the easy ones, are discarded:
    there the negative term and its gradient are exactly 0. ``'mean'`` averages over all
    elements. ``gamma_pos = gamma_neg = clip = 0`` is ``F.binary_cross_entropy_with_logits``;
    ``gamma_pos = gamma_neg = gamma`` and ``clip = 0`` with hard labels is
    ``sigmoid_focal_loss(gamma=gamma, alpha=None)``.

    :math:`\log p` and :math:`\log(1 - p_m) = \log(\sigma(-x) + m)` come from the logits, never
    from a clamped probability, so values and gradients are finite at any finite logit and in
    half precision (computed in float32). timm's ``AsymmetricLossMultiLabel`` (whose default
    reduction returns the sum; newer versions also divide by the batch) gives the same numbers
    for hard labels wherever its ``eps`` clamp of :math:`p` and :math:`1 - p_m` does not bite;
    for soft labels it raises :math:`1 - p_t` to a mixed power
    :math:`\gamma_+ y + \gamma_- (1 - y)`, where this loss is linear in :math:`y`.

    Args:
        input: Logits, any shape (for multi-label classification, :math:`(N, C)`).
        target: Same shape, values in :math:`[0, 1]` (multi-hot or soft labels).
        weight: Rescaling weight :math:`w` broadcastable to the input (e.g. one per class).
            Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        gamma_pos: :math:`\gamma_+ \ge 0`, the positives' focusing parameter. Default: 0.
        gamma_neg: :math:`\gamma_- \ge 0`, the negatives'. Default: 4.
        clip: The probability margin :math:`m \in [0, 1)` shifted onto negatives. Default: 0.05
            (the paper's recommended ``gamma_neg=4, gamma_pos=0, clip=0.05``).
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the number
            of elements (``divisor=input.shape[0]`` is a sum over classes averaged over the
            batch): a positive number, or a 0-dim tensor on any device. Default: ``None``.

    Shape:
        - Input: :math:`(*)`. Target: :math:`(*)`. Output: scalar, or :math:`(*)` with
          ``reduction='none'``.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import asymmetric_loss
        >>> input = torch.tensor([[3.0, -1.0, 0.5], [-2.0, 0.5, -4.0]])
        >>> target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> asymmetric_loss(input, target)
        tensor(0.1024)
        >>> torch.allclose(asymmetric_loss(input, target, gamma_neg=0.0, clip=0.0),
        ...                F.binary_cross_entropy_with_logits(input, target))
        True

    References:
        Ridnik et al., "Asymmetric Loss For Multi-Label Classification", ICCV 2021.
        arXiv:2009.14119
    """
    where = "asymmetric_loss()"
    gamma_pos = _inputs.check_number("gamma_pos", gamma_pos, validation.NONNEGATIVE, where)
    gamma_neg = _inputs.check_number("gamma_neg", gamma_neg, validation.NONNEGATIVE, where)
    clip = validation.check_clip(clip, where)
    call = _elementwise_call(where, input, target, weight, reduction, divisor)

    def terms(x: Tensor, y: Tensor) -> Tensor:
        return _family.asymmetric_terms(x, y, gamma_pos, gamma_neg, clip)

    def value_and_slope(
        x: Tensor, y: Tensor, with_grad: bool, out: _family.Out
    ) -> tuple[Tensor, Tensor | None]:
        return _family.asymmetric_value_and_slope(x, y, gamma_pos, gamma_neg, clip, with_grad, out)

    return _elementwise_loss(input, call, divisor, terms, value_and_slope)


def varifocal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Varifocal loss (VarifocalNet) on logits, with an IoU-aware target score.

    The target :math:`q \in [0, 1]` is the quality (e.g. the IoU of the predicted box with its
    ground truth) at the ground-truth class of a positive, and 0 for negatives. With
    :math:`p = \sigma(x)` the unreduced loss is

    .. math::
        \ell = \begin{cases}
            -w\, q \left( q \log p + (1 - q) \log(1 - p) \right) & q > 0, \\
            -w\, \alpha\, p^{\gamma} \log(1 - p) & q = 0,
        \end{cases}

    positives weighted by their own quality, negatives down-weighted by :math:`\alpha p^\gamma`
    (:math:`\alpha` applies to the negatives, unlike the focal loss's). ``'mean'`` averages over
    all elements; a detector normalises by its number of positives with ``divisor=``. This is
    mmdetection's ``varifocal_loss`` with its defaults (``use_sigmoid=True``,
    ``iou_weighted=True``; its ``avg_factor`` is ``divisor``). ultralytics'
    ``VarifocalLoss()(pred_score, gt_score, label, alpha, gamma)`` is
    ``varifocal_loss(pred_score, gt_score * label, reduction='sum', alpha=alpha, gamma=gamma)
    / pred_score.shape[1]`` (its ``.mean(1).sum()``) wherever ``label = 1`` comes with
    ``gt_score > 0``; an element with ``label = 1`` and ``gt_score = 0`` is a negative here and
    weighs 0 there. The logs are log-sigmoids of the logits: finite at any finite logit.

    Args:
        input: Logits, any shape (a detector's :math:`(N, C)` class scores).
        target: Same shape, values in :math:`[0, 1]`: the quality score at positives, 0
            elsewhere.
        weight: Rescaling weight :math:`w` broadcastable to the input. Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        alpha: The negatives' weight :math:`\alpha \ge 0`. Default: 0.75.
        gamma: The negatives' focusing parameter :math:`\gamma \ge 0`. Default: 2.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the number
            of elements, e.g. the number of positives. Default: ``None``.

    Shape:
        - Input: :math:`(*)`. Target: :math:`(*)`. Output: scalar, or :math:`(*)` with
          ``reduction='none'``.

    Example:
        >>> import torch
        >>> from focalkit import varifocal_loss
        >>> input = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
        >>> target = torch.tensor([[0.9, 0.0], [0.0, 0.6]])  # IoU at the positives
        >>> varifocal_loss(input, target, reduction="sum")
        tensor(0.7158)
        >>> varifocal_loss(input, target, divisor=2)  # the sum over 2 positives
        tensor(0.3579)

    References:
        Zhang et al., "VarifocalNet: An IoU-aware Dense Object Detector", CVPR 2021.
        arXiv:2008.13367
    """
    where = "varifocal_loss()"
    alpha = _inputs.check_number("alpha", alpha, validation.NONNEGATIVE, where)
    gamma = _inputs.check_number("gamma", gamma, validation.NONNEGATIVE, where)
    call = _elementwise_call(where, input, target, weight, reduction, divisor)

    def terms(x: Tensor, q: Tensor) -> Tensor:
        return _family.varifocal_terms(x, q, alpha, gamma)

    def value_and_slope(
        x: Tensor, q: Tensor, with_grad: bool, out: _family.Out
    ) -> tuple[Tensor, Tensor | None]:
        return _family.varifocal_value_and_slope(x, q, alpha, gamma, with_grad, out)

    return _elementwise_loss(input, call, divisor, terms, value_and_slope)


def quality_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    *,
    beta: float = 2.0,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Quality focal loss (QFL, generalized focal loss) on logits, with a soft target.

    With :math:`p = \sigma(x)` and the soft target :math:`y \in [0, 1]` (the quality score at
    the ground-truth class, 0 elsewhere), the unreduced loss is

    .. math::
        \ell = -w\, |y - p|^{\beta} \left( (1 - y) \log(1 - p) + y \log p \right),

    the focal loss's modulation by the distance to a soft target. With hard labels it is
    ``sigmoid_focal_loss(gamma=beta, alpha=None)``. ``'mean'`` averages over all elements.
    mmdetection's ``quality_focal_loss(pred, (label, score))`` is
    ``quality_focal_loss(pred, y, reduction='none').sum(1)`` with ``y`` the one-hot of ``label``
    (background: all zeros) times ``score``. :math:`|y - p|^\beta` is taken in log space
    (from the log-sigmoids for hard labels); where :math:`p = y` exactly it is 0 with a gradient
    of 0. Finite at any finite logit.

    Args:
        input: Logits, any shape (a detector's :math:`(N, C)` class scores).
        target: Same shape, values in :math:`[0, 1]`.
        weight: Rescaling weight :math:`w` broadcastable to the input. Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        beta: The focusing parameter :math:`\beta \ge 0`. Default: 2.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the number
            of elements, e.g. the number of positives. Default: ``None``.

    Shape:
        - Input: :math:`(*)`. Target: :math:`(*)`. Output: scalar, or :math:`(*)` with
          ``reduction='none'``.

    Example:
        >>> import torch
        >>> from focalkit import quality_focal_loss, sigmoid_focal_loss
        >>> input = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
        >>> target = torch.tensor([[0.9, 0.0], [0.0, 0.6]])
        >>> quality_focal_loss(input, target)
        tensor(0.0058)
        >>> hard = (target > 0).float()
        >>> torch.allclose(quality_focal_loss(input, hard),
        ...                sigmoid_focal_loss(input, hard, gamma=2.0, alpha=None))
        True

    References:
        Li et al., "Generalized Focal Loss: Learning Qualified and Distributed Bounding Boxes
        for Dense Object Detection", NeurIPS 2020. arXiv:2006.04388
    """
    where = "quality_focal_loss()"
    beta = _inputs.check_number("beta", beta, validation.NONNEGATIVE, where)
    call = _elementwise_call(where, input, target, weight, reduction, divisor)

    def terms(x: Tensor, y: Tensor) -> Tensor:
        return _family.quality_focal_terms(x, y, beta)

    def value_and_slope(
        x: Tensor, y: Tensor, with_grad: bool, out: _family.Out
    ) -> tuple[Tensor, Tensor | None]:
        return _family.quality_focal_value_and_slope(x, y, beta, with_grad, out)

    return _elementwise_loss(input, call, divisor, terms, value_and_slope)


def distribution_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    *,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Distribution focal loss (DFL, generalized focal loss): cross-entropy toward the two bins
    around a real-valued target.

    ``input`` holds logits over the bins :math:`0, 1, \dots, n` (a box edge's distance
    distribution); the target :math:`y \in [0, n]` is real. With
    :math:`l = \min(\lfloor y \rfloor, n - 1)` and :math:`r = l + 1`, the unreduced loss is

    .. math::
        \ell = w \left[ (r - y)\, \mathrm{CE}(x, l) + (y - l)\, \mathrm{CE}(x, r) \right],
        \qquad \mathrm{CE}(x, k) = -\log \operatorname{softmax}(x)_k,

    so the expected bin under the two-point distribution is :math:`y`. ``'mean'`` averages over
    the elements (mmdetection's ``distribution_focal_loss`` with a weight per sample; a target
    of exactly :math:`n` takes bins :math:`n - 1` and :math:`n` here, where mmdetection would
    index bin :math:`n + 1`). ``log_softmax`` is taken once for both bins.

    Args:
        input: Logits over the :math:`n + 1` bins.
        target: Real targets in :math:`[0, n]` (a floating or integer tensor). A value outside
            that range is an error.
        weight: Rescaling weight :math:`w` broadcastable to the target's shape (one per
            sample). Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the number
            of elements. Default: ``None``.

    Shape:
        - Input: :math:`(N, n + 1)` or :math:`(N, n + 1, d_1, ..., d_K)`, :math:`n \ge 1`.
        - Target: :math:`(N)` or :math:`(N, d_1, ..., d_K)`.
        - Output: scalar; with ``reduction='none'``, the target's shape.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import distribution_focal_loss
        >>> input = torch.tensor([[0.5, 2.0, 1.0, -1.0], [0.0, 0.0, 1.0, 3.0]])
        >>> target = torch.tensor([1.25, 3.0])
        >>> distribution_focal_loss(input, target, reduction="none")
        tensor([0.7452, 0.2110])
        >>> left = torch.tensor([1, 2])
        >>> torch.allclose(distribution_focal_loss(input, target, reduction="none"),
        ...                (left + 1 - target) * F.cross_entropy(input, left, reduction="none")
        ...                + (target - left) * F.cross_entropy(input, left + 1, reduction="none"))
        True

    References:
        Li et al., "Generalized Focal Loss: Learning Qualified and Distributed Bounding Boxes
        for Dense Object Detection", NeurIPS 2020. arXiv:2006.04388
    """
    where = "distribution_focal_loss()"
    validation.check_reduction(reduction, where)
    computed = _arguments.reduction_for(reduction, divisor, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    y = _arguments.bin_target(input, target, where)
    compute_dtype, out_dtype = _inputs.dtypes(input)
    y = y.to(compute_dtype)
    like = input.new_empty((), dtype=compute_dtype).expand(y.shape)  # no memory
    w = _arguments.elementwise_tensor(weight, "weight", like, where)

    def definition(input: Tensor) -> Tensor:
        loss = _family.distribution_focal_terms(input.to(compute_dtype), y)
        return reduce(loss if w is None else loss * w, computed)

    if not _kernels.applicable(input, target, w):
        return divide(definition(input), divisor).to(out_dtype)
    left, right_share = _family.distribution_bins(y, input.shape[1] - 1)
    settings = DistributionSettings(
        left.unsqueeze(1),
        right_share.unsqueeze(1),
        None if w is None else w.expand(y.shape).unsqueeze(1),
        computed,
        compute_dtype,
        torch.is_grad_enabled() and input.requires_grad,
    )
    out: Tensor = DistributionFocal.apply(input, settings, definition)  # type: ignore[no-untyped-call]
    return divide(out, divisor).to(out_dtype)


def binary_focal_loss(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    *,
    gamma: float = 2.0,
    alpha: Alpha = 0.25,
    divisor: Divisor | None = None,
) -> Tensor:
    r"""Focal loss on probabilities; ``gamma=0, alpha=None`` is ``F.binary_cross_entropy``.

    The formula of :func:`sigmoid_focal_loss` with :math:`p` = ``input``:

    .. math::
        \ell = -\alpha_t (1 - p_t)^{\gamma}\, w \left[ y \log p + (1 - y) \log(1 - p) \right],

    with the logs clamped at -100 exactly as ``F.binary_cross_entropy`` clamps them, so
    ``binary_focal_loss(torch.sigmoid(x), y)`` equals ``sigmoid_focal_loss(x, y)`` wherever the
    sigmoid does not round to 0 or 1. Prefer :func:`sigmoid_focal_loss` when you have logits. The
    gradient is derived by hand and finite for ``gamma < 1`` at :math:`p_t = 1`. A NaN
    probability gives a NaN loss (``F.binary_cross_entropy`` raises instead). The target is not
    differentiated.

    Args:
        input: Probabilities in :math:`[0, 1]`, any shape.
        target: Same shape, values in :math:`[0, 1]`; integer and bool targets are cast.
        weight: Rescaling weight broadcastable to the input (e.g. one per class). Default: none.
        reduction: ``'none'``, ``'mean'`` or ``'sum'``. Default: ``'mean'``.
        gamma: Focusing parameter :math:`\gamma \ge 0`. Default: 2.
        alpha: Balance of positives in :math:`[0, 1]`, a float, a tensor broadcastable to the
            input, or ``None``. Default: 0.25.
        divisor: With ``reduction='mean'``, divide the ``'sum'`` by this instead of the number
            of elements: a positive number, or a 0-dim tensor on any device (never read on the
            host); e.g. the number of positive anchors, or a count summed over micro-batches and
            processes (see :mod:`focalkit.torch.distributed`). Default: ``None``.

    Shape:
        - Input: :math:`(*)`. Target: :math:`(*)`. Output: scalar, or :math:`(*)` with
          ``reduction='none'``.

    Example:
        >>> import torch
        >>> from focalkit import binary_focal_loss
        >>> probs = torch.tensor([0.9, 0.2, 0.6])
        >>> target = torch.tensor([1.0, 0.0, 0.0])
        >>> binary_focal_loss(probs, target, gamma=2.0, alpha=None, reduction="none")
        tensor([0.0011, 0.0089, 0.3299])
    """
    where = "binary_focal_loss()"
    _arguments.check_common(where, reduction, gamma)
    reduction = _arguments.reduction_for(reduction, divisor, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    if target.requires_grad:
        raise ValueError(f"{where}: target is not differentiated; pass target.detach()")
    compute_dtype, out_dtype = _inputs.dtypes(input)
    p = input.to(compute_dtype)
    _inputs.check_unit_interval_values(p, "input (probabilities)", where)
    y = _arguments.elementwise_target(target, input, compute_dtype, where)
    w = _arguments.elementwise_tensor(weight, "weight", p, where)
    a = _arguments.binary_alpha(alpha, p, where)
    gamma = _arguments.float_gamma(gamma, where)
    if any(isinstance(value, Tensor) and value.requires_grad for value in (w, a)):
        # A weight or alpha to differentiate: autograd multiplies them in.
        loss = binary_coefficient(binary_focal_term(p, y, gamma), y, w, a)
    else:  # folded into the Function, which then keeps no alpha_t tensor for backward
        loss = binary_focal_term(p, y, gamma, w, a)
    return divide(reduce(loss, reduction), divisor).to(out_dtype)


def sample_dependent_gamma(
    input: Tensor,
    target: Tensor,
    thresholds: float | Sequence[float] = (0.2,),
    gammas: Sequence[float] = (5.0, 3.0),
    *,
    ignore_index: int = -100,
) -> Tensor:
    r"""Per-element gamma from the probability of the true class (Mukhoti et al. 2020, FLSD).

    With :math:`p_t = \operatorname{softmax}(x)_{y}` and thresholds
    :math:`\tau_1 < \dots < \tau_k`, the gamma of an element is ``gammas[i]`` where :math:`i` is
    the number of thresholds :math:`\le p_t`. The default is FLSD-53: :math:`\gamma = 5` for
    :math:`p_t < 0.2`, else 3. Computed without gradient; pass the result as ``gamma=`` to
    :func:`softmax_focal_loss`. Elements whose target is ``ignore_index`` get ``gammas[0]``
    (they contribute nothing to the loss).

    Args:
        input: Logits, :math:`(N, C)` or :math:`(N, C, d_1, ..., d_K)`.
        target: Class indices, :math:`(N)` or :math:`(N, d_1, ..., d_K)`.
        thresholds: Increasing probabilities in :math:`(0, 1)`, or one number. Default:
            ``(0.2,)``.
        gammas: ``len(thresholds) + 1`` values :math:`\ge 0`, for each interval from the lowest
            :math:`p_t` up. Default: ``(5.0, 3.0)``.
        ignore_index: Target value to skip. Default: -100.

    Returns:
        A tensor of the target's shape, in the input's dtype (float32 for half precision).

    Example:
        >>> import torch
        >>> from focalkit import sample_dependent_gamma, softmax_focal_loss
        >>> input = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> target = torch.tensor([0, 0])
        >>> gamma = sample_dependent_gamma(input, target)
        >>> gamma
        tensor([3., 5.])
        >>> loss = softmax_focal_loss(input, target, gamma=gamma)

    References:
        Mukhoti et al., "Calibrating Deep Neural Networks using Focal Loss", NeurIPS 2020.
        arXiv:2002.09437
    """
    where = "sample_dependent_gamma()"
    bounds = validation.number_sequence(thresholds, "thresholds", where)
    values = validation.number_sequence(gammas, "gammas", where)
    if len(values) != len(bounds) + 1:
        raise ValueError(
            f"{where}: gammas must have len(thresholds) + 1 = {len(bounds) + 1} values, "
            f"got {len(values)}"
        )
    if any(not 0.0 < t < 1.0 for t in bounds) or any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"{where}: thresholds must increase inside (0, 1), got {tuple(bounds)}")
    for value in values:
        validation.check_gamma(value, where, name="gammas")
    validation.check_ignore_index(ignore_index, where)
    input = _inputs.check_input(input, where)
    target = _inputs.check_target(target, where)
    if input.dim() < 2:
        raise ValueError(f"{where}: input must have shape (N, C) or (N, C, d1, ...)")
    with torch.no_grad():
        compute_dtype, _ = _inputs.dtypes(input)
        x = input.detach().to(compute_dtype)
        _, index = _arguments.class_index_target(target, input, ignore_index, where)
        p_t = F.log_softmax(x, 1).gather(1, index).squeeze(1).exp()
        boundaries = torch.tensor(bounds, dtype=compute_dtype, device=x.device)
        bucket = torch.bucketize(p_t, boundaries, right=True)
        return torch.tensor(values, dtype=compute_dtype, device=x.device)[bucket]


def linear_softmax_focal_loss(
    input: Tensor,
    classifier: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
    alpha: Alpha = None,
    chunk_size: int | None = None,
    divisor: Divisor | None = None,
    logit_offset: ArrayLike | None = None,
) -> Tensor:
    r"""``softmax_focal_loss(F.linear(input, classifier, bias), target, ...)``, never forming
    the logits.

    For a language-model head or any classifier with many classes: the value and the gradients
    with respect to ``input``, ``classifier`` and ``bias`` are those of the unfused composition,
    but the rows are processed ``chunk_size`` at a time, each chunk's logits turned into the loss
    and the gradients before the next chunk exists. Peak memory beyond the returned gradients is
    one chunk of logits instead of the ``(N, C)`` logits, their softmax and their gradient. With
    ``gamma=0, alpha=None`` it is a fused linear cross-entropy, equal to
    ``F.cross_entropy(F.linear(input, classifier, bias), target, ...)``.

    Half-precision ``input`` and ``classifier`` are multiplied in their dtype (as ``F.linear``
    does); the loss and the accumulation of ``classifier``'s gradient run in float32. Under
    ``torch.compile`` and for double backward the unfused composition is used.

    Args:
        input: Hidden states, :math:`(*, D)`.
        classifier: The output layer's weight, :math:`(C, D)`, as ``nn.Linear.weight``.
        target: Class indices, :math:`(*)`.
        bias: The output layer's bias, :math:`(C)`, or ``None``. Keyword-only, as every
            argument after ``target`` (like ``linear_bias`` in PyTorch's
            ``linear_cross_entropy``), so that class weights are never taken for a bias.
        weight, ignore_index, reduction, label_smoothing, gamma, alpha: as in
            :func:`softmax_focal_loss`; ``gamma`` is a number here.
        chunk_size: Rows per chunk. Default: chosen from the shapes, about 32 MiB of logits.
        divisor: as in :func:`softmax_focal_loss`.
        logit_offset: A per-class offset, shape :math:`(C)`, added to each chunk's logits as
            :func:`softmax_focal_loss`'s ``logit_offset`` is (e.g. from
            :func:`~focalkit.logit_adjustment`): an extra bias, ``bias + logit_offset``, in the
            classifier's dtype. Default: ``None``.

    Shape:
        - Output: scalar; with ``reduction='none'``, :math:`(*)`.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> from focalkit import linear_softmax_focal_loss, softmax_focal_loss
        >>> hidden, head = torch.randn(6, 8), torch.randn(50, 8)
        >>> target = torch.randint(0, 50, (6,))
        >>> fused = linear_softmax_focal_loss(hidden, head, target, chunk_size=4)
        >>> torch.allclose(fused, softmax_focal_loss(F.linear(hidden, head), target), atol=1e-6)
        True
    """
    where = "linear_softmax_focal_loss()"
    validation.check_reduction(reduction, where)
    reduction = _arguments.reduction_for(reduction, divisor, where)
    gamma = _arguments.float_gamma(gamma, where)
    _inputs.check_number("label_smoothing", label_smoothing, validation.UNIT_INTERVAL, where)
    validation.check_ignore_index(ignore_index, where)
    validation.check_positive_int("chunk_size", chunk_size, where, optional=True)
    input = _inputs.check_input(input, where)
    num_classes = _arguments.check_linear_head(input, classifier, bias, where)
    if logit_offset is not None:  # an extra bias
        like = classifier.new_empty(())
        offset = _arguments.logit_offset(logit_offset, num_classes, like, where)
        bias = offset if bias is None else bias + offset
    target = _inputs.check_target(target, where)
    flat_target = _inputs.class_indices(
        target, input.shape[:-1], input.shape, num_classes, ignore_index, where
    ).reshape(-1)
    hidden = input.reshape(flat_target.shape[0], input.shape[-1])  # -1 is ambiguous for D = 0

    compute_dtype, out_dtype = _inputs.dtypes(input)
    like = input.new_empty((), dtype=compute_dtype)
    w = _arguments.per_class(weight, "weight", num_classes, like, where)
    scale, alpha_per_class = _arguments.softmax_alpha(alpha, num_classes, like, where)
    kept = flat_target != ignore_index
    index = torch.where(kept, flat_target, 0).unsqueeze(1)

    def definition(hidden: Tensor, classifier: Tensor, bias: Tensor | None) -> Tensor:
        logits = F.linear(hidden, classifier, bias)
        return softmax_focal_loss(
            logits,
            flat_target,
            w,
            ignore_index,
            reduction,
            label_smoothing,
            gamma=gamma,
            alpha=alpha,
        )

    if (
        not _kernels.applicable(input, w, alpha_per_class, scale, compiled=True)
        or _kernels.transformed(classifier, bias)
        or _kernels.dual(classifier, bias)
    ):
        loss = definition(hidden, classifier, bias)
    else:
        settings = _arguments.fused_settings(
            kept,
            index,
            w,
            alpha_per_class,
            scale,
            gamma,
            label_smoothing,
            reduction,
            chunk_size,
            classifier.shape[0],
            compute_dtype,
        )
        loss = _kernels.linear_softmax_focal(hidden, classifier, bias, settings, definition)
    if reduction == "none":
        loss = loss.reshape(target.shape)
    return divide(loss, divisor).to(out_dtype)
