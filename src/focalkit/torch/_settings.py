"""The settings of one loss call, as the definitions and the kernels read them.

``focalkit.torch._arguments`` builds them from the user's arguments (checked, converted to the
compute dtype and device); a kernel's ``apply`` takes its settings as one tuple.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SoftmaxSettings(NamedTuple):
    """A softmax focal loss call over class dim 1 (input ``(N, C, d...)``), as the definition
    reads it."""

    compute_dtype: torch.dtype  # float32 for half-precision input, else the input's dtype
    target_index: Tensor | None  # (N, 1, d...) class indices, ignored ones made 0; None: probs
    kept: Tensor | None  # (N, d...) whether the target is not ignore_index; None: probs
    q: Tensor | None  # class probabilities, the input's shape; None: class indices
    weight: Tensor | None  # (C,) per-class weight w
    alpha: Tensor | None  # (C,) per-class alpha
    scale: float | Tensor | None  # one alpha for every term (a number or a 0-dim tensor)
    class_coef: Tensor | None  # (C,) alpha * weight
    gamma: float | Tensor  # a number, or one per element shaped (N, 1, d...)
    label_smoothing: float
    reduction: str
    divisor: Tensor  # the 'mean' divisor


class SoftmaxKernelSettings(NamedTuple):
    """What :class:`~focalkit.torch._kernels.softmax.SoftmaxFocal` reads."""

    target_index: Tensor | None  # (N, 1, d...) class indices, ignored ones replaced by 0
    q: Tensor | None  # class probabilities, the input's shape
    class_coef: Tensor | None  # (C,) alpha * weight
    row_coef: Tensor | None  # (N, 1, d...) each element's scale * kept; None: all ones
    gamma: float | Tensor  # a number, or one per element shaped (N, 1, d...)
    label_smoothing: float
    kept: Tensor | None  # (N, 1, d...) whether the target is not ignore_index; None: probs
    divisor: Tensor  # the 'mean' divisor
    mean_scale: Tensor  # the gradient's factor for 'mean' (one, or (N, 1, d...))
    reduction: str
    compute_dtype: torch.dtype
    needs_grad: bool  # whether the caller records a graph that needs the input's gradient


class SigmoidSettings(NamedTuple):
    """A sigmoid focal loss call; every tensor broadcasts to the input (the target: its shape)."""

    compute_dtype: torch.dtype
    target: Tensor  # in the compute dtype, values in [0, 1]
    weight: Tensor | None
    pos_weight: Tensor | None
    alpha: float | Tensor | None  # the balance of positives
    gamma: float | Tensor
    reduction: str
    needs_grad: bool = False  # whether the caller records a graph that needs the input's gradient


class FusedSettings(NamedTuple):
    """Everything but the three differentiable tensors, for the fused linear loss."""

    target_index: Tensor  # (N, 1) class indices, ignored ones replaced by 0
    class_coef: Tensor | None  # (C,) alpha * weight
    row_coef: Tensor  # (N, 1) scale * kept
    gamma: float
    label_smoothing: float
    kept: Tensor  # (N, 1) whether the target is not ignore_index
    divisor: Tensor  # the 'mean' divisor
    mean_scale: Tensor  # the gradient's factor for 'mean' (one, or (N, 1)), from mean_grad_scale()
    reduction: str
    chunk: int  # rows per chunk
    needs_grad: bool = True  # whether the caller records a graph (False under torch.no_grad())
