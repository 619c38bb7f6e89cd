"""Every argument check and error message of focalkit, framework-free.

Front-ends (PyTorch today, Keras and gradient boosting later) call these with plain Python values
(numbers, shapes as tuples) so that a given mistake reads the same in every framework. Checks that
need to read tensor data live with the framework, but take their messages from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final, Literal, TypeAlias

import numpy as np

Reduction: TypeAlias = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")

_VALIDATE: ContextVar[bool] = ContextVar("focalkit_validate_inputs", default=True)


class validate_inputs:
    """Turn the checks that read tensor *data* on or off.

    Checks that read data (target indices inside ``[0, C)``, probabilities inside ``[0, 1]``) cost a
    device-to-host copy on an accelerator. focalkit runs them by default on the CPU, turns them into
    asynchronous device-side assertions on CUDA, and skips them while ``torch.compile`` traces.
    ``validate_inputs(False)`` turns them off. Checks of shapes, dtypes and arguments always run.

    Like ``torch.set_grad_enabled``, it works as a call (the setting holds until changed) and as a
    context manager: each ``with`` block sets ``enabled`` on entry and restores, on exit, the
    setting it found on entry (for the first block after the call, the setting before the call).
    One object can be entered again, and nested.

    Example:
        >>> import focalkit
        >>> off = focalkit.validate_inputs(False)
        >>> with off:
        ...     focalkit.inputs_validated()
        False
        >>> focalkit.inputs_validated()
        True
        >>> with off:  # reused: off again inside, restored after
        ...     focalkit.inputs_validated()
        False
        >>> focalkit.inputs_validated()
        True
    """

    def __init__(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"validate_inputs(): enabled must be a bool, got {enabled!r}")
        self._enabled = enabled
        self._before_call: bool | None = _VALIDATE.get()  # restored by the first ``with`` only
        self._entered: list[bool] = []  # the setting found at each open ``with``, innermost last
        _VALIDATE.set(enabled)

    def __enter__(self) -> None:
        if self._before_call is not None:
            previous, self._before_call = self._before_call, None
        else:
            previous = _VALIDATE.get()
        self._entered.append(previous)
        _VALIDATE.set(self._enabled)

    def __exit__(self, *exc_info: object) -> None:
        _VALIDATE.set(self._entered.pop())


def inputs_validated() -> bool:
    """Whether the data-reading checks are on (see :class:`validate_inputs`)."""
    return _VALIDATE.get()


@contextmanager
def _restore_validation() -> Iterator[None]:  # for tests that change the switch
    token = _VALIDATE.set(_VALIDATE.get())
    try:
        yield
    finally:
        _VALIDATE.reset(token)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_reduction(reduction: object, where: str) -> None:
    """Raise unless ``reduction`` is one of ``'none'``, ``'mean'``, ``'sum'``."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"{where}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, "
            f"got {reduction!r}"
        )


Expected: TypeAlias = Literal[">= 0", "in [0, 1]"]
NONNEGATIVE: Final = ">= 0"
UNIT_INTERVAL: Final = "in [0, 1]"


def in_range(number: float, expected: Expected) -> bool:
    """Whether ``number`` is finite and ``>= 0``, or inside ``[0, 1]``; NaN is neither.

    Written with comparisons only, so that a traced number (``torch.compile``) can be compared.
    """
    if expected == NONNEGATIVE:
        return 0.0 <= number < math.inf
    return 0.0 <= number <= 1.0


def range_message(where: str, name: str, expected: Expected) -> str:
    """The message for a number outside its range, without the value (for traced numbers)."""
    return f"{where}: {name} must be {expected}"


def check_number(name: str, value: object, expected: Expected, where: str) -> None:
    """Raise unless ``value`` is a real number (not a bool) ``>= 0`` (and finite) or in ``[0, 1]``.

    The one check behind ``gamma``, ``label_smoothing`` and a number ``alpha`` in every front-end.
    """
    if not is_number(value):
        raise TypeError(f"{where}: {name} must be a real number {expected}, got {value!r}")
    if not in_range(float(value), expected):  # type: ignore[arg-type]
        raise ValueError(f"{range_message(where, name, expected)}, got {value!r}")


