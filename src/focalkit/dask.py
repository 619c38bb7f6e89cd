r"""Global label statistics and an exact focal loss on Dask data, for the libraries' Dask APIs.

Both libraries train the focal objectives of :mod:`focalkit.xgboost` and :mod:`focalkit.lightgbm`
on a Dask cluster as they are: each worker calls the objective on its own partitions, which is
exact, because the focal loss's gradient and Hessian are per row. What must not come from one
partition is everything computed from the labels as a whole, and the validation loss:

- :func:`class_counts`, the global count of each class, for :func:`focalkit.class_weights`
  (``alpha=`` of the multi-class objective), and :func:`sample_weights`, per-class weights
  spread over the rows, for ``sample_weight=``;
- :func:`prior_margin`, the global prior of :func:`focalkit.gbdt.prior_margin`, and
  :func:`margin_per_row`, that margin on every row, partitioned like the labels, for
  ``base_margin=`` (XGBoost) and ``init_score=`` (LightGBM);
- :func:`binary_focal_mean` and :func:`softmax_focal_mean`, the exact mean focal loss of a
  trained model's margins over every row, a Dask reduction of per-partition sums of losses and
  weights. The libraries' own metrics are not exact on a cluster: XGBoost averages a custom
  metric's per-worker values (each worker's mean over its own rows, however many), and
  LightGBM reports the metric of the worker of rank 0 on its part of the validation data only.

Each function computes at once, on the default scheduler (the ``distributed.Client`` made
last, if any), and reads the data once; :func:`sample_weights` and :func:`margin_per_row` return
lazy collections. Labels may be a Dask Array, a Dask Series or a one-column Dask DataFrame;
margins a Dask Array or DataFrame. Inputs are checked where they are, on the workers, with the
messages of the NumPy functions, naming the function called.

``import focalkit`` does not import this module or Dask; it needs ``pip install
"focalkit[dask]"`` (``dask[array,dataframe]`` and ``distributed``).

Example:
    >>> import dask.array as da, numpy as np
    >>> import focalkit
    >>> from focalkit import dask as focal_dask
    >>> y = da.from_array(np.array([0, 0, 0, 1, 0, 2, 0, 0]), chunks=(3, 5))  # unequal parts
    >>> counts = focal_dask.class_counts(y, 3)
    >>> counts
    array([6, 1, 1])
    >>> print(focalkit.class_weights(counts, normalize="mean").round(4))  # alpha=, per class
    [0.2308 1.3846 1.3846]
    >>> print(focal_dask.prior_margin(y, num_class=3).round(4))
    [-0.2877 -2.0794 -2.0794]
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from focalkit import _gbdt_adapters
from focalkit._core.class_weights import class_counts as _numpy_class_counts
from focalkit.gbdt import SoftmaxAlpha, class_indices, count_labels, prior_from_counts

try:
    import dask.array as da
    from dask.base import is_dask_collection
    from dask.delayed import delayed
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    if error.name == "dask" or (error.name or "").startswith("dask."):
        raise ImportError('focalkit.dask needs Dask: pip install "focalkit[dask]"') from error
    raise

__all__ = [
    "binary_focal_mean",
    "class_counts",
    "margin_per_row",
    "prior_margin",
    "sample_weights",
    "softmax_focal_mean",
]

Array: TypeAlias = NDArray[np.float64]
DaskCollection: TypeAlias = Any  # a Dask Array, Series or DataFrame (dask.dataframe is optional)


# ------------------------------------------------------------------------------ partitions


def _is_frame(collection: object) -> bool:
    """A Dask DataFrame or Series: a Dask collection with partitions and ``to_dask_array``."""
    return is_dask_collection(collection) and hasattr(collection, "to_dask_array")


def _check_collection(value: object, name: str, where: str) -> None:
    if not (isinstance(value, da.Array) or _is_frame(value)):
        raise TypeError(
            f"{where}: {name} must be a Dask Array, Series or DataFrame, got {type(value).__name__}"
        )


def _parts(collection: DaskCollection) -> list[Any]:
    """The collection's partitions, as delayed objects, in row order."""
    if isinstance(collection, da.Array):
        if collection.ndim == 2:  # partitions are row blocks: one block across the columns
            collection = da.rechunk(collection, {1: -1})  # type: ignore[no-untyped-call]
        return list(collection.to_delayed().ravel())
    return list(collection.to_delayed())


