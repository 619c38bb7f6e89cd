"""Class weights from label statistics: NumPy in, NumPy out, no framework needed."""

from __future__ import annotations

from typing import Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

Method: TypeAlias = Literal["inverse", "inverse_sqrt", "effective_number"]
Normalize: TypeAlias = Literal["mean", "balanced", "sum"] | None
ZeroPolicy: TypeAlias = Literal["raise", "ignore"]

METHODS: tuple[str, ...] = ("inverse", "inverse_sqrt", "effective_number")
NORMALIZATIONS: tuple[str | None, ...] = ("mean", "balanced", "sum", None)


def class_counts(labels: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """Count how many times each class in ``[0, num_classes)`` occurs in ``labels``.

    Args:
        labels: Integer class labels of any shape (flattened).
        num_classes: The number of classes ``C``; classes that never occur get a count of 0.

    Returns:
        An ``int64`` array of shape ``(C,)``.

    Example:
        >>> class_counts([0, 2, 2, 3, 0, 2], num_classes=4)
        array([2, 0, 3, 1])
    """
    where = "class_counts()"
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool):
        raise TypeError(f"{where}: num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"{where}: num_classes must be >= 1, got {num_classes}")
    array = np.asarray(labels)
    whole = np.issubdtype(array.dtype, np.floating) and bool(np.all(array == np.round(array)))
    if array.size and not np.issubdtype(array.dtype, np.integer) and not whole:
        raise TypeError(f"{where}: labels must be integers, got dtype {array.dtype}")
    flat = array.reshape(-1).astype(np.int64)
    outside = (flat < 0) | (flat >= num_classes)
    if np.any(outside):
        raise ValueError(
            f"{where}: labels must be in [0, {num_classes}), got {int(flat[outside][0])}"
        )
    return np.bincount(flat, minlength=num_classes).astype(np.int64)


def class_weights(
    counts: ArrayLike,
    method: Method = "inverse",
    normalize: Normalize = "mean",
    beta: float = 0.999,
    *,
    zero: ZeroPolicy = "raise",
) -> NDArray[np.float64]:
    r"""Per-class weights from per-class sample counts, for ``weight=`` or ``alpha=``.

    With :math:`n_c` the count of class :math:`c` and :math:`n = \sum_c n_c`:

    - ``"inverse"``: :math:`w_c = n / n_c`.
    - ``"inverse_sqrt"``: :math:`w_c = \sqrt{n / n_c}`.
    - ``"effective_number"`` (Cui et al. 2019): :math:`w_c = (1 - \beta) / (1 - \beta^{n_c})`,
      the inverse of the effective number of samples.

    Then ``normalize`` sets their scale. It matters wherever the weights multiply the loss
    (``alpha=``, Keras's ``class_weight=``, ``reduction='sum'``); not for ``weight=`` of the
    softmax losses with class-index targets under ``reduction='mean'``, which divides by the
    summed weights.

    - ``"mean"`` (the default): mean 1 over the ``C`` classes, :math:`\sum_c w_c = C`, as Cui et
      al. normalise. The weights stay on the unweighted loss's scale: a batch with as many
      samples of each class gives the loss it gives without weights, and an ``alpha`` of
      ``class_weights(counts)`` compares directly with ``alpha=None``.
    - ``"balanced"``: mean 1 over the samples, :math:`\sum_c n_c w_c = n`, so that on the
      training data the weighted loss keeps the unweighted loss's scale. With ``"inverse"`` this
      is :math:`w_c = n / (C n_c)`, scikit-learn's ``compute_class_weight("balanced")``.
    - ``"sum"``: :math:`\sum_c w_c = 1`, as hand-written Keras focal losses normalise (formerly
      the default). An ``alpha``-weighted loss is then ``C`` times smaller than with ``"mean"``,
      because ``alpha`` never enters the ``'mean'`` divisor.
    - ``None``: the raw weights above.

    Args:
        counts: Non-negative sample counts, shape ``(C,)``.
        method: ``"inverse"``, ``"inverse_sqrt"`` or ``"effective_number"``.
        normalize: ``"mean"``, ``"balanced"``, ``"sum"`` or ``None``. Default: ``"mean"``.
        beta: For ``"effective_number"``, in ``[0, 1)``; ignored otherwise.
        zero: A class with count 0 has no finite weight: ``"raise"`` (default) raises a
            ``ValueError`` naming it; ``"ignore"`` gives it weight 0 (it still counts among the
            ``C`` classes for ``normalize="mean"``; it has no samples for ``"balanced"``).

    Returns:
        A ``float64`` array of shape ``(C,)``.

    Example:
        >>> class_weights([100, 200, 50, 10]).round(4)  # inverse frequency, mean 1
        array([0.2963, 0.1481, 0.5926, 2.963 ])
        >>> class_weights([100, 200, 50, 10], normalize="sum").round(4)
        array([0.0741, 0.037 , 0.1481, 0.7407])
        >>> class_weights([100, 200, 50, 10], "effective_number", "mean", beta=0.99).round(3)
        array([0.401, 0.294, 0.644, 2.661])
        >>> class_weights([100, 200, 50, 10], "inverse", "balanced")  # 360 / (4 * counts)
        array([0.9 , 0.45, 1.8 , 9.  ])

    References:
        Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.
        arXiv:1901.05555
    """
    where = "class_weights()"
    if method not in METHODS:
        raise ValueError(
            f"{where}: method must be one of {', '.join(map(repr, METHODS))}, got {method!r}"
        )
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"{where}: normalize must be one of 'mean', 'balanced', 'sum' or None, "
            f"got {normalize!r}"
        )
    if zero not in ("raise", "ignore"):
        raise ValueError(f"{where}: zero must be 'raise' or 'ignore', got {zero!r}")
    n = counts_array(counts, where)
    present = n > 0
    if zero == "raise" and not np.all(present):
        empty = int(np.flatnonzero(~present)[0])
        raise ValueError(
            f"{where}: class {empty} has count 0, so it has no finite weight; "
            "pass zero='ignore' to give it weight 0"
        )
    if not np.any(present):
        raise ValueError(f"{where}: every count is 0")

    weights = np.zeros_like(n)
    if method == "effective_number":
        if not isinstance(beta, (int, float, np.floating)) or not 0.0 <= float(beta) < 1.0:
            raise ValueError(f"{where}: beta must be in [0, 1), got {beta!r}")
        # 1 - beta**n computed as -expm1(n log beta): exact for beta near 1 and small counts.
        effective = -np.expm1(n[present] * np.log(beta)) / (1.0 - beta) if beta > 0 else 1.0
        weights[present] = 1.0 / effective
    else:
        ratio = n.sum() / n[present]
        weights[present] = ratio if method == "inverse" else np.sqrt(ratio)

    if normalize == "sum":
        weights /= weights.sum()
    elif normalize == "mean":
        weights *= n.size / weights.sum()
    elif normalize == "balanced":
        weights *= n.sum() / (n * weights).sum()
    return weights


def counts_array(counts: ArrayLike, where: str) -> NDArray[np.float64]:
    """Per-class sample counts as a float64 array, once checked: a non-empty 1-D sequence of
    finite numbers ``>= 0``; a negative count is named by its class."""
    array = np.asarray(counts)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{where}: counts must be a non-empty 1-D sequence, got shape {array.shape}"
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{where}: counts must be numbers, got dtype {array.dtype}")
    n = array.astype(np.float64)
    if not np.all(np.isfinite(n)):
        raise ValueError(f"{where}: counts must be finite, got {array.tolist()}")
    if np.any(n < 0):
        negative = int(np.flatnonzero(n < 0)[0])
        raise ValueError(
            f"{where}: counts must be >= 0, got {array[negative]} for class {negative}"
        )
    return n
