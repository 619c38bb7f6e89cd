r"""Focal losses for Keras 3 on any backend (TensorFlow, JAX, PyTorch), written in ``keras.ops``.

Each loss is defined once, by its function (``sparse_categorical_focal_crossentropy``,
``categorical_focal_crossentropy``, ``binary_focal_crossentropy``); the classes check their
settings at construction, hold them, and call the function. The numbers are those of focalkit's
PyTorch losses (``softmax_focal_loss``, ``sigmoid_focal_loss``, ``binary_focal_loss``).

Logits (``from_logits=True``) are worked in log space: :math:`\log p` by ``log_softmax`` or
``log_sigmoid`` and :math:`\log(1 - p)` from the logits, never from a clipped :math:`p`, so values
and gradients stay finite and exact however confident the logits. Probabilities follow Keras's own
convention, so that they agree with Keras's built-in losses: categorical probabilities are
renormalised over the class axis, then clipped to ``[epsilon, 1 - epsilon]`` with
``keras.config.epsilon()``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TypeGuard

import keras  # type: ignore[import-untyped]
import numpy as np
from keras import ops
from keras.src.backend.common.masking import (  # type: ignore[import-untyped]
    set_keras_mask,  # not exported; Keras's own SparseCategoricalCrossentropy uses it
)

from focalkit._core import validation

__all__ = [
    "BinaryFocalCrossentropy",
    "CategoricalFocalCrossentropy",
    "SparseCategoricalFocalCrossentropy",
    "binary_focal_crossentropy",
    "categorical_focal_crossentropy",
    "sparse_categorical_focal_crossentropy",
]

Tensor = Any  # a tensor of the active Keras backend (keras.ops is untyped)
PerClass = float | Sequence[float] | None  # what a user passes for alpha or class_weight
# The same, checked and normalised; the functions also take a tensor traced under jit (below).
Checked = float | tuple[float, ...] | Tensor | None
_HALF = ("float16", "bfloat16")


# ---------------------------------------------------------------------------------------------
# Settings: plain Python values, checked with focalkit's shared messages.


def _is_tensor(value: object) -> TypeGuard[Tensor]:
    """Whether ``value`` is a tensor of the active backend, a tracer under jit included."""
    return bool(ops.is_tensor(value))


def _check_bool(name: str, value: object, where: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be a bool, got {value!r}")


def _check_axis(axis: object, where: str) -> None:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{where}: axis must be an int, got {axis!r}")


def _check_ignore_class(ignore_class: object, where: str) -> None:
    if ignore_class is not None and (
        not isinstance(ignore_class, (int, np.integer)) or isinstance(ignore_class, bool)
    ):
        raise TypeError(f"{where}: ignore_class must be an int or None, got {ignore_class!r}")


def _per_class_setting(name: str, value: object, where: str, *, unit: bool) -> Checked:
    """``None``, a float, or a tuple of floats, each in [0, 1] (``unit``) or >= 0; a tensor is
    read and checked, or returned as it is when traced under jit (its values unknown yet)."""
    check = validation.check_unit_interval if unit else validation.check_nonnegative
    if value is None:
        return None
    if _is_tensor(value):
        if len(value.shape) > 1:
            raise ValueError(
                f"{where}: {name} must be a number or a 1-D sequence with one value per class, "
                f"got shape {tuple(value.shape)}"
            )
        values = _concrete(value)
        if values is None:  # traced (jit): its values cannot be checked before it runs
            return value
        if values.ndim == 0:
            value = values.item()
            check(name, value, where)
            return float(value)  # type: ignore[arg-type]
        value = values
    if validation.is_number(value):
        check(name, value, where)
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{where}: {name} must be a number or a sequence of numbers, got {value!r}")
    try:
        array = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{where}: {name} must be a number or a sequence of numbers, got {value!r}"
        ) from error
    if array.ndim != 1:
        raise ValueError(
            f"{where}: {name} must be a number or a 1-D sequence with one value per class, "
            f"got shape {array.shape}"
        )
    for entry in array.tolist():
        check(name, entry, where)
    return tuple(array.tolist())


def _check_gamma(gamma: object, where: str) -> float:
    validation.check_gamma(gamma, where)
    return float(gamma)  # type: ignore[arg-type]


def _gamma_argument(gamma: object, where: str) -> float | Tensor:
    """The functions' ``gamma``: a number, or a scalar tensor (read and checked when it can be;
    passed through when traced under jit, as optax's losses take it)."""
    if _is_tensor(gamma):
        if len(gamma.shape) != 0:
            raise ValueError(f"{where}: gamma must be a scalar, got shape {tuple(gamma.shape)}")
        values = _concrete(gamma)
        if values is None:
            return gamma
        gamma = values.item()
    return _check_gamma(gamma, where)


def _is_zero(gamma: float | Tensor) -> bool:
    """Whether ``gamma`` is known to be 0 (then the focal factor is left out)."""
    return isinstance(gamma, float) and gamma == 0.0