def _rows(part: Any, name: str, where: str) -> NDArray[Any]:
    """One partition of a one-column collection as a 1-D NumPy array."""
    array = np.asarray(part)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{where}: {name} must be 1-D (a Dask Array of shape (N,), a Series or a "
            f"one-column DataFrame), got a partition of shape {array.shape}"
        )
    return array


def _total(parts: Sequence[Any]) -> Any:
    return delayed(sum)(parts)  # one small vector per partition


# ------------------------------------------------------------------------------ label statistics


def _part_class_counts(part: Any, num_classes: int) -> NDArray[np.int64]:
    return _numpy_class_counts(np.asarray(part), num_classes)


def class_counts(labels: DaskCollection, num_classes: int) -> NDArray[np.int64]:
    """How many times each class in ``[0, num_classes)`` occurs in ``labels``, over every partition.

    :func:`focalkit.class_counts` for Dask collections: the counts of each partition, summed.
    Feed them to :func:`focalkit.class_weights` for the ``alpha`` of a multi-class objective or
    per-class weights, never counts of one worker's part.

    Args:
        labels: Integer class labels: a Dask Array (any shape, flattened), Series or DataFrame.
        num_classes: The number of classes ``C``; classes that never occur get a count of 0.

    Returns:
        An ``int64`` NumPy array of shape ``(C,)``.

    Example:
        >>> import dask.array as da
        >>> from focalkit.dask import class_counts
        >>> class_counts(da.from_array([0, 2, 2, 3, 0, 2], chunks=4), num_classes=4)
        array([2, 0, 3, 1])
    """
    where = "class_counts()"
    _check_collection(labels, "labels", where)
    _numpy_class_counts(np.zeros(0, np.int64), num_classes)  # checks num_classes here, once
    if isinstance(labels, da.Array):
        labels = labels.reshape(-1) if labels.ndim != 1 else labels  # type: ignore[no-untyped-call]
    parts = [delayed(_part_class_counts)(part, num_classes) for part in _parts(labels)]
    counts: NDArray[np.int64] = np.asarray(_total(parts).compute(), dtype=np.int64)
    return counts


def _part_label_counts(part: Any, num_class: int | None, where: str) -> NDArray[np.int64]:
    return count_labels(_rows(part, "labels", where), num_class, where)


def prior_margin(labels: DaskCollection, num_class: int | None = None) -> float | Array:
    r"""The margin of the global label frequencies: :func:`focalkit.gbdt.prior_margin` of all rows.

    The binary prior is the log-odds :math:`\log(n_1 / n_0)` of all the labels, the multi-class
    one :math:`\log(n_k / n)` per class, from counts summed over the partitions: the prior of
    the whole training set, whatever each worker holds. :func:`margin_per_row` turns it into
    the ``base_margin`` or ``init_score`` the libraries take.

    Args:
        labels: A 1-D Dask Array, a Dask Series or a one-column Dask DataFrame; 0 or 1 for the
            binary prior (ints, bools or floats), class indices for ``num_class`` classes.
        num_class: ``None`` for the binary prior (a float); the number of classes :math:`K`
            for the multi-class one (shape :math:`(K)`).

    Returns:
        A float, or a float64 array of shape :math:`(K)`. Labels without a positive or a
        negative, or a class without samples, raise a ``ValueError``, as in
        :func:`focalkit.gbdt.prior_margin`.

    Example:
        >>> import dask.array as da
        >>> from focalkit.dask import prior_margin
        >>> round(prior_margin(da.from_array([0, 0, 0, 1, 0, 1], chunks=2)), 4)
        -0.6931
    """
    where = "prior_margin()"
    _check_collection(labels, "labels", where)
    if isinstance(labels, da.Array) and labels.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D, got a Dask Array of shape {labels.shape}")
    parts = [delayed(_part_label_counts)(part, num_class, where) for part in _parts(labels)]
    if num_class is not None:  # its checks before any work: num_class is an int >= 2
        count_labels(np.zeros(0, np.int64), num_class, where)
    counts = np.asarray(_total(parts).compute(), dtype=np.int64)
    return prior_from_counts(counts, num_class, where)


