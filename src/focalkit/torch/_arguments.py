"""User arguments to settings: checks, conversions to the compute dtype, and the builders of the
settings tuples (``focalkit.torch._settings``) that the definitions and the kernels read.

Every error message comes from ``focalkit._core.validation``; tensor conversion and data checks
from ``focalkit.torch._inputs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from focalkit._core import validation
from focalkit._core.validation import Reduction
from focalkit.torch import _inputs
from focalkit.torch._family import LogitShift
from focalkit.torch._inputs import ArrayLike
from focalkit.torch._kernels._common import mean_grad_scale
from focalkit.torch._kernels.family import ShiftedSoftmaxSettings
from focalkit.torch._kernels.fused import fused_chunk_rows
from focalkit.torch._settings import (
    FusedSettings,
    SigmoidSettings,
    SoftmaxKernelSettings,
    SoftmaxSettings,
)

Alpha = float | Sequence[float] | Tensor | None


Gamma = float | Tensor


def check_common(where: str, reduction: object, gamma: object) -> None:
    validation.check_reduction(reduction, where)
    if not isinstance(gamma, Tensor):
        _inputs.check_number("gamma", gamma, validation.NONNEGATIVE, where)


Divisor = float | Tensor


def reduction_for(reduction: Reduction, divisor: object, where: str) -> Reduction:
    """The reduction to compute: ``'sum'`` where a ``divisor`` will divide it, else ``reduction``.

    A number ``divisor`` must be positive and finite; a tensor one must be a real 0-dim tensor,
    whose value is not read (reading it would synchronise with an accelerator).
    """
    if isinstance(divisor, Tensor):
        if reduction != "mean":
            raise ValueError(validation.divisor_reduction_message(where, reduction))
        if divisor.dim() != 0 or divisor.is_complex() or divisor.dtype == torch.bool:
            raise ValueError(
                f"{where}: divisor must be a positive number or a real 0-dim tensor, got a "
                f"tensor of shape {tuple(divisor.shape)} and dtype {divisor.dtype}"
            )
        return "sum"
    if divisor is not None and torch.compiler.is_compiling() and validation.is_number(divisor):
        if reduction != "mean":
            raise ValueError(validation.divisor_reduction_message(where, reduction))
        message = f"{where}: divisor must be a positive finite number"
        for holds in (float(divisor) > 0.0, float(divisor) < math.inf):  # type: ignore[arg-type]
            torch._check(holds, lambda: message)  # type: ignore[no-untyped-call]
        return "sum"
    validation.check_divisor(reduction, divisor, where)
    return reduction if divisor is None else "sum"


def float_gamma(gamma: object, where: str) -> float:
    """Losses that take only a number for gamma."""
    if isinstance(gamma, Tensor):
        raise TypeError(f"{where}: gamma must be a real number >= 0, got a tensor")
    return _inputs.check_number("gamma", gamma, validation.NONNEGATIVE, where)


def gamma_setting(gamma: Gamma, loss_shape: torch.Size, x: Tensor, where: str) -> float | Tensor:
    """A number, or a tensor broadcast to the unreduced loss's shape (a constant for autograd)."""
    if not isinstance(gamma, Tensor):
        return float(gamma)
    if gamma.is_complex() or gamma.dtype == torch.bool:
        raise TypeError(f"{where}: gamma must hold real numbers, got dtype {gamma.dtype}")
    try:
        broadcast = torch.broadcast_to(gamma.detach().to(x.device, x.dtype), loss_shape)
    except RuntimeError:
        raise validation.not_broadcastable(
            where, "gamma", gamma.shape, loss_shape, "the unreduced loss"
        ) from None
    _inputs.check_nonnegative_values(broadcast, "gamma", where)
    return broadcast


def per_class(
    value: ArrayLike | None, name: str, num_classes: int, x: Tensor, where: str
) -> Tensor | None:
    if value is None:
        return None
    tensor = _inputs.as_tensor(value, name, x, where)
    validation.check_per_class_length(name, tensor.shape, num_classes, where)
    return tensor


def logit_offset(value: ArrayLike, num_classes: int, x: Tensor, where: str) -> Tensor:
    """A per-class ``(C,)`` offset for the logits, in ``x``'s dtype and on its device."""
    tensor = _inputs.as_tensor(value, "logit_offset", x, where)
    validation.check_per_class_length("logit_offset", tensor.shape, num_classes, where)
    return tensor


