r"""Exact ``'mean'`` losses over the micro-batches and processes of one optimizer step.

A ``'mean'`` is exact inside one call. Split the step's batch into micro-batches (gradient
accumulation) and over processes (``DistributedDataParallel``, FSDP), and each call divides its
``'sum'`` :math:`S_{p,k}` by its own divisor :math:`N_{p,k}` (micro-batch :math:`k` of process
:math:`p`). Accumulating and averaging those means trains

.. math::
    \frac{1}{W} \sum_{p=1}^{W} \frac{1}{K} \sum_{k=1}^{K} \frac{S_{p,k}}{N_{p,k}}
    \quad\text{instead of}\quad
    L = \frac{\sum_{p,k} S_{p,k}}{\sum_{p,k} N_{p,k}},

the two being equal only when every :math:`N_{p,k}` is. Padding, ``ignore_index``, variable
lengths and class weights make them unequal. With class weights there is one more trap: the
divisor of a weighted class-index ``'mean'`` is the kept targets' summed weight, not their count,
so a token count (Hugging Face's ``num_items_in_batch``) changes a weighted objective.

:func:`global_divisor` computes, before the step's forward passes,

.. math::
    D = \frac{1}{W} \sum_{p=1}^{W} \sum_{k=1}^{K_p} N_{p,k}

with one ``all_reduce`` over ``group`` (:math:`W` its size; the number of micro-batches
:math:`K_p` may differ between processes). Each call then passes ``divisor=D`` with
``reduction='mean'`` and gets :math:`S_{p,k} / D`; backward on each, without dividing by the
number of micro-batches.

**Gradient averaging.** The :math:`1/W` in :math:`D` is there for the data-parallel wrappers'
default: ``DistributedDataParallel``, ``FullyShardedDataParallel`` and ``fully_shard`` (FSDP2,
also hybrid-sharded) all *average* gradients over their processes, so the gradient every process
ends the step with is

.. math::
    \frac{1}{W} \sum_{p} \sum_{k} \frac{\nabla S_{p,k}}{D} = \nabla L,

the gradient of one process on the whole global batch. If your gradients are *summed* instead
(FSDP2 with ``set_gradient_divide_factor(1.0)``, a DDP communication hook that sums, or a loop
that all-reduces gradients itself with ``ReduceOp.SUM``), multiply :math:`D` by :math:`W`. On one
process (no process group) :math:`W = 1` and :math:`D` is the step's divisor.

**The logged loss.** The calls' values :math:`S_{p,k} / D` add up, over one process's
micro-batches, to :math:`W` times its share of :math:`L`; :func:`global_mean_loss` sums them over
the micro-batches and averages over the processes, which is :math:`L`.

``group`` is the data-parallel group: the processes that read different data and whose gradients
are averaged (``None``: the default group). This module imports without a process group, and
without one every function works as a single process.

A ``DistributedDataParallel`` step over this process's ``micro_batches``, its gradients
synchronised after the last one:

.. code-block:: python

    divisor = global_divisor([y for _, y in micro_batches], kind="class_index", weight=weight)
    losses = []
    for k, (x, y) in enumerate(micro_batches):
        last = k == len(micro_batches) - 1
        with contextlib.nullcontext() if last else model.no_sync():
            loss = softmax_focal_loss(model(x), y, weight, divisor=divisor)
            loss.backward()  # not divided by the number of micro-batches
        losses.append(loss.detach())
    optimizer.step()
    optimizer.zero_grad()
    log(global_mean_loss(losses))  # the global batch's 'mean'

Under FSDP2 (``fully_shard``), ``model.set_requires_gradient_sync(last)`` takes the place of
``no_sync``, and every process runs as many micro-batches (each forward gathers the
parameters); under DDP their numbers may differ.

Example:
    One process here; under ``torchrun`` the same lines, with ``model`` wrapped in
    ``DistributedDataParallel`` and ``model.no_sync()`` around all but the last micro-batch,
    give every process the gradient of the whole global batch.

    >>> import torch
    >>> from focalkit import softmax_focal_loss
    >>> from focalkit.torch.distributed import global_divisor, global_mean_loss
    >>> _ = torch.manual_seed(0)
    >>> model, weight = torch.nn.Linear(4, 3), torch.tensor([1.0, 2.0, 0.5])
    >>> micro_batches = [(torch.randn(5, 4), torch.tensor([0, 2, -100, 1, 1])),
    ...                  (torch.randn(2, 4), torch.tensor([2, -100]))]
    >>> divisor = global_divisor([y for _, y in micro_batches], kind="class_index", weight=weight)
    >>> divisor  # 1 + 0.5 + 2 + 2, then 0.5: the kept targets' weights
    tensor(6., dtype=torch.float64)
    >>> losses = []
    >>> for x, y in micro_batches:
    ...     loss = softmax_focal_loss(model(x), y, weight, divisor=divisor)
    ...     loss.backward()
    ...     losses.append(loss.detach())
    >>> whole = softmax_focal_loss(model(torch.cat([x for x, _ in micro_batches])),
    ...                            torch.cat([y for _, y in micro_batches]), weight)
    >>> torch.allclose(global_mean_loss(losses), whole)
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, overload

import torch
import torch.distributed as dist
from torch import Tensor

from focalkit._core import validation
from focalkit.torch import _inputs
from focalkit.torch._inputs import ArrayLike
from focalkit.torch._vocab_parallel import (
    vocab_parallel_linear_softmax_focal_loss,
    vocab_parallel_softmax_focal_loss,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup, Work

__all__ = [
    "DivisorKind",
    "global_divisor",
    "global_mean_loss",
    "mean_divisor",
    "vocab_parallel_linear_softmax_focal_loss",
    "vocab_parallel_softmax_focal_loss",
]

DivisorKind = Literal["class_index", "probability", "elementwise"]
r"""What a ``'mean'`` divides by, by the kind of target.