def _part_weights(part: Any, weights: Array, where: str) -> Any:
    values = _rows(part, "labels", where)
    rows = weights[class_indices(values, weights.shape[0], where)]
    if not hasattr(part, "index"):
        return rows
    pandas = importlib.import_module("pandas")  # only for Dask Series and DataFrames

    return pandas.Series(rows, index=part.index, name=getattr(part, "name", None))


def sample_weights(labels: DaskCollection, class_weights: ArrayLike) -> DaskCollection:
    """Each row's class weight, ``class_weights[label]``, partitioned like ``labels``; lazy.

    The ``sample_weight`` that per-class weights give, for ``DaskXGBClassifier.fit``,
    ``xgboost.dask.DaskDMatrix`` and ``DaskLGBMClassifier.fit``, from weights computed on the
    global counts (:func:`class_counts`, then :func:`focalkit.class_weights`).

    Args:
        labels: Class indices in ``[0, C)``: a 1-D Dask Array, a Dask Series or a one-column
            Dask DataFrame.
        class_weights: One weight per class, shape ``(C,)``.

    Returns:
        float64 weights: a Dask Array with the chunks of ``labels``, or a Dask Series with its
        partitions and index.

    Example:
        >>> import dask.array as da
        >>> from focalkit.dask import sample_weights
        >>> sample_weights(da.from_array([0, 1, 1, 0], chunks=3), [0.25, 0.75]).compute()
        array([0.25, 0.75, 0.75, 0.25])
    """
    where = "sample_weights()"
    _check_collection(labels, "labels", where)
    weights = np.array(class_weights, dtype=np.float64)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(
            f"{where}: class_weights must be 1-D, one weight per class, got shape {weights.shape}"
        )
    if isinstance(labels, da.Array):
        if labels.ndim != 1:
            raise ValueError(
                f"{where}: labels must be 1-D, got a Dask Array of shape {labels.shape}"
            )
        return da.map_blocks(  # type: ignore[no-untyped-call]
            _part_weights, labels, weights, where, dtype=np.float64
        )
    name = getattr(labels, "name", None)
    meta = (name if isinstance(name, str) else "weight", "float64")
    return labels.map_partitions(_part_weights, weights, where, meta=meta)


def _part_margins(part: Any, margin: Array) -> Any:
    rows = np.asarray(part).shape[0]
    values = np.broadcast_to(margin, (rows, *margin.shape)).copy()
    if not hasattr(part, "index"):
        return values
    pandas = importlib.import_module("pandas")  # only for Dask Series and DataFrames

    if margin.ndim == 0:
        return pandas.Series(values, index=part.index)
    return pandas.DataFrame(values, index=part.index)


def margin_per_row(margin: float | ArrayLike, labels: DaskCollection) -> DaskCollection:
    """``margin`` repeated on every row of ``labels``, partitioned like them; lazy.

    The starting margin of a custom objective on a cluster: ``base_margin=`` of
    ``xgboost.dask.DaskDMatrix`` and ``DaskXGBClassifier.fit``, ``init_score=`` of
    ``DaskLGBMClassifier.fit``, for the margin of :func:`prior_margin`. The partitions match
    ``labels``, so they match the features that go with them. (``DaskXGBClassifier.predict``
    with a Dask Array of features pairs a 1-D ``base_margin`` with the features' columns, and
    fails: give it a column, ``margin_per_row(prior, y)[:, None]``.)

    Args:
        margin: A float (binary) or one margin per class, shape :math:`(K)`.
        labels: A 1-D Dask Array, a Dask Series or a Dask DataFrame, one row per sample.

    Returns:
        float64, :math:`(N)` or :math:`(N, K)`: a Dask Array with the row chunks of ``labels``,
        or a Dask Series (binary) or DataFrame (:math:`K` columns) with its partitions and index.

    Example:
        >>> import dask.array as da, numpy as np
        >>> from focalkit.dask import margin_per_row
        >>> y = da.from_array(np.array([0, 2, 1]), chunks=2)
        >>> margin_per_row(np.log([0.5, 0.25, 0.25]), y).compute().round(4)
        array([[-0.6931, -1.3863, -1.3863],
               [-0.6931, -1.3863, -1.3863],
               [-0.6931, -1.3863, -1.3863]])
    """
    where = "margin_per_row()"
    _check_collection(labels, "labels", where)
    values = np.array(margin, dtype=np.float64)
    if values.ndim > 1:
        raise ValueError(
            f"{where}: margin must be a number or 1-D, one per class, got shape {values.shape}"
        )
    if isinstance(labels, da.Array):
        rows = labels.chunks[0]
        if values.ndim == 0:
            chunks: tuple[tuple[int | float, ...], ...] = (rows,)
        else:
            chunks = (rows, (values.shape[0],))
        lead = labels if labels.ndim == 1 else labels[:, 0]
        return da.map_blocks(  # type: ignore[no-untyped-call]
            _part_margins,
            lead,
            values,
            dtype=np.float64,
            chunks=chunks,
            new_axis=None if values.ndim == 0 else 1,
        )
    if values.ndim == 0:
        meta: Any = ("margin", "float64")
    else:
        meta = dict.fromkeys(range(values.shape[0]), "float64")
    return labels.map_partitions(_part_margins, values, meta=meta)