def softmax_alpha(
    alpha: Alpha, num_classes: int, x: Tensor, where: str
) -> tuple[float | Tensor | None, Tensor | None]:
    """``alpha`` split into a scale for every term and a per-class ``(C,)`` tensor."""
    setting = _inputs.alpha_setting(alpha, validation.NONNEGATIVE, where)
    if not isinstance(setting, Tensor):
        return setting, None
    tensor = setting.to(device=x.device, dtype=x.dtype)
    if tensor.dim() == 0:
        return tensor, None
    validation.check_per_class_length("alpha", tensor.shape, num_classes, where)
    return None, tensor


def class_index_target(
    target: Tensor, input: Tensor, ignore_index: int, where: str
) -> tuple[Tensor, Tensor]:
    """Check class-index targets; return the mask of kept elements and a gather index."""
    expected = (*input.shape[:1], *input.shape[2:])
    target = _inputs.class_indices(
        target, expected, input.shape, input.shape[1], ignore_index, where
    )
    kept = target != ignore_index
    index = torch.where(kept, target, 0).unsqueeze(1)
    return kept, index


def kept_weight(kept: Tensor, index: Tensor, weight: Tensor | None, dtype: torch.dtype) -> Tensor:
    """The ``'mean'`` divisor of class-index targets: the kept targets' summed weight."""
    if weight is None:
        return kept.sum().to(dtype)
    return torch.where(kept, weight[index.squeeze(1)], weight.new_zeros(())).sum().to(dtype)