def _per_class(value: Checked) -> bool:
    """Whether a checked ``alpha`` or ``class_weight`` holds one value per class."""
    return isinstance(value, tuple) or (_is_tensor(value) and len(value.shape) == 1)


def _scalar(value: float | Tensor, dtype: Any) -> float | Tensor:
    """A scalar setting to multiply a tensor of ``dtype`` with."""
    return ops.cast(value, dtype) if _is_tensor(value) else value


# ---------------------------------------------------------------------------------------------
# Tensors.


def _compute_dtype(y_pred: Tensor) -> tuple[Tensor, str]:
    """``y_pred`` as a floating tensor to compute with (float32 for half), and the output dtype."""
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(y_pred.dtype)
    if not keras.backend.is_float_dtype(dtype):
        y_pred = ops.cast(y_pred, keras.config.floatx())
        dtype = keras.config.floatx()
    if dtype in _HALF:
        return ops.cast(y_pred, "float32"), dtype
    return y_pred, dtype


def _shape(x: Tensor) -> tuple[int | None, ...]:
    return tuple(x.shape)


def _shape_mismatch(
    where: str, expected: Sequence[int | None], got: Sequence[int | None], y_pred_shape: Any
) -> ValueError:
    # None marks a size unknown while tracing; the shared message prints it as None.
    error = validation.shape_mismatch(where, "y_true", expected, got, y_pred_shape)  # type: ignore[arg-type]
    return ValueError(str(error).replace("for input of shape", "for y_pred of shape"))


def _canonical_axis(axis: int, rank: int, where: str) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"{where}: axis={axis} is out of range for y_pred of rank {rank}")
    return axis % rank


def _num_classes(y_pred: Tensor, where: str) -> int:
    num_classes = _shape(y_pred)[-1]
    if num_classes is None:
        raise ValueError(
            f"{where}: the class axis of y_pred must have a known size, got shape {_shape(y_pred)}"
        )
    return int(num_classes)


def _same_shape(shape: Sequence[int | None], other: Sequence[int | None]) -> bool:
    return len(shape) == len(other) and all(
        a is None or b is None or a == b for a, b in zip(shape, other, strict=True)
    )


def _match_rank(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Keras's convention: targets ``(N,)`` go with predictions ``(N, 1)``, and back."""
    true_shape, pred_shape = _shape(y_true), _shape(y_pred)
    if len(true_shape) == len(pred_shape) - 1 and pred_shape[-1] == 1:
        return ops.expand_dims(y_true, -1)
    if len(true_shape) == len(pred_shape) + 1 and true_shape[-1] == 1:
        return ops.squeeze(y_true, -1)
    return y_true


def _class_vector(
    value: tuple[float, ...] | Tensor, num_classes: int, name: str, where: str, dtype: Any
) -> Tensor:
    """A per-class setting as a ``(C,)`` tensor in the computation's ``dtype`` (float64 stays
    float64; TensorFlow multiplies no float32 by a float64)."""
    if isinstance(value, tuple):
        validation.check_per_class_length(name, (len(value),), num_classes, where)
        return ops.convert_to_tensor(np.asarray(value, dtype=np.float64), dtype=dtype)
    if value.shape[0] is not None:  # a tensor traced under jit: its length, when known
        validation.check_per_class_length(name, (int(value.shape[0]),), num_classes, where)
    return ops.cast(value, dtype)


def _traced(x: Tensor) -> bool:
    """Whether ``x``'s values cannot be read now (``tf.function``, ``jax.jit``, torch.compile)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return not sys.modules["tensorflow"].executing_eagerly()
    if backend == "jax":
        return isinstance(x, sys.modules["jax"].core.Tracer)
    if backend == "torch":
        return bool(sys.modules["torch"].compiler.is_compiling())
    return False


def _concrete(x: Tensor) -> np.ndarray[Any, Any] | None:
    """``x``'s values when they can be read now (eagerly), else ``None`` (traced, compiled)."""
    if _traced(x):
        return None
    if keras.backend.standardize_dtype(x.dtype) == "bfloat16":
        x = ops.cast(x, "float32")  # exact; NumPy and torch's .numpy() have no bfloat16
    if keras.backend.backend() == "torch":
        return np.asarray(x.detach().cpu().numpy())  # Keras's own conversion warns on NumPy 2
    return np.asarray(ops.convert_to_numpy(x))


def _check_class_indices(
    y_true: Tensor, num_classes: int, ignore_class: int | None, where: str
) -> None:
    if not validation.inputs_validated():
        return
    values = _concrete(y_true)
    if values is None:
        return
    bad = (values < 0) | (values >= num_classes)
    if ignore_class is not None:
        bad &= values != ignore_class
    if np.any(bad):
        allowed = "" if ignore_class is None else f" or equal ignore_class={ignore_class}"
        raise ValueError(
            f"{where}: y_true class indices must be in [0, {num_classes}){allowed}; "
            f"got {values[bad].reshape(-1)[0]:g}"
        )
    # NaN passes: it is missing data, and its loss is NaN (see _undefined_labels).
    fraction = np.isfinite(values) & (values != np.floor(values))
    if np.any(fraction):
        raise ValueError(
            f"{where}: y_true class indices must be whole numbers; "
            f"got {values[fraction].reshape(-1)[0]:g}"
        )


def _undefined_labels(y_true: Tensor) -> Tensor | None:
    """Where float labels name no class (NaN, an infinity, a fraction); ``None`` for integers.

    Their loss is NaN, traced or not: a NaN label gives NaN out, and a fraction or an infinity that
    the eager check cannot see (under ``jit``) is not silently truncated to some class.
    """
    if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(y_true.dtype)):
        return None
    # y - floor(y) in y's dtype: Keras's torch backend floors float64 in float32.
    whole = ops.logical_and(ops.isfinite(y_true), ops.equal(y_true - ops.floor(y_true), 0))
    return ops.logical_not(whole)