# ------------------------------------------------------------------------------ evaluation


def _aligned_parts(
    margins: DaskCollection, label: DaskCollection, weight: DaskCollection | None, where: str
) -> list[tuple[Any, Any, Any]]:
    """Matching partitions of the margins, labels and weights, in row order.

    Dask Arrays with known chunks are rechunked to the margins' row chunks; collections whose
    partition lengths are unknown (DataFrames, predictions on them) are paired partition by
    partition, and each pair's lengths are checked where it is evaluated.
    """
    collections = {"margins": margins, "label": label, "weight": weight}
    for name, value in collections.items():
        if value is not None:
            _check_collection(value, name, where)
    if (
        isinstance(margins, da.Array)
        and not any(np.isnan(size) for size in margins.chunks[0])
        and margins.ndim in (1, 2)
    ):
        rows = margins.chunks[0]
        for name in ("label", "weight"):
            value = collections[name]
            if isinstance(value, da.Array) and value.ndim >= 1:
                if value.shape[0] != margins.shape[0]:
                    raise ValueError(
                        f"{where}: expected {name} with {margins.shape[0]} rows, one per row "
                        f"of margins, got {value.shape[0]}"
                    )
                if value.chunks[0] != rows:
                    collections[name] = da.rechunk(value, {0: rows})  # type: ignore[no-untyped-call]
    parts = {
        name: (_parts(value) if value is not None else None) for name, value in collections.items()
    }
    count = len(parts["margins"])  # type: ignore[arg-type]
    for name in ("label", "weight"):
        found = parts[name]
        if found is not None and len(found) != count:
            raise ValueError(
                f"{where}: {name} has {len(found)} partitions and margins {count}; give them the "
                "same partitions (rows in the same order), e.g. both from one DataFrame"
            )
    weights = parts["weight"] or [None] * count
    return list(zip(parts["margins"], parts["label"], weights, strict=True))  # type: ignore[arg-type]


def _part_sums(
    loss: _gbdt_adapters.Metric, margins: Any, label: Any, weight: Any, where: str
) -> Array:
    preds = np.asarray(margins, dtype=np.float64)
    labels = _rows(label, "label", where)
    weights = None if weight is None else _rows(weight, "weight", where)
    sums: Array = np.asarray(loss.sums(preds, labels, weights), dtype=np.float64)
    return sums


def _mean(loss: _gbdt_adapters.Metric, margins: Any, label: Any, weight: Any) -> float:
    where = loss.where
    parts = _aligned_parts(margins, label, weight, where)
    sums = [delayed(_part_sums)(loss, *part, where) for part in parts]
    total, weight_total = (float(value) for value in _total(sums).compute())
    if weight_total == 0:
        raise ValueError(f"{where}: no rows to average over (the weights sum to 0)")
    return total / weight_total