def product(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    if first is None:
        return second
    return first if second is None else first * second


def unbatched(input: Tensor, where: str) -> bool:
    if input.dim() == 0:
        raise ValueError(f"{where}: input must have shape (C), (N, C) or (N, C, d1, ...), got ()")
    return input.dim() == 1


def elementwise_target(
    target: Tensor, input: Tensor, compute_dtype: torch.dtype, where: str
) -> Tensor:
    """Targets of the input's shape with values in [0, 1]; integer and bool targets are cast."""
    if target.is_complex():
        raise TypeError(f"{where}: target must be real, got dtype {target.dtype}")
    if target.shape != input.shape:
        raise validation.shape_mismatch(where, "target", input.shape, target.shape, input.shape)
    y = target.to(compute_dtype)
    _inputs.check_unit_interval_values(y, "target", where)
    return y


def bin_target(input: Tensor, target: Tensor, where: str) -> Tensor:
    """Real targets in ``[0, n]`` for logits over the ``n + 1`` bins of dim 1 of ``input``."""
    if input.dim() < 2 or input.shape[1] < 2:
        raise ValueError(
            f"{where}: input must have shape (N, n + 1) or (N, n + 1, d1, ...) with n >= 1 "
            f"(logits over the bins 0..n), got {tuple(input.shape)}"
        )
    if target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"{where}: target must hold real numbers, got dtype {target.dtype}")
    expected = (*input.shape[:1], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise validation.shape_mismatch(where, "target", expected, target.shape, input.shape)
    bins = input.shape[1] - 1
    detail = f" (the bins 0..{bins} of input's dim 1)"
    _inputs.check_interval_values(target, 0.0, float(bins), "target", where, detail)
    return target


def elementwise_tensor(value: ArrayLike | None, name: str, x: Tensor, where: str) -> Tensor | None:
    if value is None:
        return None
    tensor = _inputs.as_tensor(value, name, x, where)
    _inputs.check_broadcasts(tensor, name, x, where)
    return tensor


def binary_alpha(alpha: Alpha, x: Tensor, where: str) -> float | Tensor | None:
    """A balance for positives in [0, 1]: a number, or a tensor broadcastable to the input."""
    setting = _inputs.alpha_setting(alpha, validation.UNIT_INTERVAL, where)
    if not isinstance(setting, Tensor):
        return setting
    tensor = setting.to(device=x.device, dtype=x.dtype)
    _inputs.check_broadcasts(tensor, "alpha", x, where)
    return tensor


def softmax_settings(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    gamma: Gamma,
    alpha: Alpha,
    where: str,
) -> SoftmaxSettings:
    """The settings of a softmax focal loss over class dim 1 of a checked ``(N, C, d...)`` input:
    per-class weights, alpha, gamma, the target (class indices or probabilities) and the
    ``'mean'`` divisor."""
    compute_dtype, _ = _inputs.dtypes(input)
    like = input.new_empty((), dtype=compute_dtype)  # the dtype and device of settings
    num_classes = input.shape[1]
    w = per_class(weight, "weight", num_classes, like, where)
    scale, alpha_per_class = softmax_alpha(alpha, num_classes, like, where)
    class_coef = product(alpha_per_class, w)
    loss_shape = torch.Size((*input.shape[:1], *input.shape[2:]))
    element_gamma = gamma_setting(gamma, loss_shape, like, where)
    # (N, 1, d1, ...): one gamma per element, broadcast over the classes
    class_gamma = element_gamma.unsqueeze(1) if isinstance(element_gamma, Tensor) else element_gamma

    kept: Tensor | None = None
    index: Tensor | None = None
    q: Tensor | None = None
    if target.is_floating_point():
        if target.shape == loss_shape:
            raise validation.class_indices_dtype_error(where, target.shape, target.dtype, True)
        if target.shape != input.shape:
            raise ValueError(
                f"{where}: expected target of shape {tuple(input.shape)} (class probabilities) "
                f"or {tuple(loss_shape)} (class indices) for input of shape "
                f"{tuple(input.shape)}, got {tuple(target.shape)}"
            )
        _inputs.check_unit_interval_values(target, "target (class probabilities)", where)
        q = target
        divisor = torch.tensor(loss_shape.numel(), dtype=compute_dtype, device=input.device)
    else:
        kept, index = class_index_target(target, input, ignore_index, where)
        divisor = kept_weight(kept, index, w, compute_dtype)
    return SoftmaxSettings(
        compute_dtype,
        index,
        kept,
        q,
        w,
        alpha_per_class,
        scale,
        class_coef,
        class_gamma,
        label_smoothing,
        reduction,
        divisor,
    )


def softmax_kernel_settings(
    settings: SoftmaxSettings, *, needs_grad: bool
) -> SoftmaxKernelSettings:
    """The softmax kernel's settings: each element's ``scale * kept`` and the ``'mean'``
    gradient's factor, from the loss's settings."""
    kept, scale, q = settings.kept, settings.scale, settings.q
    row_coef = None  # each element's scale * kept, shaped (N, 1, d1, ...); None: all ones
    if kept is not None:
        row_coef = kept.unsqueeze(1).to(settings.compute_dtype)
    elif scale is not None and q is not None:  # probabilities: every element is kept
        row_coef = settings.divisor.new_ones((q.shape[0], 1, *q.shape[2:]))
    if scale is not None and row_coef is not None:
        row_coef = row_coef * scale
    divisor = settings.divisor
    return SoftmaxKernelSettings(
        settings.target_index,
        settings.q,
        settings.class_coef,
        row_coef,
        settings.gamma,
        float(settings.label_smoothing),
        None if kept is None else kept.unsqueeze(1),
        divisor,
        mean_grad_scale(divisor, None if settings.weight is None else kept),
        settings.reduction,
        settings.compute_dtype,
        needs_grad,
    )


def sigmoid_settings(
    input: Tensor,
    target: Tensor,
    weight: ArrayLike | None,
    reduction: str,
    pos_weight: ArrayLike | None,
    gamma: Gamma,
    alpha: Alpha,
    where: str,
) -> SigmoidSettings:
    """The settings of a sigmoid focal loss on a checked input: every tensor in the compute dtype,
    broadcastable to the input."""
    compute_dtype, _ = _inputs.dtypes(input)
    like = input.new_empty((), dtype=compute_dtype).expand(input.shape)  # no memory
    y = elementwise_target(target, input, compute_dtype, where)
    w = elementwise_tensor(weight, "weight", like, where)
    pw = elementwise_tensor(pos_weight, "pos_weight", like, where)
    a = binary_alpha(alpha, like, where)
    return SigmoidSettings(
        compute_dtype, y, w, pw, a, gamma_setting(gamma, input.shape, like, where), reduction
    )


def fused_settings(
    kept: Tensor,
    index: Tensor,
    weight: Tensor | None,
    alpha_per_class: Tensor | None,
    scale: float | Tensor | None,
    gamma: float,
    label_smoothing: float,
    reduction: str,
    chunk_size: int | None,
    num_classes: int,
    compute_dtype: torch.dtype,
) -> FusedSettings:
    """The fused linear loss's settings, for ``(N,)`` class indices (``kept`` and ``index``
    ``(N, 1)``, ignored ones 0) and checked per-class ``weight`` and ``alpha``."""
    row_coef = kept.unsqueeze(1).to(compute_dtype)
    if scale is not None:
        row_coef = row_coef * scale
    divisor = kept_weight(kept, index, weight, compute_dtype)
    chunk = chunk_size or fused_chunk_rows(
        index.shape[0], num_classes, compute_dtype, one_hot=label_smoothing == 0
    )
    return FusedSettings(
        index,
        product(alpha_per_class, weight),
        row_coef,
        gamma,
        float(label_smoothing),
        kept.unsqueeze(1),
        divisor,
        mean_grad_scale(divisor, None if weight is None else kept),
        reduction,
        chunk,
        torch.is_grad_enabled(),
    )


def logit_shift(
    settings: SoftmaxSettings,
    num_classes: int,
    offset: ArrayLike | None,
    margins: ArrayLike | None,
    scale: float | None,
    where: str,
) -> LogitShift:
    """The map of the logits before the softmax (:class:`~focalkit.torch._family.LogitShift`):
    the ``(C,)`` offset, each element's margin at its target class (class indices only; 0 where
    ignored) and the scale, in the compute dtype and on the input's device."""
    like = settings.divisor  # a 0-dim tensor of the compute dtype, on the input's device
    offset_tensor = margin = None
    if offset is not None:
        offset_tensor = _inputs.as_tensor(offset, "logit_offset", like, where)
        validation.check_per_class_length("logit_offset", offset_tensor.shape, num_classes, where)
    index = settings.target_index
    if margins is not None:
        per_class_margin = _inputs.as_tensor(margins, "margins", like, where)
        validation.check_per_class_length("margins", per_class_margin.shape, num_classes, where)
        _inputs.check_nonnegative_values(per_class_margin, "margins", where)
        if index is None or settings.kept is None:
            raise TypeError(f"{where}: target must hold class indices (an integer tensor)")
        margin = torch.where(settings.kept.unsqueeze(1), per_class_margin[index], 0.0)
    return LogitShift(offset_tensor, margin, index, scale)


def one_hot_target(settings: SoftmaxSettings) -> bool:
    """Whether the target is class indices without label smoothing and gamma is a number."""
    return (
        settings.target_index is not None
        and settings.label_smoothing == 0
        and not isinstance(settings.gamma, Tensor)
    )


def shifted_softmax_settings(
    settings: SoftmaxSettings, shift: LogitShift, epsilon: float, *, needs_grad: bool
) -> ShiftedSoftmaxSettings:
    """The settings of :class:`~focalkit.torch._kernels.family.ShiftedSoftmaxFocal`, for
    settings of which :func:`one_hot_target` holds."""
    index, kept = settings.target_index, settings.kept
    if index is None or kept is None or isinstance(settings.gamma, Tensor):
        raise ValueError("the shifted softmax kernel takes class indices and a number gamma")
    coef = kept.unsqueeze(1).to(settings.compute_dtype)
    if settings.class_coef is not None:
        coef = coef * settings.class_coef[index]
    if settings.scale is not None:
        coef = coef * settings.scale
    return ShiftedSoftmaxSettings(
        index,
        coef,
        shift.offset,
        shift.margin,
        shift.scale,
        float(settings.gamma),
        float(epsilon),
        settings.divisor,
        mean_grad_scale(settings.divisor, None if settings.weight is None else kept),
        settings.reduction,
        settings.compute_dtype,
        needs_grad,
    )


def check_linear_head(
    input: Tensor, classifier: object, bias: object, where: str, classes: str = "C"
) -> int:
    """Check a fused loss's ``(*, D)`` input against its ``(classes, D)`` classifier and
    ``(classes,)`` bias; return the classifier's number of rows."""
    if not isinstance(classifier, Tensor) or classifier.dim() != 2:
        raise ValueError(
            f"{where}: classifier must be a ({classes}, D) tensor, got {_shape_of(classifier)}"
        )
    if input.dim() < 1 or input.shape[-1] != classifier.shape[1]:
        raise ValueError(
            f"{where}: expected input of shape (*, {classifier.shape[1]}) for classifier of shape "
            f"{tuple(classifier.shape)}, got {tuple(input.shape)}"
        )
    rows = classifier.shape[0]
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (rows,)):
        raise ValueError(f"{where}: bias must have shape ({rows},), got {_shape_of(bias)}")
    return int(rows)


def _shape_of(value: object) -> object:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
