"""Turning user arguments into tensors of the right dtype and device, and the data checks.

Argument checks (shapes, dtypes, numbers) always run and take their messages from
``focalkit._core.validation``. Checks that read tensor data run only while
``focalkit.inputs_validated()``: eagerly on the CPU, as asynchronous device-side assertions on CUDA,
and never while ``torch.compile`` traces or on a tensor that a ``torch.func`` transform batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch
from torch import Tensor

from focalkit._core import validation
from focalkit.torch._kernels import transformed

ArrayLike: TypeAlias = Tensor | Sequence[float] | np.ndarray
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_input(input: object, where: str) -> Tensor:
    """Raise unless ``input`` is a floating-point tensor."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: input must be a torch.Tensor, got {type(input).__name__}")
    validation.check_not_integer_input(input.is_floating_point(), input.dtype, where)
    return input


def check_target(target: object, where: str) -> Tensor:
    """Raise unless ``target`` is a tensor."""
    if not isinstance(target, Tensor):
        raise TypeError(f"{where}: target must be a torch.Tensor, got {type(target).__name__}")
    return target


def dtypes(input: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The dtype to compute in and the dtype to return.

    Half-precision inputs are computed in float32 and come back in their own dtype, except under
    ``torch.autocast``, where the result stays float32 as ``F.cross_entropy``'s does.
    """
    if input.dtype not in _LOW_PRECISION:
        return input.dtype, input.dtype
    autocast = torch.is_autocast_enabled(input.device.type)
    return torch.float32, torch.float32 if autocast else input.dtype


def setting_tensor(value: ArrayLike, name: str, where: str) -> Tensor:
    """A tensor setting (``weight``, ``pos_weight``, ``alpha``): a tensor of real numbers as given,
    or a number or sequence of numbers as a float64 tensor (bools and ``None`` are TypeErrors)."""
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{where}: {name} must hold real numbers, got dtype {value.dtype}")
        return value
    if isinstance(value, np.ndarray):
        # Through torch, not ``ndarray.dtype``: torch.compile traces an array as a tensor, and
        # reading its dtype attribute would break the graph.
        try:
            tensor = torch.as_tensor(value)
        except TypeError:  # an object array: None, strings
            tensor = None
        if tensor is None or tensor.is_complex() or tensor.dtype == torch.bool:
            validation.as_number_array(value.tolist(), name, where)  # raises, with its message
            raise TypeError(f"{where}: {name} must hold real numbers")  # complex
        return tensor.to(torch.float64)
    return torch.tensor(validation.as_number_array(value, name, where))


def as_tensor(value: ArrayLike, name: str, like: Tensor, where: str) -> Tensor:
    """``value`` (tensor or array-like of numbers) on ``like``'s device, in ``like``'s dtype."""
    return setting_tensor(value, name, where).to(device=like.device, dtype=like.dtype)


def check_number(name: str, value: object, expected: validation.Expected, where: str) -> float:
    """``value`` as a float, once :func:`focalkit._core.validation.check_number` accepts it.

    While ``torch.compile`` traces, the number may be symbolic (``dynamic=True``, or a ``gamma``
    that changed between calls), and Python cannot branch on it: the range check becomes
    ``torch._check``, which the compiled code runs, with the same message less the value.
    """
    if not torch.compiler.is_compiling() or not validation.is_number(value):
        validation.check_number(name, value, expected, where)
        return float(value)  # type: ignore[arg-type]
    number = float(value)  # type: ignore[arg-type]
    message = validation.range_message(where, name, expected)
    below = number < math.inf if expected == validation.NONNEGATIVE else number <= 1.0
    for holds in (number >= 0.0, below):
        torch._check(holds, lambda: message)  # type: ignore[no-untyped-call]
    return number


def alpha_setting(
    alpha: object, expected: validation.Expected, where: str
) -> float | Tensor | None:
    """``alpha``: ``None``, a number ``expected`` (``'>= 0'`` or ``'in [0, 1]'``), or a tensor of
    such numbers (a sequence becomes a float64 tensor). ``True`` and ``False`` are not numbers."""
    if alpha is None:
        return None
    if validation.is_number(alpha) or isinstance(alpha, (bool, np.bool_)):
        return check_number("alpha", alpha, expected, where)
    tensor = setting_tensor(alpha, "alpha", where)  # type: ignore[arg-type]
    if expected == validation.NONNEGATIVE:
        check_nonnegative_values(tensor, "alpha", where)
    else:
        check_unit_interval_values(tensor, "alpha", where)
    return tensor


def check_broadcasts(value: Tensor, name: str, input: Tensor, where: str) -> None:
    """Raise unless ``value`` broadcasts to ``input``'s shape without enlarging it."""
    try:
        shape = torch.broadcast_shapes(value.shape, input.shape)  # type: ignore[no-untyped-call]
    except RuntimeError:
        shape = None
    if shape != input.shape:
        raise validation.not_broadcastable(where, name, value.shape, input.shape)


def _data_checks_active(tensor: Tensor) -> bool:
    # Under torch.compile and torch.func transforms (vmap) a check could not branch on the data.
    if torch.compiler.is_compiling() or not validation.inputs_validated() or transformed(tensor):
        return False
    return tensor.device.type in ("cpu", "cuda")


def require(ok: Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless every element of the boolean tensor ``ok`` is true.

    On CUDA this is an asynchronous device-side assertion: no host sync, the error surfaces at the
    next synchronisation.
    """
    if ok.device.type == "cuda":
        torch._assert_async(ok.all(), message)
    elif not bool(ok.all()):
        raise ValueError(message)


def _bounds(tensor: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum and maximum in one pass; NaN if the tensor holds one (so checks pass it on)."""
    if tensor.numel() == 0:
        zero = tensor.new_zeros((), dtype=torch.float32)
        return zero, zero
    low, high = torch.aminmax(tensor)
    return low, high


def check_unit_interval_values(tensor: Tensor, name: str, where: str) -> None:
    """Data check: values in ``[0, 1]`` (NaN passes through, to give a NaN loss)."""
    if _data_checks_active(tensor):
        low, high = _bounds(tensor)
        require(~((low < 0) | (high > 1)), validation.outside_unit_interval(where, name))


def check_interval_values(
    tensor: Tensor, low: float, high: float, name: str, where: str, detail: str = ""
) -> None:
    """Data check: values in ``[low, high]`` (NaN passes through); ``detail`` ends the message."""
    if _data_checks_active(tensor):
        smallest, largest = _bounds(tensor)
        message = validation.outside_interval(where, name, low, high) + detail
        require(~((smallest < low) | (largest > high)), message)


def check_nonnegative_values(tensor: Tensor, name: str, where: str) -> None:
    """Data check: values ``>= 0`` (NaN passes through)."""
    if _data_checks_active(tensor):
        low, _ = _bounds(tensor)
        require(~(low < 0), validation.negative_values(where, name))


def class_indices(
    target: Tensor,
    shape: Sequence[int],
    input_shape: Sequence[int],
    num_classes: int,
    ignore_index: int,
    where: str,
) -> Tensor:
    """Class-index targets of ``shape`` with values in ``[0, C)`` or ``ignore_index``, as int64.

    Any integer dtype is read (``F.cross_entropy`` takes int64 and uint8 only) and compared with
    ``ignore_index`` in int64, where nothing wraps around: as uint8, -100 would read 156, and 255
    would equal -1.
    """
    integer = not (target.is_floating_point() or target.is_complex() or target.dtype == torch.bool)
    if not integer:
        is_floating = target.is_floating_point() and tuple(target.shape) == tuple(shape)
        raise validation.class_indices_dtype_error(where, target.shape, target.dtype, is_floating)
    if tuple(target.shape) != tuple(shape):
        raise validation.shape_mismatch(where, "target", shape, target.shape, input_shape)
    indices = target.long()  # a no-op for int64
    if _data_checks_active(target):
        message = validation.target_index_out_of_range(where, num_classes, ignore_index)
        if target.dtype == torch.uint64:  # values from 2**63 up turn negative: out of range
            require(indices >= 0, message)
        _check_class_indices(indices, num_classes, ignore_index, message)
    return indices


def _check_class_indices(target: Tensor, num_classes: int, ignore_index: int, message: str) -> None:
    low, high = _bounds(target)
    if target.device.type != "cpu" or low < 0 or high >= num_classes:
        # Rare on the CPU (ignored targets or a bad one): the exact, slower check.
        ok = ((target >= 0) & (target < num_classes)) | (target == ignore_index)
        require(ok, message)


def check_log_probabilities(tensor: Tensor, where: str) -> None:
    """Data check: log-probabilities are ``<= 0`` (NaN passes through)."""
    if _data_checks_active(tensor):
        _, high = _bounds(tensor)
        require(
            ~(high > 0),
            f"{where}: input holds log-probabilities, which must be <= 0; found a positive value",
        )