def binary_focal_mean(
    margin: DaskCollection,
    label: DaskCollection,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: DaskCollection | None = None,
) -> float:
    r"""The exact mean binary focal loss of Dask margins: :math:`\sum w \ell / \sum w`, all rows.

    :math:`\ell` is :func:`focalkit.gbdt.binary_focal_value`'s (the loss of
    :func:`focalkit.xgboost.binary_focal_metric` and :func:`focalkit.lightgbm.binary_focal_metric`,
    same arguments); each partition's sums of :math:`w \ell` and :math:`w` are added up, so the
    result is the single-process value on all the rows, up to the order of the float64 sums.
    Without weights it is the plain mean.

    Margins are raw scores with the starting margin included:
    ``xgboost.dask.predict(client, booster, dmatrix, output_margin=True)`` on a ``DaskDMatrix``
    with its ``base_margin``, or ``DaskLGBMClassifier.predict(X, raw_score=True)`` plus the
    ``init_score`` (LightGBM does not store it).

    Args:
        margin: Raw scores, shape :math:`(N)`: a Dask Array, Series or one-column DataFrame.
        label: 0 or 1 per row, partitioned like ``margin`` (same partitions, or a Dask Array
            that can be rechunked to its rows).
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: Weight of positives in ``[0, 1]``, or ``None``. Default: 0.25.
        weight: Per-row sample weights, partitioned like ``margin``; default: none.

    Returns:
        The mean as a Python float. NaN margins give NaN.

    Example:
        >>> import dask.array as da, numpy as np
        >>> from focalkit.dask import binary_focal_mean
        >>> from focalkit.gbdt import binary_focal_value
        >>> margin, label = np.array([-3.0, 0.0, 2.0, 1.0, -1.0]), np.array([1, 0, 1, 0, 0])
        >>> dask_margin = da.from_array(margin, chunks=2)
        >>> dask_label = da.from_array(label, chunks=3)  # rechunked to the margins' rows
        >>> value = binary_focal_mean(dask_margin, dask_label)
        >>> round(value, 6), round(float(binary_focal_value(margin, label).mean()), 6)
        (0.273076, 0.273076)
    """
    loss = _gbdt_adapters.Metric("binary_focal_mean", None, gamma, alpha)
    return _mean(loss, margin, label, weight)


def softmax_focal_mean(
    margins: DaskCollection,
    label: DaskCollection,
    *,
    gamma: float = 2.0,
    alpha: SoftmaxAlpha = None,
    weight: DaskCollection | None = None,
) -> float:
    r"""The exact mean softmax focal loss of Dask margins: :math:`\sum w \ell / \sum w`, all rows.

    :math:`\ell` is :func:`focalkit.gbdt.softmax_focal_value`'s (the loss of the
    ``softmax_focal_metric`` of either adapter, same arguments), summed partition by partition
    as in :func:`binary_focal_mean`.

    Args:
        margins: Raw scores, shape :math:`(N, K)`: a Dask Array (any column chunks) or a Dask
            DataFrame of :math:`K` columns.
        label: Class indices in ``[0, K)``, partitioned like ``margins``.
        gamma: Focusing parameter, ``gamma >= 0``. Default: 2.
        alpha: ``None``, a number ``>= 0``, or one value ``>= 0`` per class. Default: ``None``.
        weight: Per-row sample weights, partitioned like ``margins``; default: none.

    Returns:
        The mean as a Python float.

    Example:
        >>> import dask.array as da, numpy as np
        >>> from focalkit.dask import softmax_focal_mean
        >>> margins = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [0.0, 0.0, 0.0]])
        >>> round(softmax_focal_mean(da.from_array(margins, chunks=(2, 3)), da.from_array(
        ...     np.array([0, 1, 2]), chunks=2), alpha=[1.0, 2.0, 1.0]), 4)
        1.3015
    """
    where = "softmax_focal_mean()"
    _check_collection(margins, "margins", where)
    columns = margins.shape[1] if isinstance(margins, da.Array) and margins.ndim == 2 else None
    if columns is None and _is_frame(margins) and hasattr(margins, "columns"):
        columns = len(margins.columns)
    if columns is None or np.isnan(columns):
        raise ValueError(
            f"{where}: margins must be 2-D of shape (N, K) with K >= 2 classes, got "
            f"{getattr(margins, 'shape', type(margins).__name__)}"
        )
    loss = _gbdt_adapters.Metric("softmax_focal_mean", int(columns), gamma, alpha)
    return _mean(loss, margins, label, weight)