def check_real(name: str, value: object, where: str) -> float:
    """Raise unless ``value`` is a finite real number (not a bool); return it as a float.

    For settings of any sign, such as PolyLoss's ``epsilon``."""
    if not is_number(value):
        raise TypeError(f"{where}: {name} must be a finite real number, got {value!r}")
    if not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ValueError(f"{where}: {name} must be a finite real number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_positive(name: str, value: object, where: str) -> float:
    """Raise unless ``value`` is a finite real number ``> 0`` (not a bool); return it as a float.

    For scales, such as LDAM's logit ``scale``."""
    if not is_number(value):
        raise TypeError(f"{where}: {name} must be a positive finite number, got {value!r}")
    if not 0.0 < float(value) < math.inf:  # type: ignore[arg-type]
        raise ValueError(f"{where}: {name} must be a positive finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_clip(clip: object, where: str) -> float:
    """Raise unless ``clip`` (the asymmetric loss's probability margin) is a number in
    ``[0, 1)``: a clip of 1 or more would remove every negative term."""
    if not is_number(clip):
        raise TypeError(f"{where}: clip must be a real number in [0, 1), got {clip!r}")
    if not 0.0 <= float(clip) < 1.0:  # type: ignore[arg-type]
        raise ValueError(f"{where}: clip must be a real number in [0, 1), got {clip!r}")
    return float(clip)  # type: ignore[arg-type]


def check_divisor(reduction: object, divisor: object, where: str) -> None:
    """Raise unless ``divisor`` is ``None``, or a positive finite number with ``reduction='mean'``.

    The framework checks a tensor ``divisor``'s shape and dtype itself (never its value: that
    would synchronise with an accelerator), then calls this with ``divisor`` set to ``None``
    after checking the reduction with :func:`divisor_reduction_message`.
    """
    if divisor is None:
        return
    if reduction != "mean":
        raise ValueError(divisor_reduction_message(where, reduction))
    if not is_number(divisor):
        raise TypeError(
            f"{where}: divisor must be a positive number or a 0-dim tensor, got {divisor!r}"
        )
    if not 0.0 < float(divisor) < math.inf:  # type: ignore[arg-type]
        raise ValueError(f"{where}: divisor must be a positive finite number, got {divisor!r}")


def divisor_reduction_message(where: str, reduction: object) -> str:
    return (
        f"{where}: divisor is only used with reduction='mean' (the 'sum' over divisor), "
        f"got reduction={reduction!r}"
    )


def check_gamma(gamma: object, where: str, name: str = "gamma") -> None:
    """Raise unless ``gamma`` is a finite real number ``>= 0``."""
    check_number(name, gamma, NONNEGATIVE, where)


def check_unit_interval(name: str, value: object, where: str) -> None:
    """Raise unless ``value`` is a real number in ``[0, 1]`` (``label_smoothing``, scalar alpha)."""
    check_number(name, value, UNIT_INTERVAL, where)


def check_nonnegative(name: str, value: object, where: str) -> None:
    """Raise unless ``value`` is a finite real number ``>= 0`` (softmax losses' alpha)."""
    check_number(name, value, NONNEGATIVE, where)


def _numbers_only(value: object) -> bool:
    """Whether ``value`` is a number or a (nested) sequence of numbers, with no bool or None."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    if is_number(value):
        return True
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return False
    return all(_numbers_only(item) for item in value)


def as_number_array(value: object, name: str, where: str) -> np.ndarray:
    """``value``, a number or a sequence of numbers, as a float64 array.

    Booleans, ``None`` and strings are not numbers: ``alpha=[1, None, 2]`` or ``weight=[True,
    False]`` raise a TypeError naming the argument instead of becoming NaN or 0 and 1.
    """
    if _numbers_only(value):
        try:
            return np.asarray(value, dtype=np.float64)
        except ValueError:  # ragged nesting
            pass
    raise TypeError(f"{where}: {name} must be a tensor or a sequence of numbers, got {value!r}")


def number_sequence(value: object, name: str, where: str) -> tuple[float, ...]:
    """A number or a flat sequence of numbers (``thresholds``, ``gammas``), as floats."""
    if is_number(value):
        return (float(value),)  # type: ignore[arg-type]
    flat = isinstance(value, np.ndarray) and value.ndim == 1
    if flat or (isinstance(value, Sequence) and not isinstance(value, (str, bytes))):
        items = list(value)  # type: ignore[call-overload]
        if all(is_number(item) for item in items):
            return tuple(float(item) for item in items)
    raise TypeError(f"{where}: {name} must be a number or a sequence of numbers, got {value!r}")


def check_positive_int(name: str, value: object, where: str, *, optional: bool = False) -> None:
    """Raise unless ``value`` is an int ``>= 1`` (not a bool), or ``None`` where ``optional``."""
    if optional and value is None:
        return
    expected = "a positive int or None" if optional else "a positive int"
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be {expected}, got {value!r}")
    if value < 1:
        raise ValueError(f"{where}: {name} must be {expected}, got {value!r}")


def check_ignore_index(ignore_index: object, where: str) -> None:
    """Raise unless ``ignore_index`` is an integer that an int64 holds."""
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"{where}: ignore_index must be an int, got {ignore_index!r}")
    if not -(2**63) <= int(ignore_index) < 2**63:
        raise ValueError(f"{where}: ignore_index must fit in int64, got {ignore_index!r}")


def class_indices_dtype_error(
    where: str, shape: Sequence[int], dtype: object, is_floating: bool
) -> TypeError:
    """The error for class-index targets that are not an integer tensor."""
    if is_floating:
        return TypeError(
            f"{where}: target of shape {tuple(shape)} holds class indices but has floating dtype "
            f"{dtype}; pass an integer tensor (target.long())"
        )
    return TypeError(
        f"{where}: target must hold class indices (an integer tensor), got dtype {dtype}"
    )


def check_per_class_length(
    name: str, shape: Sequence[int], num_classes: int | None, where: str
) -> None:
    """Raise unless a per-class vector (``weight``, ``alpha``) has shape ``(num_classes,)``.

    ``num_classes=None`` (a module's setting, before any input is seen) checks only that it is
    1-D.
    """
    shape = tuple(shape)
    classes = "" if num_classes is None else f" ({num_classes} classes)"
    if len(shape) != 1:
        raise ValueError(
            f"{where}: {name} must be a 1-D sequence with one value per class{classes}, "
            f"got shape {shape}"
        )
    if num_classes is not None and shape[0] != num_classes:
        raise ValueError(
            f"{where}: {name} must have one value per class{classes}, got {shape[0]} values"
        )


def check_not_integer_input(is_floating: bool, dtype: object, where: str) -> None:
    """Raise unless the input is a floating-point tensor."""
    if not is_floating:
        raise TypeError(f"{where}: input must be a floating-point tensor, got dtype {dtype}")


def shape_mismatch(
    where: str, name: str, expected: Sequence[int], got: Sequence[int], input_shape: Sequence[int]
) -> ValueError:
    """The error for a tensor whose shape does not fit the input's."""
    return ValueError(
        f"{where}: expected {name} of shape {tuple(expected)} for input of shape "
        f"{tuple(input_shape)}, got {tuple(got)}"
    )


def not_broadcastable(
    where: str, name: str, got: Sequence[int], shape: Sequence[int], to: str = "input"
) -> ValueError:
    """The error for an element-wise argument that does not broadcast to ``to``'s shape."""
    return ValueError(
        f"{where}: {name} of shape {tuple(got)} does not broadcast to {to} of shape {tuple(shape)}"
    )


def target_index_out_of_range(where: str, num_classes: int, ignore_index: int) -> str:
    """The message for class-index targets outside ``[0, C)``."""
    return (
        f"{where}: target class indices must be in [0, {num_classes}) or equal "
        f"ignore_index={ignore_index}; found a value outside that range"
    )


def outside_unit_interval(where: str, name: str) -> str:
    """The message for probabilities outside ``[0, 1]``."""
    return f"{where}: {name} values must be in [0, 1]; found a value outside that range"


def negative_values(where: str, name: str) -> str:
    """The message for a per-class vector with a negative entry."""
    return f"{where}: {name} values must be >= 0; found a negative value"


def outside_interval(where: str, name: str, low: float, high: float) -> str:
    """The message for values outside ``[low, high]`` (e.g. distribution focal loss targets)."""
    return (
        f"{where}: {name} values must be in [{low:g}, {high:g}]; found a value outside that range"
    )