def _logsumexp_or_minus_inf(x: Tensor) -> Tensor:
    """``logsumexp`` over the last axis (kept); ``-inf`` with a zero gradient for empty rows."""
    shift = ops.stop_gradient(ops.max(x, axis=-1, keepdims=True))
    shift = ops.where(ops.isinf(shift), ops.zeros_like(shift), shift)
    total = ops.sum(ops.exp(x - shift), axis=-1, keepdims=True)
    empty = ops.equal(total, 0.0)
    safe_total = ops.where(empty, ops.ones_like(total), total)
    return ops.where(empty, ops.full_like(total, -np.inf), shift + ops.log(safe_total))


def _log_softmax_and_complement(x: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    r""":math:`\log p` and :math:`\log(1 - p)` over the last axis, :math:`p = \mathrm{softmax}(x)`.

    As in focalkit's PyTorch losses: for every class but the most likely one :math:`p \le 1/2` and
    ``log1p(-p)`` is exact; for the most likely class :math:`c`,
    :math:`\log(1 - p_c) = \log\sigma(d)` with :math:`d = \log\sum_{j \ne c} e^{x_j - x_c}`, finite
    however confident the logits, so :math:`(1 - p)^\gamma` has finite derivatives everywhere.
    Its :math:`\log p_c = \log\sigma(-d)` too: ``log_softmax`` rounds a confident
    :math:`-\log p_c \approx e^d` to 0 once :math:`e^d` is below the precision, and the loss of
    every confident, right prediction with it.
    """
    top = ops.expand_dims(ops.argmax(x, axis=-1), -1)
    is_top = ops.cast(ops.one_hot(top[..., 0], num_classes), "bool")
    # x_c by a gather, not a max: at ties the gradient must reach class c alone.
    minus_inf = ops.full_like(x, -np.inf)
    others = ops.where(is_top, minus_inf, x - ops.take_along_axis(x, top, axis=-1))
    d = _logsumexp_or_minus_inf(others)
    log_p = ops.where(is_top, ops.log_sigmoid(-d), ops.log_softmax(x, axis=-1))
    log_1mp_rest = ops.log1p(-ops.exp(ops.where(is_top, minus_inf, log_p)))
    return log_p, ops.where(is_top, ops.log_sigmoid(d), log_1mp_rest)


def _categorical_parts(
    y_pred: Tensor, from_logits: bool, gamma: float | Tensor, num_classes: int
) -> tuple[Tensor, Tensor]:
    r""":math:`-\log p` and :math:`(1 - p)^\gamma` for every class (class axis last)."""
    if from_logits:
        log_p, log_1mp = _log_softmax_and_complement(y_pred, num_classes)
        modulating = ops.ones_like(log_p) if _is_zero(gamma) else _exp_power(log_1mp, gamma)
        return -log_p, modulating
    epsilon = keras.config.epsilon()
    output = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    output = ops.clip(output, epsilon, 1.0 - epsilon)
    return -ops.log(output), _power(1.0 - output, gamma)


def _power(base: Tensor, exponent: float | Tensor) -> Tensor:
    """``base ** exponent``, the exponent in ``base``'s dtype (Keras's torch backend would round a
    Python float exponent to float32, and a float64 result with it; so would ``ops.cast``)."""
    if _is_tensor(exponent):
        return ops.power(base, ops.cast(exponent, base.dtype))
    return ops.power(base, ops.convert_to_tensor(exponent, dtype=base.dtype))


def _exp_power(log_base: Tensor, gamma: float | Tensor) -> Tensor:
    """``base ** gamma`` from ``log(base)``; with a traced gamma of 0, ``0 ** 0 = 1`` (not NaN)."""
    if _is_tensor(gamma):
        gamma = ops.cast(gamma, log_base.dtype)
        zero_power = ops.logical_and(ops.equal(gamma, 0.0), ops.isinf(log_base))
        log_base = ops.where(zero_power, ops.zeros_like(log_base), log_base)
    return ops.exp(gamma * log_base)


def _finish(loss: Tensor, out_dtype: str) -> Tensor:
    return loss if out_dtype == "float32" else ops.cast(loss, out_dtype)


# ---------------------------------------------------------------------------------------------
# The three losses: functions (one definition each), then the Loss classes.


def sparse_categorical_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    gamma: float | Tensor = 2.0,
    alpha: PerClass | Tensor = None,
    from_logits: bool = False,
    ignore_class: int | None = None,
    axis: int = -1,
) -> Tensor:
    r"""Focal loss for class indices, unreduced; see :class:`SparseCategoricalFocalCrossentropy`.

    ``gamma=0, alpha=None`` is ``keras.losses.sparse_categorical_crossentropy``. One value per
    position, zero at ignored positions, which are also marked in the result's Keras mask so that a
    Keras ``Loss`` leaves them out of its mean.

    ``gamma`` and ``alpha`` may be tensors, as in optax's losses: checked when their values can
    be read, taken unchecked when traced (arguments of a ``jax.jit`` or ``tf.function``).

    Example:
        >>> import numpy as np, keras
        >>> from focalkit.keras import sparse_categorical_focal_crossentropy
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], "float32")
        >>> loss = sparse_categorical_focal_crossentropy([0, 1], logits, from_logits=True)
        >>> keras.ops.convert_to_numpy(loss).round(4)
        array([0.0111, 1.7026], dtype=float32)
    """
    where = "sparse_categorical_focal_crossentropy()"
    gamma = _gamma_argument(gamma, where)
    alpha = _per_class_setting("alpha", alpha, where, unit=False)
    _check_bool("from_logits", from_logits, where)
    _check_ignore_class(ignore_class, where)
    _check_axis(axis, where)
    return _sparse(y_true, y_pred, gamma, alpha, bool(from_logits), ignore_class, axis, where)


