"""``nn.Module`` wrappers: each holds its function's settings and calls it.

Settings are checked at construction, so a bad one fails now rather than at step 40 000. Tensor
settings (``weight``, ``pos_weight``, a per-class ``alpha``) are registered as buffers of those
names, so ``.to(device)``, ``.half()`` and ``state_dict()`` carry them; a float ``alpha`` stays a
float.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from focalkit._core import validation
from focalkit._core.validation import Reduction
from focalkit.torch import _inputs, functional
from focalkit.torch._inputs import ArrayLike
from focalkit.torch.functional import Alpha

__all__ = ["BinaryFocalLoss", "FocalLoss", "LinearFocalLoss", "NLLFocalLoss", "SigmoidFocalLoss"]


def _buffer(value: ArrayLike | None, name: str, where: str) -> Tensor | None:
    """A tensor setting as a buffer: the caller's tensor copied, or a sequence in the default
    dtype; checked by the function's own check."""
    if value is None:
        return None
    tensor = _inputs.setting_tensor(value, name, where)
    if isinstance(value, Tensor):
        return tensor.detach().clone()
    return tensor.to(torch.get_default_dtype())


def _describe(value: float | Tensor | None) -> str:
    if isinstance(value, Tensor):
        if value.numel() <= 8:
            return str([round(v, 4) for v in value.detach().cpu().reshape(-1).tolist()])
        return f"tensor of shape {tuple(value.shape)}"
    return repr(value)


class _FocalBase(nn.Module):
    """Shared settings and ``repr`` of the focal-loss modules."""

    alpha: float | Tensor | None

    def __init__(self, reduction: Reduction, gamma: float, where: str) -> None:
        super().__init__()
        validation.check_reduction(reduction, where)
        validation.check_gamma(gamma, where)
        self.reduction: Reduction = reduction
        self.gamma = float(gamma)

    def _set_alpha(self, alpha: Alpha, where: str, unit_interval: bool) -> None:
        expected: validation.Expected = (
            validation.UNIT_INTERVAL if unit_interval else validation.NONNEGATIVE
        )
        setting = _inputs.alpha_setting(alpha, expected, where)
        if isinstance(setting, float):
            self.alpha = setting
        else:
            self.register_buffer("alpha", _buffer(setting, "alpha", where))

    def _set_softmax_settings(
        self,
        weight: ArrayLike | None,
        ignore_index: int,
        label_smoothing: float,
        alpha: Alpha,
        where: str,
    ) -> None:
        """The settings the softmax losses share with ``nn.CrossEntropyLoss``, and alpha."""
        validation.check_ignore_index(ignore_index, where)
        validation.check_unit_interval("label_smoothing", label_smoothing, where)
        self.register_buffer("weight", _buffer(weight, "weight", where))
        self._set_alpha(alpha, where, unit_interval=False)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={_describe(self.alpha)}, reduction={self.reduction!r}"


class FocalLoss(_FocalBase):
    """Softmax focal loss, the drop-in for ``nn.CrossEntropyLoss``. See :func:`softmax_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import FocalLoss
        >>> criterion = FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 0.25])
        >>> criterion
        FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 0.25], reduction='mean')
        >>> criterion(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([1]))
        tensor(0.5922)
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        gamma: float = 2.0,
        alpha: Alpha = None,
    ) -> None:
        super().__init__(reduction, gamma, "FocalLoss()")
        self._set_softmax_settings(weight, ignore_index, label_smoothing, alpha, "FocalLoss()")

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return functional.softmax_focal_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            gamma=self.gamma,
            alpha=self.alpha,
        )


class NLLFocalLoss(_FocalBase):
    """Focal loss on log-probabilities, the drop-in for ``nn.NLLLoss``. See :func:`nll_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import NLLFocalLoss
        >>> NLLFocalLoss(gamma=1.0)(torch.tensor([[0.7, 0.3]]).log(), torch.tensor([0]))
        tensor(0.1070)
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        *,
        gamma: float = 2.0,
        alpha: Alpha = None,
    ) -> None:
        where = "NLLFocalLoss()"
        super().__init__(reduction, gamma, where)
        validation.check_ignore_index(ignore_index, where)
        self.register_buffer("weight", _buffer(weight, "weight", where))
        self._set_alpha(alpha, where, unit_interval=False)
        self.ignore_index = int(ignore_index)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return functional.nll_focal_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            gamma=self.gamma,
            alpha=self.alpha,
        )


class SigmoidFocalLoss(_FocalBase):
    """Focal loss on logits, drop-in for ``nn.BCEWithLogitsLoss``. See :func:`sigmoid_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import SigmoidFocalLoss
        >>> criterion = SigmoidFocalLoss(pos_weight=[2.0, 1.0], alpha=None)
        >>> criterion(torch.tensor([[0.5, -1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(0.0789)
    """

    weight: Tensor | None
    pos_weight: Tensor | None

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        pos_weight: ArrayLike | None = None,
        *,
        gamma: float = 2.0,
        alpha: Alpha = 0.25,
    ) -> None:
        where = "SigmoidFocalLoss()"
        super().__init__(reduction, gamma, where)
        self.register_buffer("weight", _buffer(weight, "weight", where))
        self.register_buffer("pos_weight", _buffer(pos_weight, "pos_weight", where))
        self._set_alpha(alpha, where, unit_interval=True)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return functional.sigmoid_focal_loss(
            input,
            target,
            self.weight,
            self.reduction,
            self.pos_weight,
            gamma=self.gamma,
            alpha=self.alpha,
        )


class BinaryFocalLoss(_FocalBase):
    """Focal loss on probabilities, the drop-in for ``nn.BCELoss``. See :func:`binary_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import BinaryFocalLoss
        >>> BinaryFocalLoss(alpha=None)(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0]))
        tensor(0.0050)
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        *,
        gamma: float = 2.0,
        alpha: Alpha = 0.25,
    ) -> None:
        where = "BinaryFocalLoss()"
        super().__init__(reduction, gamma, where)
        self.register_buffer("weight", _buffer(weight, "weight", where))
        self._set_alpha(alpha, where, unit_interval=True)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return functional.binary_focal_loss(
            input,
            target,
            self.weight,
            self.reduction,
            gamma=self.gamma,
            alpha=self.alpha,
        )


class LinearFocalLoss(_FocalBase):
    """Fused linear + softmax focal loss. See :func:`linear_softmax_focal_loss`.

    ``forward(input, classifier, target, bias=None)`` takes the output layer's weight (and bias)
    as arguments, so the layer itself stays wherever the model keeps it.

    Example:
        >>> import torch
        >>> from focalkit import LinearFocalLoss
        >>> head = torch.nn.Linear(16, 1000, bias=False)
        >>> criterion = LinearFocalLoss(ignore_index=0, gamma=1.0)
        >>> hidden, target = torch.randn(32, 16), torch.randint(0, 1000, (32,))
        >>> criterion(hidden, head.weight, target).shape
        torch.Size([])
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        gamma: float = 2.0,
        alpha: Alpha = None,
        chunk_size: int | None = None,
    ) -> None:
        where = "LinearFocalLoss()"
        super().__init__(reduction, gamma, where)
        self._set_softmax_settings(weight, ignore_index, label_smoothing, alpha, where)
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(
                f"{where}: chunk_size must be a positive int or None, got {chunk_size!r}"
            )
        self.chunk_size = chunk_size

    def forward(
        self, input: Tensor, classifier: Tensor, target: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        return functional.linear_softmax_focal_loss(
            input,
            classifier,
            target,
            bias,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            gamma=self.gamma,
            alpha=self.alpha,
            chunk_size=self.chunk_size,
        )
