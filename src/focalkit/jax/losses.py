r"""Focal losses for JAX with optax's conventions: per-example losses, class axis, ``where`` masks.

Each function returns the unreduced loss (the caller averages, as with optax's losses), takes the
class axis as ``axis`` (default -1) and an optional boolean ``where`` mask in either of the shapes
optax's cross-entropy functions take. ``gamma`` and ``alpha`` may be traced arrays (arguments of a
jitted function); their values are checked only when they are concrete Python or NumPy values.

The numbers are those of focalkit's PyTorch losses, computed the same way: :math:`\log p` and
:math:`\log(1 - p)` come from the logits, never from a rounded :math:`p`. For class indices the
loss is a function of one margin per example, :math:`d = \log\sum_{j \ne t} e^{x_j} - x_t`, with
:math:`\log p_t = -\operatorname{softplus}(d)` and
:math:`\log(1 - p_t) = -\operatorname{softplus}(-d)`, both exact however confident the logits.
Where autodiff of the formula would be unsafe or slow, a ``jax.custom_jvp`` states the derivative,
simplified until it is bounded; the rules are written in differentiable operations, so
``jax.grad``, ``jax.hessian``, ``jax.jvp`` and ``jax.vmap`` give finite derivatives, exact to
rounding, at any finite logit and any ``gamma >= 0`` (``gamma < 1`` where :math:`p` rounds to 1
included). bfloat16 and float16 logits are computed in float32 and the loss comes back in their
dtype.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from focalkit._core import validation

__all__ = [
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "softmax_focal_loss_with_integer_labels",
]

ArrayLike: TypeAlias = jax.typing.ArrayLike
PerClass: TypeAlias = "ArrayLike | Sequence[float] | None"

# ---------------------------------------------------------------------------------------------
# Arguments: shapes always (they are static under jit), values only when they are concrete.


def _logits(logits: ArrayLike, where: str) -> tuple[jax.Array, jnp.dtype[Any]]:
    """The logits as an array to compute with (float32 for half precision), and the output dtype."""
    array = jnp.asarray(logits)
    validation.check_not_integer_input(
        bool(jnp.issubdtype(array.dtype, jnp.floating)), array.dtype, where
    )
    if array.dtype in (jnp.bfloat16, jnp.float16):
        return array.astype(jnp.float32), array.dtype
    return array, array.dtype


def _class_axis(axis: object, ndim: int, where: str) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{where}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{where}: axis={axis} is out of range for logits of rank {ndim}")
    return operator.index(axis) % ndim


def _concrete(value: object) -> np.ndarray[Any, Any] | None:
    """Values that can be checked on the host now: Python numbers and sequences, NumPy arrays."""
    if isinstance(value, jax.Array):  # traced, or on a device: not read back
        return None
    if isinstance(value, (str, bytes)):
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return array if array.dtype.kind in "iuf" else None


def _broadcasts(shape: Sequence[int], to: Sequence[int]) -> bool:
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(to))) == tuple(to)
    except ValueError:
        return False


def _gamma(gamma: object, loss_shape: tuple[int, ...], dtype: Any, where: str) -> jax.Array:
    """``gamma`` as an array broadcastable to the unreduced loss; concrete values are checked."""
    if validation.is_number(gamma):
        validation.check_gamma(gamma, where)
        return jnp.asarray(float(gamma), dtype)  # type: ignore[arg-type]
    values = _concrete(gamma)
    if values is not None:
        for value in values.reshape(-1).tolist():
            validation.check_gamma(value, where)
    elif not isinstance(gamma, jax.Array) or not jnp.issubdtype(gamma.dtype, jnp.number):
        validation.check_gamma(gamma, where)  # raises: not a number
    array = jnp.asarray(gamma, dtype)
    if not _broadcasts(array.shape, loss_shape):
        raise validation.not_broadcastable(
            where, "gamma", array.shape, loss_shape, "the unreduced loss"
        )
    return array


def _per_class_alpha(alpha: PerClass, num_classes: int, dtype: Any, where: str) -> jax.Array | None:
    """The softmax losses' ``alpha``: a scale (shape ``()``) or one value per class, ``(C,)``."""
    if alpha is None:
        return None
    if validation.is_number(alpha):
        validation.check_nonnegative("alpha", alpha, where)
        return jnp.asarray(float(alpha), dtype)  # type: ignore[arg-type]
    values = _concrete(alpha)
    if values is not None:
        for value in values.reshape(-1).tolist():
            validation.check_nonnegative("alpha", value, where)
    elif not isinstance(alpha, jax.Array):
        validation.check_nonnegative("alpha", alpha, where)  # raises: not a number
    array = jnp.asarray(alpha, dtype)
    if array.ndim != 0:
        validation.check_per_class_length("alpha", array.shape, num_classes, where)
    return array