def _sparse(
    y_true: Tensor,
    y_pred: Tensor,
    gamma: float | Tensor,
    alpha: Checked,
    from_logits: bool,
    ignore_class: int | None,
    axis: int,
    where: str,
) -> Tensor:
    y_pred, out_dtype = _compute_dtype(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    rank = len(_shape(y_pred))
    if rank == 0:
        raise ValueError(f"{where}: y_pred must have a class axis, got shape ()")
    axis = _canonical_axis(axis, rank, where)
    original_pred_shape = _shape(y_pred)
    if len(_shape(y_true)) == rank and _shape(y_true)[axis] == 1:
        y_true = ops.squeeze(y_true, axis)
    y_pred = ops.moveaxis(y_pred, axis, -1) if axis != rank - 1 else y_pred
    expected = _shape(y_pred)[:-1]
    if not _same_shape(_shape(y_true), expected):
        raise _shape_mismatch(where, expected, _shape(y_true), original_pred_shape)
    num_classes = _num_classes(y_pred, where)
    dtype = keras.backend.standardize_dtype(y_true.dtype)
    if not (keras.backend.is_int_dtype(dtype) or keras.backend.is_float_dtype(dtype)):
        raise TypeError(f"{where}: y_true must hold class indices, got dtype {dtype}")
    _check_class_indices(y_true, num_classes, ignore_class, where)

    valid = None if ignore_class is None else ops.not_equal(y_true, ignore_class)
    undefined = _undefined_labels(y_true)
    if undefined is not None:  # class 0 as a placeholder: NaN is cast to no class in particular
        y_true = ops.where(undefined, ops.zeros_like(y_true), y_true)
    index = ops.cast(y_true, "int32")
    if valid is not None:
        index = ops.where(valid, index, ops.zeros_like(index))
    index = ops.expand_dims(index, -1)
    minus_log_p, modulating = _categorical_parts(y_pred, from_logits, gamma, num_classes)
    loss = ops.take_along_axis(minus_log_p, index, axis=-1)
    if not _is_zero(gamma):
        loss = ops.take_along_axis(modulating, index, axis=-1) * loss
    if _per_class(alpha):
        per_class = _class_vector(alpha, num_classes, "alpha", where, loss.dtype)
        loss = ops.take(per_class, index) * loss
    elif alpha is not None:
        loss = _scalar(alpha, loss.dtype) * loss
    loss = ops.squeeze(loss, -1)
    if undefined is not None:  # NaN in the value and in the gradient, as for a NaN in y_pred
        nan_or_one = ops.where(undefined, np.nan, 1.0)  # a factor: no NaN in a where's other branch
        loss = loss * ops.cast(nan_or_one, loss.dtype)
    if valid is not None:
        loss = ops.where(valid, loss, ops.zeros_like(loss))
    loss = _finish(loss, out_dtype)
    if valid is not None:
        set_keras_mask(loss, valid)
    return loss


def categorical_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    gamma: float | Tensor = 2.0,
    alpha: PerClass | Tensor = None,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> Tensor:
    r"""Focal loss for soft or one-hot targets, unreduced; see CategoricalFocalCrossentropy.

    With ``alpha=0.25`` it equals ``keras.losses.categorical_focal_crossentropy`` (whose default
    alpha is 0.25; focalkit's is ``None``); with ``gamma=0, alpha=None`` it is
    ``keras.losses.categorical_crossentropy``.

    ``gamma`` and ``alpha`` may be tensors, as in optax's losses: checked when their values can
    be read, taken unchecked when traced (arguments of a ``jax.jit`` or ``tf.function``).

    Example:
        >>> import numpy as np, keras
        >>> from focalkit.keras import categorical_focal_crossentropy
        >>> y_true = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], "float32")
        >>> loss = categorical_focal_crossentropy(y_true, logits, from_logits=True)
        >>> keras.ops.convert_to_numpy(loss).round(4)
        array([0.0111, 1.7026], dtype=float32)
    """
    where = "categorical_focal_crossentropy()"
    gamma = _gamma_argument(gamma, where)
    alpha = _per_class_setting("alpha", alpha, where, unit=False)
    _check_bool("from_logits", from_logits, where)
    validation.check_unit_interval("label_smoothing", label_smoothing, where)
    _check_axis(axis, where)
    return _categorical(
        y_true, y_pred, gamma, alpha, bool(from_logits), float(label_smoothing), axis, where
    )


def _elementwise_inputs(
    y_true: Tensor, y_pred: Tensor, axis: int, where: str
) -> tuple[Tensor, Tensor, str]:
    """Both tensors of one shape, float, with ``axis`` moved last."""
    y_pred, out_dtype = _compute_dtype(y_pred)
    y_true = _match_rank(ops.convert_to_tensor(y_true), y_pred)
    if not _same_shape(_shape(y_true), _shape(y_pred)):
        raise _shape_mismatch(where, _shape(y_pred), _shape(y_true), _shape(y_pred))
    rank = len(_shape(y_pred))
    if rank == 0:
        raise ValueError(f"{where}: y_pred must have at least one axis, got shape ()")
    axis = _canonical_axis(axis, rank, where)
    y_true = ops.cast(y_true, y_pred.dtype)
    if axis != rank - 1:
        y_true, y_pred = ops.moveaxis(y_true, axis, -1), ops.moveaxis(y_pred, axis, -1)
    return y_true, y_pred, out_dtype


def _categorical(
    y_true: Tensor,
    y_pred: Tensor,
    gamma: float | Tensor,
    alpha: Checked,
    from_logits: bool,
    label_smoothing: float,
    axis: int,
    where: str,
) -> Tensor:
    y_true, y_pred, out_dtype = _elementwise_inputs(y_true, y_pred, axis, where)
    num_classes = _num_classes(y_pred, where)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    minus_log_p, modulating = _categorical_parts(y_pred, from_logits, gamma, num_classes)
    terms = y_true * minus_log_p if _is_zero(gamma) else y_true * modulating * minus_log_p
    if _per_class(alpha):
        terms = terms * _class_vector(alpha, num_classes, "alpha", where, terms.dtype)
    loss = ops.sum(terms, axis=-1)
    if alpha is not None and not _per_class(alpha):
        loss = _scalar(alpha, loss.dtype) * loss
    return _finish(loss, out_dtype)


def binary_focal_crossentropy(
    y_true: Tensor,
    y_pred: Tensor,
    *,
    gamma: float | Tensor = 2.0,
    alpha: PerClass | Tensor = None,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    class_weight: PerClass = None,
    axis: int = -1,
) -> Tensor:
    r"""Binary and multi-label focal loss; the unreduced form of :class:`BinaryFocalCrossentropy`.

    Returns the mean over ``axis`` of the element-wise loss, as ``keras.losses.binary_crossentropy``
    does. With ``alpha=a`` it equals ``keras.losses.binary_focal_crossentropy(...,
    apply_class_balancing=True, alpha=a)``; with ``gamma=0, alpha=None`` it is
    ``keras.losses.binary_crossentropy``.

    ``gamma`` and ``alpha`` may be tensors, as in optax's losses: checked when their values can
    be read, taken unchecked when traced (arguments of a ``jax.jit`` or ``tf.function``).

    Example:
        >>> import numpy as np, keras
        >>> from focalkit.keras import binary_focal_crossentropy
        >>> y_true = np.array([[1.0, 0.0], [1.0, 1.0]])
        >>> logits = np.array([[3.0, -1.0], [-2.0, 0.5]], "float32")
        >>> loss = binary_focal_crossentropy(y_true, logits, alpha=0.25, from_logits=True)
        >>> keras.ops.convert_to_numpy(loss).round(4)
        array([0.0085, 0.2147], dtype=float32)
    """
    where = "binary_focal_crossentropy()"
    gamma = _gamma_argument(gamma, where)
    alpha = _per_class_setting("alpha", alpha, where, unit=True)
    class_weight = _per_class_setting("class_weight", class_weight, where, unit=False)
    _check_bool("from_logits", from_logits, where)
    validation.check_unit_interval("label_smoothing", label_smoothing, where)
    _check_axis(axis, where)
    return _binary(
        y_true,
        y_pred,
        gamma,
        alpha,
        bool(from_logits),
        float(label_smoothing),
        class_weight,
        axis,
        where,
    )


def _log_one_minus_pt(x: Tensor, y: Tensor) -> Tensor:
    r""":math:`\log(1 - p_t) = \log(y \sigma(-x) + (1 - y) \sigma(x))` from log-sigmoids.

    Hard labels take ``log_sigmoid`` directly; soft ones a log-add-exp, written out so that both
    branches of each ``where`` stay finite (as in focalkit's PyTorch ``sigmoid_focal_loss``).
    """
    log_p, log_1mp = ops.log_sigmoid(x), ops.log_sigmoid(-x)
    is_one, is_zero = ops.equal(y, 1.0), ops.equal(y, 0.0)
    hard = ops.logical_or(is_one, is_zero)
    y_soft = ops.where(hard, ops.full_like(y, 0.5), y)
    first, second = ops.log(y_soft) + log_1mp, ops.log1p(-y_soft) + log_p
    # where, not maximum and minimum: Keras's type promotion makes those float32 on float64.
    first_larger = ops.greater(first, second)
    larger = ops.where(first_larger, first, second)
    soft = larger + ops.log1p(ops.exp(ops.where(first_larger, second, first) - larger))
    return ops.where(is_one, log_1mp, ops.where(is_zero, log_p, soft))


def _binary(
    y_true: Tensor,
    y_pred: Tensor,
    gamma: float | Tensor,
    alpha: Checked,
    from_logits: bool,
    label_smoothing: float,
    class_weight: Checked,
    axis: int,
    where: str,
) -> Tensor:
    y, x, out_dtype = _elementwise_inputs(y_true, y_pred, axis, where)
    num_classes = _shape(x)[-1]
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        loss = -(y * ops.log_sigmoid(x) + (1.0 - y) * ops.log_sigmoid(-x))
        if not _is_zero(gamma):
            loss = _exp_power(_log_one_minus_pt(x, y), gamma) * loss
    else:
        # Keras's convention: clip to [epsilon, 1 - epsilon]. The focal factor uses the clipped
        # p too (Keras's uses the raw p), so its gradient stays finite at p_t = 1 with gamma < 1.
        epsilon = keras.config.epsilon()
        p = ops.clip(x, epsilon, 1.0 - epsilon)
        loss = -(y * ops.log(p) + (1.0 - y) * ops.log1p(-p))
        if not _is_zero(gamma):
            loss = _power(y * (1.0 - p) + (1.0 - y) * p, gamma) * loss
    if alpha is not None:
        balance = _binary_setting(alpha, num_classes, "alpha", where, loss.dtype)
        loss = loss * (balance * y + (1.0 - balance) * (1.0 - y))
    if class_weight is not None:
        loss = loss * _binary_setting(class_weight, num_classes, "class_weight", where, loss.dtype)
    # A sum over a count, not ops.mean: Keras's torch backend averages float64 in float32.
    count = ops.shape(loss)[-1]
    return _finish(ops.sum(loss, axis=-1) / ops.cast(count, loss.dtype), out_dtype)


def _binary_setting(
    value: Checked, num_classes: int | None, name: str, where: str, dtype: Any
) -> Any:
    """A scalar, or a per-class vector along the last axis (whose size must then be known)."""
    if not _per_class(value):
        return _scalar(value, dtype)
    if num_classes is None:
        raise ValueError(
            f"{where}: a per-class {name} needs y_pred's class axis to have a known size"
        )
    return _class_vector(value, num_classes, name, where, dtype)


def _base_config(loss: Any) -> dict[str, Any]:
    policy = loss.dtype_policy if hasattr(loss, "dtype_policy") else loss._dtype_policy
    return {"name": loss.name, "reduction": loss.reduction, "dtype": policy.name}


def _listed(value: Checked) -> float | list[float] | None:
    return list(value) if isinstance(value, tuple) else value


@keras.saving.register_keras_serializable(package="focalkit")
class SparseCategoricalFocalCrossentropy(keras.losses.Loss):  # type: ignore[misc]
    r"""Focal loss for integer class targets, the focal form of ``SparseCategoricalCrossentropy``.

    With :math:`p = \operatorname{softmax}(x)` over the class axis (or the given probabilities,
    renormalised and clipped to ``[epsilon, 1 - epsilon]``) and :math:`y` the target class, the
    loss of a position is

    .. math::
        \ell = -\alpha_y (1 - p_y)^{\gamma} \log p_y .

    ``gamma=0, alpha=None`` is ``keras.losses.SparseCategoricalCrossentropy``; on logits the
    value is the one of focalkit's PyTorch ``softmax_focal_loss``. Positions whose target is
    ``ignore_class`` contribute nothing, and ``"sum_over_batch_size"`` divides by the number of
    the other positions, as Keras's ``SparseCategoricalCrossentropy(ignore_class=...)`` and
    PyTorch's ``ignore_index`` do.

    Args:
        gamma: Focusing parameter :math:`\gamma \ge 0`. Default: 2.
        alpha: ``None`` (no weighting), a float that scales every term, or one non-negative value
            per class (along ``axis``). Default: ``None``.
        from_logits: Whether ``y_pred`` holds logits (computed in log space) or probabilities.
            Default: ``False``, as in Keras.
        ignore_class: A target value to leave out (e.g. a "void" class, -1 or 255). Default:
            ``None``.
        axis: The class axis of ``y_pred``. Default: -1.
        reduction: A Keras reduction: ``"sum_over_batch_size"`` (default), ``"sum"``,
            ``"mean"``, ``"mean_with_sample_weight"`` or ``None``.
        name: The loss's name. Default: ``"sparse_categorical_focal_crossentropy"``.
        dtype: The dtype of the loss's computations, as for any Keras ``Loss``. Default: ``None``
            (``keras.config.floatx()``). Half precision is computed in float32.

    Shape:
        - ``y_pred``: :math:`(N, \dots, C)` (the class axis at ``axis``).
        - ``y_true``: :math:`(N, \dots)` or :math:`(N, \dots, 1)`, class indices: integers, or
          floats holding whole numbers (a fraction raises; a NaN label gives a NaN loss, and
          under ``jit``, where labels cannot be checked, so do a fraction and an infinity).
        - Output: scalar; with ``reduction=None``, :math:`(N, \dots)`.

    Example:
        >>> import numpy as np
        >>> from focalkit.keras import SparseCategoricalFocalCrossentropy
        >>> logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], "float32")
        >>> loss = SparseCategoricalFocalCrossentropy(from_logits=True)
        >>> round(float(loss([0, 1], logits)), 4)  # same value as torch's softmax_focal_loss
        0.8568
        >>> ignoring = SparseCategoricalFocalCrossentropy(from_logits=True, ignore_class=-1)
        >>> round(float(ignoring([0, -1], logits)), 4)  # the mean over the one kept position
        0.0111

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: PerClass = None,
        from_logits: bool = False,
        ignore_class: int | None = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        where = "SparseCategoricalFocalCrossentropy()"
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = _check_gamma(gamma, where)
        self.alpha = _per_class_setting("alpha", alpha, where, unit=False)
        _check_bool("from_logits", from_logits, where)
        _check_ignore_class(ignore_class, where)
        _check_axis(axis, where)
        self.from_logits, self.axis = bool(from_logits), int(axis)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _sparse(
            y_true,
            y_pred,
            self.gamma,
            self.alpha,
            self.from_logits,
            self.ignore_class,
            self.axis,
            "SparseCategoricalFocalCrossentropy()",
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **_base_config(self),
            "gamma": self.gamma,
            "alpha": _listed(self.alpha),
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
            "axis": self.axis,
        }


@keras.saving.register_keras_serializable(package="focalkit")
class CategoricalFocalCrossentropy(keras.losses.Loss):  # type: ignore[misc]
    r"""Focal loss for one-hot or soft targets; Keras's CategoricalFocalCrossentropy in log space.

    With :math:`p` as in :class:`SparseCategoricalFocalCrossentropy` and :math:`q` the target
    distribution (with label smoothing :math:`(1 - \varepsilon) q + \varepsilon / C`), the loss
    of a position is

    .. math::
        \ell = -\sum_{c=1}^{C} \alpha_c\, q_c\, (1 - p_c)^{\gamma} \log p_c .

    ``alpha=0.25`` gives Keras's ``CategoricalFocalCrossentropy()`` (Keras's default alpha; ours
    is ``None``), exactly on probabilities and on moderate logits; on confident logits Keras's
    softmax-then-clip saturates (a true class at logit -100 against two at 0 gives 4.03 in Keras,
    25.17 here and in truth). ``gamma=0, alpha=None`` is ``CategoricalCrossentropy``.

    Args:
        gamma: Focusing parameter :math:`\gamma \ge 0`. Default: 2.
        alpha: ``None``, a float scaling every term, or one non-negative value per class (along
            ``axis``). Default: ``None``.
        from_logits: Whether ``y_pred`` holds logits or probabilities. Default: ``False``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`. Default: 0.
        axis: The class axis. Default: -1.
        reduction, name, dtype: As for any Keras ``Loss``; see
            :class:`SparseCategoricalFocalCrossentropy`.

    Shape:
        - ``y_pred`` and ``y_true``: :math:`(N, \dots, C)`.
        - Output: scalar; with ``reduction=None``, :math:`(N, \dots)`.

    Example:
        >>> import numpy as np, keras
        >>> from focalkit.keras import CategoricalFocalCrossentropy
        >>> y_true = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> probs = np.array([[0.1, 0.8, 0.1], [0.2, 0.3, 0.5]])
        >>> ours = CategoricalFocalCrossentropy(alpha=0.25)
        >>> round(float(ours(y_true, probs)), 6)
        0.022777
        >>> round(float(keras.losses.CategoricalFocalCrossentropy()(y_true, probs)), 6)
        0.022777
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: PerClass = None,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        where = "CategoricalFocalCrossentropy()"
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = _check_gamma(gamma, where)
        self.alpha = _per_class_setting("alpha", alpha, where, unit=False)
        _check_bool("from_logits", from_logits, where)
        validation.check_unit_interval("label_smoothing", label_smoothing, where)
        _check_axis(axis, where)
        self.from_logits, self.axis = bool(from_logits), int(axis)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _categorical(
            y_true,
            y_pred,
            self.gamma,
            self.alpha,
            self.from_logits,
            self.label_smoothing,
            self.axis,
            "CategoricalFocalCrossentropy()",
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **_base_config(self),
            "gamma": self.gamma,
            "alpha": _listed(self.alpha),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


@keras.saving.register_keras_serializable(package="focalkit")
class BinaryFocalCrossentropy(keras.losses.Loss):  # type: ignore[misc]
    r"""Binary and multi-label focal loss, with per-class ``alpha`` and ``class_weight``.

    With :math:`p = \sigma(x)` (or the given probability, clipped to ``[epsilon, 1 - epsilon]``),
    :math:`p_t = p y + (1 - p)(1 - y)`, :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)` and
    :math:`w_c` = ``class_weight``, the loss of element :math:`(n, c)` is

    .. math::
        \ell_{n,c} = -w_c\, \alpha_t (1 - p_t)^{\gamma}
            \left[ y \log p + (1 - y) \log(1 - p) \right],

    and, as Keras's binary losses do, the per-sample value is the mean over ``axis``
    (hand-written Keras focal losses often sum over classes instead: multiply by :math:`C`).
    ``alpha=a`` gives ``keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True,
    alpha=a)``; ``gamma=0, alpha=None`` gives ``BinaryCrossentropy``; on logits the
    element-wise value is the one of focalkit's PyTorch
    ``sigmoid_focal_loss(x, y, weight=class_weight, alpha=alpha)``.

    Args:
        gamma: Focusing parameter :math:`\gamma \ge 0`. Default: 2.
        alpha: Balance of positives, in :math:`[0, 1]` (:math:`1 - \alpha` for negatives): a
            float, one value per class, or ``None`` for no balancing. Default: ``None``.
        from_logits: Whether ``y_pred`` holds logits or probabilities. Default: ``False``.
        label_smoothing: :math:`\varepsilon`; targets become :math:`y (1 - \varepsilon) +
            \varepsilon / 2`. Default: 0.
        class_weight: One non-negative weight per class (along ``axis``), applied to both terms,
            e.g. from :func:`focalkit.class_weights`. Default: ``None``.
        axis: The class axis, averaged over. Default: -1.
        reduction, name, dtype: As for any Keras ``Loss``; see
            :class:`SparseCategoricalFocalCrossentropy`.

    Shape:
        - ``y_pred`` and ``y_true``: :math:`(N, \dots, C)`; ``y_true`` may be :math:`(N,)` for
          ``y_pred`` :math:`(N, 1)`.
        - Output: scalar; with ``reduction=None``, :math:`(N, \dots)`.

    Example:
        A hand-written Keras focal loss that sums over the classes, with weights from the class
        counts normalised to sum 1 (gamma 2), reproduced by multiplying by :math:`C`:

        >>> import numpy as np, keras, focalkit
        >>> from focalkit.keras import BinaryFocalCrossentropy
        >>> weights = focalkit.class_weights([100, 200, 50, 10], normalize="sum")
        >>> loss = BinaryFocalCrossentropy(gamma=2.0, class_weight=weights, reduction=None)
        >>> y_true = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
        >>> probs = np.array([[0.37623284, 0.33230947, 0.0481559, 0.2433018],
        ...                   [0.28295068, 0.07871247, 0.16113049, 0.47720636]])
        >>> (keras.ops.convert_to_numpy(loss(y_true, probs)) * 4).round(6)
        array([0.042068, 0.301712], dtype=float32)
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: PerClass = None,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        class_weight: PerClass = None,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        where = "BinaryFocalCrossentropy()"
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = _check_gamma(gamma, where)
        self.alpha = _per_class_setting("alpha", alpha, where, unit=True)
        self.class_weight = _per_class_setting("class_weight", class_weight, where, unit=False)
        _check_bool("from_logits", from_logits, where)
        validation.check_unit_interval("label_smoothing", label_smoothing, where)
        _check_axis(axis, where)
        self.from_logits, self.axis = bool(from_logits), int(axis)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _binary(
            y_true,
            y_pred,
            self.gamma,
            self.alpha,
            self.from_logits,
            self.label_smoothing,
            self.class_weight,
            self.axis,
            "BinaryFocalCrossentropy()",
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **_base_config(self),
            "gamma": self.gamma,
            "alpha": _listed(self.alpha),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "class_weight": _listed(self.class_weight),
            "axis": self.axis,
        }