- ``"class_index"``: the kept targets' summed class weight, :math:`\sum_{n:\, y_n \ne
  \mathrm{ignore\_index}} w_{y_n}` (their count without ``weight``), for class-index targets of
  :func:`~focalkit.softmax_focal_loss`, :func:`~focalkit.nll_focal_loss`,
  :func:`~focalkit.linear_softmax_focal_loss` and their modules. Neither ``alpha`` nor label
  smoothing enters it.
- ``"probability"``: the number of elements :math:`N d_1 \cdots d_K` of a class-probability
  target of shape :math:`(N, C, d_1, ..., d_K)` (1 for an unbatched :math:`(C)`), for
  :func:`~focalkit.softmax_focal_loss`.
- ``"elementwise"``: the number of elements of the target, for
  :func:`~focalkit.sigmoid_focal_loss` and :func:`~focalkit.binary_focal_loss` (their ``weight``
  and ``pos_weight`` rescale terms, not the divisor).
"""

_KINDS = ("class_index", "probability", "elementwise")


def mean_divisor(
    target: Tensor,
    *,
    kind: DivisorKind,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
) -> Tensor:
    r"""What ``reduction='mean'`` divides the ``'sum'`` by for this one target.

    For ``kind="class_index"``, :math:`\sum_n w_{y_n}` over the elements whose target is not
    ``ignore_index`` (their count without ``weight``), as ``F.cross_entropy`` and
    :func:`~focalkit.softmax_focal_loss` divide; for ``"probability"`` and ``"elementwise"``,
    a number of elements (see :data:`DivisorKind`). Nothing is communicated and nothing is read
    on the host.

    Args:
        target: The target the loss is called with.
        kind: ``"class_index"``, ``"probability"`` or ``"elementwise"`` (:data:`DivisorKind`).
        weight: The loss's per-class ``weight``, shape :math:`(C)`; only with
            ``kind="class_index"``. Default: all ones.
        ignore_index: The loss's ``ignore_index``; only with ``kind="class_index"``.
            Default: -100.

    Returns:
        A 0-dim float64 tensor on the target's device (float32 on MPS).

    Example:
        >>> import torch
        >>> from focalkit.torch.distributed import mean_divisor
        >>> target = torch.tensor([0, 2, -100, 2])
        >>> mean_divisor(target, kind="class_index", weight=[1.0, 3.0, 0.5])
        tensor(2., dtype=torch.float64)
        >>> mean_divisor(torch.rand(2, 3, 5).softmax(1), kind="probability")
        tensor(10., dtype=torch.float64)
    """
    where = "mean_divisor()"
    _check_kind(kind, where)
    return _local_divisor(target, kind, weight, ignore_index, where)


@overload
def global_divisor(
    targets: Tensor | Sequence[Tensor],
    *,
    kind: DivisorKind,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    group: ProcessGroup | None = ...,
    async_op: Literal[False] = ...,
) -> Tensor: ...


@overload
def global_divisor(
    targets: Tensor | Sequence[Tensor],
    *,
    kind: DivisorKind,
    weight: ArrayLike | None = ...,
    ignore_index: int = ...,
    group: ProcessGroup | None = ...,
    async_op: Literal[True],
) -> tuple[Tensor, Work | None]: ...


def global_divisor(
    targets: Tensor | Sequence[Tensor],
    *,
    kind: DivisorKind,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    group: ProcessGroup | None = None,
    async_op: bool = False,
) -> Tensor | tuple[Tensor, Work | None]:
    r"""The ``divisor=`` that makes one optimizer step's ``'mean'`` exact under DDP and FSDP.

    .. math::
        D = \frac{1}{W} \sum_{p=1}^{W} \sum_{k=1}^{K_p} N_{p,k},

    with :math:`N_{p,k}` the :func:`mean_divisor` of micro-batch :math:`k` of process
    :math:`p` and :math:`W` the size of ``group``. Every process calls it with the targets of
    all its micro-batches of the step, before their forward passes, and passes the result as
    ``divisor=`` (with ``reduction='mean'``) to the loss of each. Under the data-parallel
    wrappers' gradient *averaging* (``DistributedDataParallel``, ``FullyShardedDataParallel``,
    ``fully_shard``) the gradients are then those of one process on the whole global batch; if
    gradients are *summed* instead, multiply the result by :math:`W`. The loss values are not
    the global mean; :func:`global_mean_loss` gives it. The module's description
    (:mod:`focalkit.torch.distributed`) derives both.

    Each process contributes its sum divided by :math:`W` to one ``all_reduce`` (a sum) over
    ``group``, so the tensor returned holds :math:`D` as soon as the collective completes.
    Nothing is read on the host: with NCCL the collective is ordered on the device's stream.
    Without an initialized process group (and ``group=None``) nothing is communicated and
    :math:`W = 1`. :math:`D = 0` (every target ignored on every process) makes each ``'mean'``
    ``nan``, as for one call.

    Args:
        targets: This process's targets for the step: one tensor, or one per micro-batch (at
            least one; a process without data passes an empty target).
        kind: ``"class_index"``, ``"probability"`` or ``"elementwise"`` (:data:`DivisorKind`).
        weight: The loss's per-class ``weight`` (``kind="class_index"`` only). Default: ones.
        ignore_index: The loss's ``ignore_index`` (``kind="class_index"`` only). Default: -100.
        group: The data-parallel process group; ``None`` for the default group (or a single
            process when there is none). Default: ``None``.
        async_op: Return ``(divisor, work)`` at once, ``work`` the collective's handle
            (``None`` without a process group): call ``work.wait()`` before the divisor is used,
            to overlap the collective with other work. Default: ``False``.

    Returns:
        A 0-dim float64 tensor on the targets' device (float32 on MPS); with ``async_op=True``,
        that tensor and the collective's handle.

    Example:
        >>> import torch
        >>> from focalkit.torch.distributed import global_divisor
        >>> micro_batches = [torch.tensor([1, -100, 0]), torch.tensor([-100, 2])]
        >>> global_divisor(micro_batches, kind="class_index")  # one process: 2 + 1 kept
        tensor(3., dtype=torch.float64)
    """
    where = "global_divisor()"
    _check_kind(kind, where)
    tensors = _tensors(targets, "targets", where)
    counts = [_local_divisor(target, kind, weight, ignore_index, where) for target in tensors]
    local = torch.stack([count.to(counts[0].device) for count in counts]).sum()
    size = _group_size(group, where)
    if size is None:
        return (local, None) if async_op else local
    divisor = local / size
    work = dist.all_reduce(divisor, op=dist.ReduceOp.SUM, group=group, async_op=async_op)
    return (divisor, work) if async_op else divisor


def global_mean_loss(
    losses: Tensor | Sequence[Tensor], *, group: ProcessGroup | None = None
) -> Tensor:
    r"""The global mean of one optimizer step, for logging: :math:`L` from the calls' values.

    Given the values :math:`\ell_{p,k} = S_{p,k} / D` that this process's losses returned in the
    step (with ``divisor=D`` from :func:`global_divisor` over the same ``group``), returns

    .. math::
        \frac{1}{W} \sum_{p=1}^{W} \sum_{k=1}^{K_p} \ell_{p,k}
        = \frac{\sum_{p,k} S_{p,k}}{\sum_{p,k} N_{p,k}} = L,

    the ``'mean'`` one process would compute on the whole global batch, on every process. One
    ``all_reduce`` (a sum) over ``group``; the values are detached, and nothing is read on the
    host until you read the result (``.item()``). Without a process group, the sum of the
    values.

    Args:
        losses: The step's loss values on this process: one 0-dim tensor, or one per micro-batch.
        group: The process group given to :func:`global_divisor`. Default: ``None``.

    Returns:
        A 0-dim tensor on the first value's device, in the values' promoted dtype (float64 if
        any is float64): a bfloat16 value does not round the others.

    Example:
        >>> import torch
        >>> from focalkit.torch.distributed import global_mean_loss
        >>> global_mean_loss([torch.tensor(0.25), torch.tensor(0.5)])  # one process
        tensor(0.7500)
    """
    where = "global_mean_loss()"
    values = _tensors(losses, "losses", where)
    for value in values:
        if value.dim() != 0:
            raise ValueError(
                f"{where}: losses must be 0-dim tensors (the values of reduction='mean' with "
                f"divisor=), got a tensor of shape {tuple(value.shape)}"
            )
        if not value.is_floating_point():
            raise TypeError(
                f"{where}: losses must be floating-point tensors (the values of "
                f"reduction='mean' with divisor=), got dtype {value.dtype}"
            )
    dtype = functools.reduce(torch.promote_types, [value.dtype for value in values])
    device = values[0].device
    total = torch.stack([value.detach().to(device, dtype) for value in values]).sum()
    size = _group_size(group, where)
    if size is None:
        return total
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total / size


def _check_kind(kind: object, where: str) -> None:
    if kind not in _KINDS:
        raise ValueError(
            f"{where}: kind must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}"
        )


def _tensors(values: Tensor | Sequence[Tensor], name: str, where: str) -> list[Tensor]:
    """One tensor or a non-empty sequence of them, as a list."""
    if isinstance(values, Tensor):
        return [values]
    if not isinstance(values, Sequence):
        raise TypeError(
            f"{where}: {name} must be a tensor or a sequence of tensors, got "
            f"{type(values).__name__}"
        )
    tensors = list(values)
    if not tensors:
        raise ValueError(f"{where}: {name} must hold at least one tensor, got an empty sequence")
    for value in tensors:
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{where}: {name} must be a tensor or a sequence of tensors, got a sequence "
                f"holding {type(value).__name__}"
            )
    return tensors


def _group_size(group: ProcessGroup | None, where: str) -> int | None:
    """The group's size; ``None`` for a single process without a process group."""
    if dist.is_available() and dist.is_initialized():
        size = int(dist.get_world_size(group))
        if size < 1:  # -1: this process is not in the group
            raise ValueError(f"{where}: this process (rank {dist.get_rank()}) is not in group")
        return size
    if group is not None:
        raise ValueError(
            f"{where}: group was given but no process group is initialized "
            "(torch.distributed.init_process_group)"
        )
    return None


def _divisor_dtype(device: torch.device) -> torch.dtype:
    # float64 counts exactly up to 2**53; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _local_divisor(
    target: object, kind: str, weight: ArrayLike | None, ignore_index: int, where: str
) -> Tensor:
    target = _inputs.check_target(target, where)
    dtype = _divisor_dtype(target.device)
    if kind == "class_index":
        validation.check_ignore_index(ignore_index, where)
        return _class_index_divisor(target, weight, ignore_index, dtype, where)
    if weight is not None:
        raise ValueError(
            f"{where}: weight only enters the divisor of class-index targets "
            f"(kind='class_index'), got kind={kind!r}"
        )
    if kind == "probability":
        if not target.is_floating_point():
            raise TypeError(
                f"{where}: kind='probability' expects class probabilities (a floating tensor of "
                f"the input's shape), got dtype {target.dtype}"
            )
        if target.dim() == 0:
            raise ValueError(
                f"{where}: kind='probability' expects a target of shape (C), (N, C) or "
                "(N, C, d1, ...), got ()"
            )
        shape = tuple(target.shape)
        elements = 1 if len(shape) == 1 else math.prod(shape[:1] + shape[2:])
        return torch.full((), elements, dtype=dtype, device=target.device)
    return torch.full((), target.numel(), dtype=dtype, device=target.device)


def _class_index_divisor(
    target: Tensor, weight: ArrayLike | None, ignore_index: int, dtype: torch.dtype, where: str
) -> Tensor:
    """The kept targets' summed weight; their count without ``weight``."""
    if weight is None:
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            is_floating = target.is_floating_point()
            raise validation.class_indices_dtype_error(
                where, target.shape, target.dtype, is_floating
            )
        # Compared in int64, as the losses compare: as uint8, -100 would read 156.
        return (target.long() != ignore_index).sum(dtype=dtype)
    per_class = _inputs.setting_tensor(weight, "weight", where)
    validation.check_per_class_length("weight", per_class.shape, None, where)
    per_class = per_class.to(device=target.device, dtype=dtype)
    num_classes = per_class.shape[0]
    # The losses' own check: integer dtype, values in [0, C) or ignore_index.
    index = _inputs.class_indices(
        target, target.shape, target.shape, num_classes, ignore_index, where
    )
    kept = index != ignore_index
    if num_classes == 0:  # every target is ignored (checked above)
        return torch.zeros((), dtype=dtype, device=target.device)
    kept_weight = torch.where(kept, per_class[torch.where(kept, index, 0)], 0.0)
    return kept_weight.sum()