def _binary_alpha(
    alpha: object, shape: tuple[int, ...], dtype: Any, where: str
) -> jax.Array | None:
    """The sigmoid loss's ``alpha``: a balance in [0, 1] broadcastable to the logits."""
    if alpha is None:
        return None
    if validation.is_number(alpha):
        validation.check_unit_interval("alpha", alpha, where)
        return jnp.asarray(float(alpha), dtype)  # type: ignore[arg-type]
    values = _concrete(alpha)
    if values is not None:
        for value in values.reshape(-1).tolist():
            validation.check_unit_interval("alpha", value, where)
    elif not isinstance(alpha, jax.Array):
        validation.check_unit_interval("alpha", alpha, where)  # raises: not a number
    array = jnp.asarray(alpha, dtype)
    if not _broadcasts(array.shape, shape):
        raise validation.not_broadcastable(where, "alpha", array.shape, shape, "logits")
    return array


def _where_masks(
    mask: ArrayLike | None, shape: tuple[int, ...], axis: int, where: str
) -> tuple[jax.Array | None, jax.Array | None]:
    """optax's two shapes of ``where``: one flag per example, or one per logit.

    Returns the per-example mask and the per-logit mask (as given, checked to broadcast to the
    per-example loss and to the logits), one of them ``None``.
    """
    if mask is None:
        return None, None
    array = jnp.asarray(mask).astype(bool)
    loss_shape = shape[:axis] + shape[axis + 1 :]
    if array.ndim == len(shape):
        if not _broadcasts(array.shape, shape):
            raise validation.not_broadcastable(where, "where", array.shape, shape, "logits")
        return None, array
    if not _broadcasts(array.shape, loss_shape):
        raise validation.not_broadcastable(
            where, "where", array.shape, loss_shape, "the per-example loss"
        )
    return array, None


def _classes_last(
    x: jax.Array, class_mask: jax.Array | None, axis: int
) -> tuple[jax.Array, jax.Array | None]:
    """The logits and the per-logit mask with the class axis moved last."""
    if class_mask is not None:
        class_mask = jnp.moveaxis(jnp.broadcast_to(class_mask, x.shape), axis, -1)
    return jnp.moveaxis(x, axis, -1), class_mask


def _is_zero(tangent: object) -> bool:
    return isinstance(tangent, SymbolicZero)


# ---------------------------------------------------------------------------------------------
# A softmax whose derivative stays exact at its largest entry.


@jax.custom_jvp
def _softmax(z: jax.Array) -> jax.Array:
    """``exp(z) / sum(exp(z))`` over the last axis, for ``z <= 0`` already shifted by a maximum.

    No shift of its own, so that ``exp(z)`` is the one its caller sums. ``-inf`` entries get 0,
    and a row whose entries all underflow gets 0s.
    """
    exp = jnp.exp(z)
    total = jnp.sum(exp, axis=-1, keepdims=True)
    return exp / jnp.where(total == 0, 1.0, total)


def _softmax_jvp(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    # d pi_j = pi_j (zdot_j - sum_k pi_k zdot_k). At the largest entry T, where pi_T rounds to 1,
    # zdot_T - sum_k pi_k zdot_k = sum_{k != T} pi_k (zdot_T - zdot_k) is summed without the
    # 1 - pi_T that autodiff of exp(z) / sum(exp(z)) would round to 0.
    (z,), (z_dot,) = primals, tangents
    pi = _softmax(z)
    is_top = lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1) == jnp.argmax(
        z, axis=-1, keepdims=True
    )
    rest = jnp.sum(jnp.where(is_top, 0.0, pi), axis=-1, keepdims=True)
    z_dot = jnp.where(pi > 0, z_dot, 0.0)  # no tangent where pi is 0 (z = -inf)
    rest_dot = jnp.sum(jnp.where(is_top, 0.0, pi * z_dot), axis=-1, keepdims=True)
    top_dot = jnp.sum(jnp.where(is_top, z_dot, 0.0), axis=-1, keepdims=True)
    deviation = jnp.where(
        is_top, top_dot * rest - rest_dot, z_dot - jnp.sum(pi * z_dot, axis=-1, keepdims=True)
    )
    return pi, pi * deviation


_softmax.defjvp(_softmax_jvp)


# ---------------------------------------------------------------------------------------------
# The focal term of one margin d = log((1 - p) / p): shared by the class-index loss.


def _margin_focal(d: jax.Array, gamma: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""The loss :math:`\ell = (1 - p)^\gamma (-\log p)`, its slope :math:`d\ell/dd`, and
    :math:`\log(1 - p)`, for :math:`p = \sigma(-d)`.

    With :math:`-\log p = \operatorname{softplus}(d)` and
    :math:`\log(1 - p) = -\operatorname{softplus}(-d)`,

    .. math::
        \frac{d\ell}{dd} = (1 - p)^\gamma \left(\gamma\, p\, (-\log p) + (1 - p)\right),

    a product of bounded factors: no :math:`(1 - p)^{\gamma - 1}` appears, so it is finite for
    ``gamma < 1`` where :math:`p` rounds to 1.
    """
    neg_log_p = jax.nn.softplus(d)
    log_1mp = -jax.nn.softplus(-d)
    modulating = jnp.exp(gamma * log_1mp)
    # p and 1 - p as exponentials of their logs, not sigmoids: the derivative of sigmoid(d) is
    # taken as s (1 - s), 0 in float32 once s rounds to 1, where exp(log(1 - p)) keeps e^-d.
    slope = modulating * (gamma * jnp.exp(-neg_log_p) * neg_log_p + jnp.exp(log_1mp))
    return modulating * neg_log_p, slope, log_1mp


# ---------------------------------------------------------------------------------------------
# Class indices.


def _index_parts(
    x: jax.Array, labels: jax.Array, keep: jax.Array | None, active: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""For logits ``x`` ``(..., C)`` and labels :math:`t`: the margin
    :math:`d = \log\sum_{j \ne t} e^{x_j} - x_t`, the active flags, and the softmax :math:`\pi`
    over the other kept classes (0 for the label and masked classes), which is
    :math:`\partial d / \partial x_j` for :math:`j \ne t`.

    An example is active when its label is in range and kept, it has another kept class, and its
    ``where`` flag is set; elsewhere :math:`d` is 0, so every branch stays finite.
    """
    num_classes = x.shape[-1]
    in_range = (labels >= 0) & (labels < num_classes)
    index = labels[..., None]
    x_label = jnp.take_along_axis(x, index, axis=-1, mode="clip")[..., 0]
    other = lax.broadcasted_iota(labels.dtype, x.shape, x.ndim - 1) != index
    if keep is not None:
        other &= keep
    # The largest kept logit as the shift m: where the label's logit is the largest and every
    # other class underflows below it, the loss and its derivatives are below the smallest
    # normal number, and the example counts as having no other class (loss 0).
    shift = jnp.max(x if keep is None else jnp.where(keep, x, -jnp.inf), axis=-1)
    shift = lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    others = jnp.where(other, x - shift[..., None], -jnp.inf)
    total = jnp.sum(jnp.exp(others), axis=-1)
    empty = total == 0  # a NaN total is not empty: NaN logits give a NaN loss
    safe_total = jnp.where(empty, 1.0, total)
    is_active = ~empty & in_range
    if keep is not None:
        is_active &= jnp.take_along_axis(keep, index, axis=-1, mode="clip")[..., 0]
    if active is not None:
        is_active &= active
    d = jnp.where(is_active, shift + jnp.log(safe_total) - x_label, 0.0)
    return d, is_active, _softmax(others)


@jax.custom_jvp
def _index_focal(
    x: jax.Array,
    labels: jax.Array,
    keep: jax.Array | None,
    active: jax.Array | None,
    gamma: jax.Array,
) -> jax.Array:
    """``(1 - p_t)^gamma (-log p_t)`` per example; 0 where inactive, NaN for labels out of range."""
    d, is_active, _ = _index_parts(x, labels, keep, active)
    loss, _, _ = _margin_focal(d, gamma)
    return _index_finish(loss, is_active, labels, x.shape[-1])


def _index_finish(
    loss: jax.Array, is_active: jax.Array, labels: jax.Array, num_classes: int
) -> jax.Array:
    out = jnp.where(is_active, loss, 0.0)
    in_range = (labels >= 0) & (labels < num_classes)
    return jnp.where(in_range, out, jnp.nan)


def _index_focal_jvp(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    # d = log sum_{j != t} e^{x_j} - x_t, so dd/dx_j = pi_j for j != t and -1 for j = t:
    # the gradient is (dl/dd) pi, one pass over the classes, less dl/dd at the label.
    x, labels, keep, active, gamma = primals
    x_dot, gamma_dot = tangents[0], tangents[4]
    d, is_active, others_softmax = _index_parts(x, labels, keep, active)
    loss, slope, log_1mp = _margin_focal(d, gamma)
    out = _index_finish(loss, is_active, labels, x.shape[-1])
    tangent = jnp.zeros_like(out)
    if not _is_zero(x_dot):
        x_dot_label = jnp.take_along_axis(x_dot, labels[..., None], axis=-1, mode="clip")[..., 0]
        direction = jnp.sum(others_softmax * x_dot, axis=-1) - x_dot_label
        tangent = tangent + jnp.where(is_active, slope, 0.0) * direction
    if not _is_zero(gamma_dot):  # dl/dgamma = log(1 - p) l
        tangent = tangent + jnp.where(is_active, log_1mp * loss, 0.0) * gamma_dot
    return out, tangent


_index_focal.defjvp(_index_focal_jvp, symbolic_zeros=True)


def softmax_focal_loss_with_integer_labels(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    gamma: ArrayLike = 2.0,
    alpha: PerClass = None,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Focal loss on softmax probabilities for integer labels, one value per example.

    With ``gamma=0, alpha=None`` it is ``optax.softmax_cross_entropy_with_integer_labels``. With
    :math:`p = \operatorname{softmax}(x)` over ``axis`` and :math:`t` the label, the loss of an
    example is

    .. math::
        \ell = -\alpha_t (1 - p_t)^{\gamma} \log p_t,

    computed from the margin :math:`d = \log\sum_{j \ne t} e^{x_j} - x_t` as
    :math:`(1 - p_t)^\gamma = e^{-\gamma \operatorname{softplus}(-d)}` and
    :math:`-\log p_t = \operatorname{softplus}(d)`, exact however confident the logits. A
    ``jax.custom_jvp`` gives the gradient as one pass over the classes, finite for any
    ``gamma >= 0``. Nothing is reduced: average the result yourself.

    Args:
        logits: Unnormalised log-probabilities, any floating dtype.
        labels: Class indices in :math:`[0, C)`, an integer array. A label outside that range
            gives a NaN loss (no error: the values may be traced).
        gamma: Focusing parameter :math:`\gamma \ge 0`: a number, or an array broadcastable to
            the per-example loss (one gamma per example); may be traced. Default: 2.
        alpha: ``None`` (no weighting), a non-negative number scaling every example, or one
            non-negative value per class, shape :math:`(C,)` (e.g. from
            :func:`focalkit.class_weights`); may be traced. Default: ``None``.
        axis: The class axis. Default: -1.
        where: Boolean mask, as in optax: shaped like the per-example loss (a masked example
            gives 0 and no gradient) or like the logits (masked classes leave the softmax). An
            example whose own label is masked gives 0, as with one-hot labels in
            :func:`softmax_focal_loss`; ``optax.softmax_cross_entropy_with_integer_labels``
            returns ``logsumexp`` over the kept classes minus the label's logit there.

    Shape:
        - logits: :math:`(..., C, ...)`, the classes along ``axis``.
        - labels: the logits' shape without ``axis``.
        - Output: the labels' shape, in the logits' dtype.

    Example:
        >>> import jax.numpy as jnp, numpy as np, optax
        >>> from focalkit.jax import softmax_focal_loss_with_integer_labels
        >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> labels = jnp.array([0, 1])
        >>> loss = softmax_focal_loss_with_integer_labels(logits, labels, gamma=2.0)
        >>> np.round(np.asarray(loss), 4)  # focalkit.softmax_focal_loss(..., reduction="none")
        array([0.0111, 1.7026], dtype=float32)
        >>> cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        >>> bool(jnp.allclose(softmax_focal_loss_with_integer_labels(logits, labels, gamma=0.0),
        ...                   cross_entropy))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """
    name = "softmax_focal_loss_with_integer_labels()"
    x, out_dtype = _logits(logits, name)
    if x.ndim == 0:
        raise ValueError(f"{name}: logits must have a class axis, got shape ()")
    axis = _class_axis(axis, x.ndim, name)
    shape = tuple(x.shape)
    loss_shape = shape[:axis] + shape[axis + 1 :]
    label_array = jnp.asarray(labels)
    if not jnp.issubdtype(label_array.dtype, jnp.integer):
        raise TypeError(
            f"{name}: labels must hold class indices (an integer array), "
            f"got dtype {label_array.dtype}"
        )
    if tuple(label_array.shape) != loss_shape:
        raise validation.shape_mismatch(name, "labels", loss_shape, label_array.shape, shape)
    g = _gamma(gamma, loss_shape, x.dtype, name)
    a = _per_class_alpha(alpha, shape[axis], x.dtype, name)
    example_mask, class_mask = _where_masks(where, shape, axis, name)
    loss: jax.Array = _integer_labels_loss(
        x, label_array, g, a, example_mask, class_mask, axis, out_dtype
    )  # jax.jit's wrapper is typed Any
    return loss


@functools.partial(jax.jit, static_argnames=("axis", "out_dtype"))
def _integer_labels_loss(
    x: jax.Array,
    labels: jax.Array,
    gamma: jax.Array,
    alpha: jax.Array | None,
    example_mask: jax.Array | None,
    class_mask: jax.Array | None,
    axis: int,
    out_dtype: Any,
) -> jax.Array:
    x, class_mask = _classes_last(x, class_mask, axis)
    loss_shape = x.shape[:-1]
    if example_mask is not None:
        example_mask = jnp.broadcast_to(example_mask, loss_shape)
    labels = labels.astype(jnp.int32)
    loss = _index_focal(x, labels, class_mask, example_mask, jnp.broadcast_to(gamma, loss_shape))
    if alpha is not None:
        loss = loss * (alpha if alpha.ndim == 0 else jnp.take(alpha, labels, mode="clip"))
    return loss.astype(out_dtype)


# ---------------------------------------------------------------------------------------------
# Class probabilities.


def _log_softmax_and_complement(
    x: jax.Array, keep: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    r""":math:`\log p` and :math:`\log(1 - p)` over the last axis, :math:`p = \mathrm{softmax}(x)`.

    As in focalkit's PyTorch losses: for every class but the most likely one :math:`p \le 1/2`
    and ``log1p(-p)`` is exact; for the most likely class :math:`c`, with
    :math:`d = \log\sum_{j \ne c} e^{x_j - x_c}`, :math:`\log p_c = -\operatorname{softplus}(d)`
    and :math:`\log(1 - p_c) = -\operatorname{softplus}(-d)`, finite however confident the logits,
    so :math:`(1 - p)^\gamma` has finite derivatives of every order. Masked classes get
    :math:`\log p = -\infty` and :math:`\log(1 - p) = 0`, through branches that stay finite.
    """
    kept_x = x if keep is None else jnp.where(keep, x, -jnp.inf)
    top = jnp.argmax(kept_x, axis=-1, keepdims=True)
    is_top = lax.broadcasted_iota(top.dtype, x.shape, x.ndim - 1) == top
    # x_c by a gather, not a max: at ties the gradient must reach class c alone.
    shifted = x - jnp.take_along_axis(x, top, axis=-1)
    other = ~is_top if keep is None else keep & ~is_top
    others = jnp.where(other, shifted, -jnp.inf)
    shift = jnp.max(others, axis=-1, keepdims=True)
    shift = lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    total = jnp.sum(jnp.exp(others - shift), axis=-1, keepdims=True)
    # No other kept class: p = 1, and d is -inf; the most negative finite number stands in for
    # it, so that (1 - p)^gamma = exp(gamma * log(1 - p)) is 1 at gamma = 0, not exp(0 * -inf).
    empty = total == 0
    lowest = np.finfo(x.dtype).min
    d = jnp.where(empty, lowest, shift + jnp.log(jnp.where(empty, 1.0, total)))
    # log p_top = -softplus(d) exactly; written apart from the others, the top class's
    # gradient does not pass through x_top - x_top, where 1 - 1 would swallow 1 - p_top.
    log_p_top = -jax.nn.softplus(d)
    log_p = jnp.where(is_top, log_p_top, shifted + log_p_top)
    if keep is not None:
        log_p = jnp.where(keep, log_p, -jnp.inf)
    log_1mp_top = -jax.nn.softplus(-d)
    log_1mp_rest = jnp.log1p(-jnp.exp(jnp.where(is_top, -jnp.inf, log_p)))
    return log_p, jnp.where(is_top, log_1mp_top, log_1mp_rest)


def softmax_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    gamma: ArrayLike = 2.0,
    alpha: PerClass = None,
    axis: int = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Focal loss on softmax probabilities for probability labels, one value per example.

    With ``gamma=0, alpha=None`` it is ``optax.softmax_cross_entropy``. With
    :math:`p = \operatorname{softmax}(x)` over ``axis`` and :math:`y` the labels (a distribution
    over the classes: one-hot, smoothed or soft), the loss of an example is

    .. math::
        \ell = -\sum_c y_c\, \alpha_c (1 - p_c)^{\gamma} \log p_c .

    :math:`\log p` and :math:`\log(1 - p)` come from the logits (see the module's notes), so
    autodiff of the loss is safe: its derivatives (with respect to the logits, the labels and
    ``gamma``) are finite and exact at any finite logits and any ``gamma >= 0``. Nothing is
    reduced: average the result yourself.

    Args:
        logits: Unnormalised log-probabilities, any floating dtype.
        labels: Class probabilities, broadcastable to the logits (differentiable).
        gamma: Focusing parameter :math:`\gamma \ge 0`: a number, or an array broadcastable to
            the per-example loss; may be traced. Default: 2.
        alpha: ``None`` (no weighting), a non-negative number scaling every term, or one
            non-negative value per class, shape :math:`(C,)`; may be traced. Default: ``None``.
        axis: The class axis. Default: -1.
        where: Boolean mask, as in optax: shaped like the per-example loss (a masked example
            gives 0 and no gradient) or like the logits (masked classes leave the softmax and
            the sum).

    Shape:
        - logits: :math:`(..., C, ...)`, the classes along ``axis``.
        - labels: broadcastable to the logits.
        - Output: the logits' shape without ``axis``, in the logits' dtype.

    Example:
        >>> import jax.numpy as jnp, numpy as np, optax
        >>> from focalkit.jax import softmax_focal_loss
        >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> labels = jnp.array([[0.9, 0.05, 0.05], [0.0, 1.0, 0.0]])
        >>> np.round(np.asarray(softmax_focal_loss(logits, labels, gamma=2.0)), 4)
        array([0.2188, 1.7026], dtype=float32)
        >>> bool(jnp.allclose(softmax_focal_loss(logits, labels, gamma=0.0),
        ...                   optax.softmax_cross_entropy(logits, labels)))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """
    name = "softmax_focal_loss()"
    x, out_dtype = _logits(logits, name)
    if x.ndim == 0:
        raise ValueError(f"{name}: logits must have a class axis, got shape ()")
    axis = _class_axis(axis, x.ndim, name)
    shape = tuple(x.shape)
    loss_shape = shape[:axis] + shape[axis + 1 :]
    y = jnp.asarray(labels)
    if not _broadcasts(y.shape, shape):
        raise validation.not_broadcastable(name, "labels", y.shape, shape, "logits")
    g = _gamma(gamma, loss_shape, x.dtype, name)
    a = _per_class_alpha(alpha, shape[axis], x.dtype, name)
    example_mask, class_mask = _where_masks(where, shape, axis, name)
    loss: jax.Array = _probability_labels_loss(
        x, y, g, a, example_mask, class_mask, axis, out_dtype
    )  # jax.jit's wrapper is typed Any
    return loss


@functools.partial(jax.jit, static_argnames=("axis", "out_dtype"))
def _probability_labels_loss(
    x: jax.Array,
    labels: jax.Array,
    gamma: jax.Array,
    alpha: jax.Array | None,
    example_mask: jax.Array | None,
    class_mask: jax.Array | None,
    axis: int,
    out_dtype: Any,
) -> jax.Array:
    y = jnp.moveaxis(jnp.broadcast_to(labels.astype(x.dtype), x.shape), axis, -1)
    x, class_mask = _classes_last(x, class_mask, axis)
    log_p, log_1mp = _log_softmax_and_complement(x, class_mask)
    modulating = jnp.exp(jnp.broadcast_to(gamma, x.shape[:-1])[..., None] * log_1mp)
    weights = y if alpha is None else y * alpha
    neg_log_p = -log_p if class_mask is None else jnp.where(class_mask, -log_p, 0.0)
    terms = weights * modulating * neg_log_p
    if class_mask is not None:
        terms = jnp.where(class_mask, terms, 0.0)
    loss = jnp.sum(terms, axis=-1)
    if example_mask is not None:
        loss = jnp.where(jnp.broadcast_to(example_mask, loss.shape), loss, 0.0)
    return loss.astype(out_dtype)


# ---------------------------------------------------------------------------------------------
# Element-wise (sigmoid).


def _sigmoid_parts(
    x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    r"""BCE, :math:`\log(1 - p_t)`, :math:`p = \sigma(x)`, :math:`q = \sigma(-x)` and the
    hard-label flags, all from the logits.

    :math:`\mathrm{BCE} = y \operatorname{softplus}(-x) + (1 - y) \operatorname{softplus}(x)`.
    For hard labels :math:`\log(1 - p_t)` is :math:`-\operatorname{softplus}(\pm x)`; for soft ones
    :math:`\log(y q + (1 - y) p)`, whose argument is at least :math:`\min(y, 1 - y)`.
    """
    softplus_x, softplus_neg_x = jax.nn.softplus(x), jax.nn.softplus(-x)
    bce = y * softplus_neg_x + (1.0 - y) * softplus_x
    hard = (y == 0) | (y == 1)
    p, q = jnp.exp(-softplus_neg_x), jnp.exp(-softplus_x)
    soft = jnp.log(jnp.where(hard, 1.0, y * q + (1.0 - y) * p))
    log_1mpt = jnp.where(hard, -(y * softplus_x + (1.0 - y) * softplus_neg_x), soft)
    return bce, log_1mpt, p, q, hard


@jax.custom_jvp
def _sigmoid_focal(x: jax.Array, y: jax.Array, gamma: jax.Array) -> jax.Array:
    """``(1 - p_t)^gamma BCE(x, y)`` element-wise, without alpha."""
    bce, log_1mpt, _, _, _ = _sigmoid_parts(x, y)
    return jnp.exp(gamma * log_1mpt) * bce


def _sigmoid_focal_jvp(
    primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[jax.Array, jax.Array]:
    # With v = 1 - p_t = y q + (1 - y) p:  dBCE/dx = p - y,  dv/dx = (1 - 2y) p q,  so
    # d/dx [v^g BCE] = v^g [(p - y) + g (1 - 2y) (p q / v) BCE], where p q / v is p (y = 1),
    # q (y = 0), and at most q / (1 - y) and p / y for soft labels: bounded, no v^(g - 1).
    # Labels: dBCE/dy = -x and dv/dy = q - p, so d/dy [v^g BCE] = v^g [-x + g (q - p) BCE / v],
    # where BCE / v is softplus(-s) / sigmoid(-s) for hard labels (s = x for y = 1, -x for
    # y = 0), at most 1 + |s| + log 2, and at most BCE / min(y, 1 - y) for soft ones.
    x, y, gamma = primals
    x_dot, y_dot, gamma_dot = tangents
    bce, log_1mpt, p, q, hard = _sigmoid_parts(x, y)
    modulating = jnp.exp(gamma * log_1mpt)
    out = modulating * bce
    tangent = jnp.zeros_like(out)
    if not _is_zero(x_dot):
        soft_ratio = p * q / jnp.where(hard, 1.0, y * q + (1.0 - y) * p)
        ratio = jnp.where(hard, y * p + (1.0 - y) * q, soft_ratio)
        # p - y as (1 - y) p - y q: exact for hard labels where p rounds to 1 or to 0
        slope = modulating * (((1.0 - y) * p - y * q) + gamma * (1.0 - 2.0 * y) * ratio * bce)
        tangent = tangent + slope * x_dot
    if not _is_zero(y_dot):
        s = jnp.where(y == 1, x, -x)
        u = jnp.exp(-jnp.abs(s))  # e^-s for s > 0, where (1 + u) log1p(u) / u -> 1 as u -> 0
        tail = (1.0 + u) * jnp.where(u > 0, jnp.log1p(u) / jnp.where(u > 0, u, 1.0), 1.0)
        hard_ratio = jnp.where(
            s > 0, tail, jax.nn.softplus(-s) * (1.0 + jnp.exp(jnp.minimum(s, 0)))
        )
        soft_ratio = bce / jnp.where(hard, 1.0, y * q + (1.0 - y) * p)
        bce_over_v = jnp.where(hard, hard_ratio, soft_ratio)
        label_slope = modulating * (-x + gamma * (q - p) * bce_over_v)
        tangent = tangent + label_slope * y_dot
    if not _is_zero(gamma_dot):
        tangent = tangent + log_1mpt * out * gamma_dot
    return out, tangent


_sigmoid_focal.defjvp(_sigmoid_focal_jvp, symbolic_zeros=True)


def sigmoid_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    gamma: ArrayLike = 2.0,
    alpha: ArrayLike | None = None,
) -> jax.Array:
    r"""Element-wise focal loss on logits, for binary and multi-label targets.

    Equal to ``optax.sigmoid_focal_loss`` (same arguments, same defaults: ``alpha=None``, where
    focalkit's PyTorch ``sigmoid_focal_loss`` defaults to torchvision's ``alpha=0.25``). With
    :math:`p = \sigma(x)`, :math:`p_t = p y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`,

    .. math::
        \ell = \alpha_t (1 - p_t)^{\gamma} \left[ -y \log p - (1 - y) \log(1 - p) \right].

    :math:`\log(1 - p_t)` comes from the logits, and a ``jax.custom_jvp`` gives the derivatives
    (with respect to the logits, the labels and ``gamma``) in a bounded form, finite for any
    finite logits and any ``gamma >= 0``. Nothing is reduced.

    Args:
        logits: Logits, any floating dtype.
        labels: Values in :math:`[0, 1]` (hard or soft), broadcastable to the logits.
        gamma: Focusing parameter :math:`\gamma \ge 0`: a number or an array broadcastable to
            the logits; may be traced. Default: 2.
        alpha: Balance of positives in :math:`[0, 1]`: ``None`` (no weighting), a number, or an
            array broadcastable to the logits; may be traced. Default: ``None``.

    Shape:
        - logits: any shape. labels: broadcastable to it. Output: the logits' shape and dtype.

    Example:
        >>> import jax.numpy as jnp, numpy as np, optax
        >>> from focalkit.jax import sigmoid_focal_loss
        >>> logits = jnp.array([[3.0, -1.0], [-2.0, 0.5]])
        >>> labels = jnp.array([[1.0, 0.0], [1.0, 1.0]])
        >>> np.round(np.asarray(sigmoid_focal_loss(logits, labels, alpha=0.25)), 4)
        array([[0.    , 0.017 ],
               [0.4125, 0.0169]], dtype=float32)
        >>> bool(jnp.allclose(sigmoid_focal_loss(logits, labels),
        ...                   optax.sigmoid_focal_loss(logits, labels)))
        True

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
    """
    name = "sigmoid_focal_loss()"
    x, out_dtype = _logits(logits, name)
    shape = tuple(x.shape)
    y = jnp.asarray(labels)
    if not _broadcasts(y.shape, shape):
        raise validation.not_broadcastable(name, "labels", y.shape, shape, "logits")
    g = _gamma(gamma, shape, x.dtype, name)
    a = _binary_alpha(alpha, shape, x.dtype, name)
    loss: jax.Array = _sigmoid_loss(x, y, g, a, out_dtype)  # jax.jit's wrapper is typed Any
    return loss


@functools.partial(jax.jit, static_argnames=("out_dtype",))
def _sigmoid_loss(
    x: jax.Array, labels: jax.Array, gamma: jax.Array, alpha: jax.Array | None, out_dtype: Any
) -> jax.Array:
    y = jnp.broadcast_to(labels.astype(x.dtype), x.shape)
    loss = _sigmoid_focal(x, y, jnp.broadcast_to(gamma, x.shape))
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return loss.astype(out_dtype)
