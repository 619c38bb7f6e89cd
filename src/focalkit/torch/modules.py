"""``nn.Module`` wrappers: each holds its function's settings and calls it.

Every setting is checked at construction, by the check and with the message of the function
(``FocalLoss()`` names itself), so a bad one fails now rather than at step 40 000. Tensor
settings (``weight``, ``pos_weight``, a per-class ``alpha``, ``logit_offset``, ``margins``) are
registered as buffers of those names, so ``.to(device)``, ``.half()`` and ``state_dict()`` carry
them; a float ``alpha`` stays a float. The ``repr`` shows the whole configuration (an optional
tensor such as ``logit_offset`` where it is set).

``forward`` takes the per-call ``divisor=`` of its function, keyword-only: with
``reduction='mean'``, the ``'sum'`` over ``divisor`` (see :mod:`focalkit.torch.distributed`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from focalkit._core import validation
from focalkit._core.validation import Reduction
from focalkit.torch import _inputs, functional
from focalkit.torch._arguments import Alpha, Divisor
from focalkit.torch._inputs import ArrayLike

__all__ = [
    "AsymmetricLoss",
    "BinaryFocalLoss",
    "DistributionFocalLoss",
    "FocalLoss",
    "LDAMLoss",
    "LinearFocalLoss",
    "NLLFocalLoss",
    "PolyFocalLoss",
    "PolySigmoidFocalLoss",
    "QualityFocalLoss",
    "SigmoidFocalLoss",
    "VarifocalLoss",
]


def _buffer(value: ArrayLike | None, name: str, where: str) -> Tensor | None:
    """A tensor setting as a buffer: the caller's tensor copied, or a sequence in the default
    dtype; checked by the function's own check."""
    if value is None:
        return None
    tensor = _inputs.setting_tensor(value, name, where)
    if isinstance(value, Tensor):
        return tensor.detach().clone()
    return tensor.to(torch.get_default_dtype())


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        if value.numel() <= 8:
            return str([round(v, 4) for v in value.detach().cpu().reshape(-1).tolist()])
        return f"tensor of shape {tuple(value.shape)}"
    return repr(value)


class _Configured(nn.Module):
    """A module whose ``repr`` shows its settings."""

    _settings: tuple[str, ...] = ()  # shown by repr
    _optional: tuple[str, ...] = ()  # shown by repr where set (not None)

    def extra_repr(self) -> str:
        shown = self._settings + tuple(n for n in self._optional if getattr(self, n) is not None)
        return ", ".join(f"{name}={_describe(getattr(self, name))}" for name in shown)


class _FocalBase(_Configured):
    """Shared settings, checks and ``repr`` of the focal-loss modules."""

    alpha: float | Tensor | None
    weight: Tensor | None
    _settings: tuple[str, ...] = ("gamma", "alpha", "reduction", "weight")
    # The softmax family takes alpha >= 0 and a weight per class; the binary one an alpha in
    # [0, 1] and a weight broadcast to the input.
    _softmax = True

    def __init__(
        self, reduction: Reduction, gamma: float, alpha: Alpha, weight: ArrayLike | None
    ) -> None:
        super().__init__()
        where = f"{type(self).__name__}()"
        softmax = self._softmax
        validation.check_reduction(reduction, where)
        self.reduction: Reduction = reduction
        self.gamma = _inputs.check_number("gamma", gamma, validation.NONNEGATIVE, where)
        expected: validation.Expected = (
            validation.NONNEGATIVE if softmax else validation.UNIT_INTERVAL
        )
        setting = _inputs.alpha_setting(alpha, expected, where)
        if isinstance(setting, float):
            self.alpha = setting
        else:
            buffer = _buffer(setting, "alpha", where)
            if softmax and buffer is not None and buffer.dim() > 1:
                validation.check_per_class_length("alpha", buffer.shape, None, where)
            self.register_buffer("alpha", buffer)
        self.register_buffer("weight", _buffer(weight, "weight", where))
        if softmax and self.weight is not None:
            validation.check_per_class_length("weight", self.weight.shape, None, where)

    def _set_ignore_index(self, ignore_index: int) -> None:
        validation.check_ignore_index(ignore_index, f"{type(self).__name__}()")
        self.ignore_index = int(ignore_index)

    def _set_label_smoothing(self, label_smoothing: float) -> None:
        self.label_smoothing = _inputs.check_number(
            "label_smoothing", label_smoothing, validation.UNIT_INTERVAL, f"{type(self).__name__}()"
        )

    def _set_logit_offset(self, logit_offset: ArrayLike | None) -> None:
        where = f"{type(self).__name__}()"
        buffer = _buffer(logit_offset, "logit_offset", where)
        if buffer is not None:
            validation.check_per_class_length("logit_offset", buffer.shape, None, where)
        self.register_buffer("logit_offset", buffer)


class FocalLoss(_FocalBase):
    """Softmax focal loss, the drop-in for ``nn.CrossEntropyLoss``. See :func:`softmax_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import FocalLoss
        >>> criterion = FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 0.25])
        >>> criterion
        FocalLoss(gamma=2.0, alpha=[0.25, 0.5, 0.25], reduction='mean', weight=None,
                  ignore_index=-100, label_smoothing=0.0)
        >>> criterion(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([1]))
        tensor(0.5922)
    """

    logit_offset: Tensor | None
    _settings = ("gamma", "alpha", "reduction", "weight", "ignore_index", "label_smoothing")
    _optional = ("logit_offset",)

    def __init__(
        self,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        gamma: float = 2.0,
        alpha: Alpha = None,
        logit_offset: ArrayLike | None = None,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        self._set_ignore_index(ignore_index)
        self._set_label_smoothing(label_smoothing)
        self._set_logit_offset(logit_offset)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.softmax_focal_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
            logit_offset=self.logit_offset,
        )


class PolyFocalLoss(_FocalBase):
    """Poly-1 softmax focal loss, a drop-in for ``nn.CrossEntropyLoss``. See
    :func:`poly_softmax_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import PolyFocalLoss
        >>> criterion = PolyFocalLoss(epsilon=2.0, label_smoothing=0.1)
        >>> criterion
        PolyFocalLoss(epsilon=2.0, gamma=0.0, alpha=None, reduction='mean', weight=None,
                      ignore_index=-100, label_smoothing=0.1)
        >>> criterion(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([1]))
        tensor(3.3591)
    """

    _settings = (
        "epsilon",
        "gamma",
        "alpha",
        "reduction",
        "weight",
        "ignore_index",
        "label_smoothing",
    )

    def __init__(
        self,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        epsilon: float = 1.0,
        gamma: float = 0.0,
        alpha: Alpha = None,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        self.epsilon = validation.check_real("epsilon", epsilon, "PolyFocalLoss()")
        self._set_ignore_index(ignore_index)
        self._set_label_smoothing(label_smoothing)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.poly_softmax_focal_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            epsilon=self.epsilon,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
        )


class NLLFocalLoss(_FocalBase):
    """Focal loss on log-probabilities, the drop-in for ``nn.NLLLoss``. See :func:`nll_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import NLLFocalLoss
        >>> NLLFocalLoss(gamma=1.0)(torch.tensor([[0.7, 0.3]]).log(), torch.tensor([0]))
        tensor(0.1070)
    """

    _settings = ("gamma", "alpha", "reduction", "weight", "ignore_index")

    def __init__(
        self,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        *,
        gamma: float = 2.0,
        alpha: Alpha = None,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        self._set_ignore_index(ignore_index)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.nll_focal_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
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

    pos_weight: Tensor | None
    _settings = ("gamma", "alpha", "reduction", "weight", "pos_weight")
    _softmax = False

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        pos_weight: ArrayLike | None = None,
        *,
        gamma: float = 2.0,
        alpha: Alpha = 0.25,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        self.register_buffer("pos_weight", _buffer(pos_weight, "pos_weight", "SigmoidFocalLoss()"))

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.sigmoid_focal_loss(
            input,
            target,
            self.weight,
            self.reduction,
            self.pos_weight,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
        )


class PolySigmoidFocalLoss(_FocalBase):
    """Poly-1 sigmoid focal loss. See :func:`poly_sigmoid_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import PolySigmoidFocalLoss
        >>> criterion = PolySigmoidFocalLoss(epsilon=-1.0, alpha=None)
        >>> criterion
        PolySigmoidFocalLoss(epsilon=-1.0, gamma=2.0, alpha=None, reduction='mean', weight=None)
        >>> criterion(torch.tensor([[0.5, -1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(0.0085)
    """

    _settings = ("epsilon", "gamma", "alpha", "reduction", "weight")
    _softmax = False

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        *,
        epsilon: float = 1.0,
        gamma: float = 2.0,
        alpha: Alpha = 0.25,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        self.epsilon = validation.check_real("epsilon", epsilon, "PolySigmoidFocalLoss()")

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.poly_sigmoid_focal_loss(
            input,
            target,
            self.weight,
            self.reduction,
            epsilon=self.epsilon,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
        )


class LDAMLoss(_FocalBase):
    """Label-distribution-aware margin loss. See :func:`ldam_loss`.

    ``margins`` (one per class, e.g. ``ldam_margins(counts)``) is kept as a buffer.

    Example:
        >>> import torch
        >>> from focalkit import LDAMLoss, ldam_margins
        >>> criterion = LDAMLoss(ldam_margins([900, 90, 9]))
        >>> criterion
        LDAMLoss(margins=[0.1581, 0.2812, 0.5], scale=30.0, gamma=0.0, alpha=None,
                 reduction='mean', weight=None, ignore_index=-100)
        >>> criterion(torch.tensor([[0.2, 0.1, -0.1]]), torch.tensor([2]))
        tensor(24.0486)
    """

    margins: Tensor
    _settings = ("margins", "scale", "gamma", "alpha", "reduction", "weight", "ignore_index")

    def __init__(
        self,
        margins: ArrayLike,
        weight: ArrayLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        *,
        scale: float = 30.0,
        gamma: float = 0.0,
        alpha: Alpha = None,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        where = "LDAMLoss()"
        if margins is None:
            raise TypeError(f"{where}: margins must be a tensor or a sequence of numbers, got None")
        buffer = _buffer(margins, "margins", where)
        if buffer is not None:
            validation.check_per_class_length("margins", buffer.shape, None, where)
            _inputs.check_nonnegative_values(buffer, "margins", where)
        self.register_buffer("margins", buffer)
        self.scale = validation.check_positive("scale", scale, where)
        self._set_ignore_index(ignore_index)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.ldam_loss(
            input,
            target,
            self.margins,
            self.weight,
            self.ignore_index,
            self.reduction,
            scale=self.scale,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
        )


class BinaryFocalLoss(_FocalBase):
    """Focal loss on probabilities, the drop-in for ``nn.BCELoss``. See :func:`binary_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import BinaryFocalLoss
        >>> BinaryFocalLoss(alpha=None)(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0]))
        tensor(0.0050)
    """

    _softmax = False

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        *,
        gamma: float = 2.0,
        alpha: Alpha = 0.25,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.binary_focal_loss(
            input,
            target,
            self.weight,
            self.reduction,
            gamma=self.gamma,
            alpha=self.alpha,
            divisor=divisor,
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

    logit_offset: Tensor | None
    _settings = (*FocalLoss._settings, "chunk_size")
    _optional = ("logit_offset",)

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
        logit_offset: ArrayLike | None = None,
    ) -> None:
        super().__init__(reduction, gamma, alpha, weight)
        self._set_ignore_index(ignore_index)
        self._set_label_smoothing(label_smoothing)
        validation.check_positive_int("chunk_size", chunk_size, "LinearFocalLoss()", optional=True)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self._set_logit_offset(logit_offset)

    def forward(
        self,
        input: Tensor,
        classifier: Tensor,
        target: Tensor,
        bias: Tensor | None = None,
        *,
        divisor: Divisor | None = None,
    ) -> Tensor:
        return functional.linear_softmax_focal_loss(
            input,
            classifier,
            target,
            bias=bias,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            gamma=self.gamma,
            alpha=self.alpha,
            chunk_size=self.chunk_size,
            divisor=divisor,
            logit_offset=self.logit_offset,
        )


class _ElementwiseBase(_Configured):
    """Shared settings of the element-wise family losses: a reduction and a weight buffer."""

    weight: Tensor | None

    def __init__(self, reduction: Reduction, weight: ArrayLike | None) -> None:
        super().__init__()
        validation.check_reduction(reduction, f"{type(self).__name__}()")
        self.reduction: Reduction = reduction
        self.register_buffer("weight", _buffer(weight, "weight", f"{type(self).__name__}()"))


class AsymmetricLoss(_ElementwiseBase):
    """Asymmetric loss for multi-label classification. See :func:`asymmetric_loss`.

    Example:
        >>> import torch
        >>> from focalkit import AsymmetricLoss
        >>> criterion = AsymmetricLoss(gamma_neg=4.0, clip=0.05)
        >>> criterion
        AsymmetricLoss(gamma_pos=0.0, gamma_neg=4.0, clip=0.05, reduction='mean', weight=None)
        >>> criterion(torch.tensor([[3.0, -1.0, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]]))
        tensor(0.0468)
    """

    _settings = ("gamma_pos", "gamma_neg", "clip", "reduction", "weight")

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        *,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
    ) -> None:
        super().__init__(reduction, weight)
        where = "AsymmetricLoss()"
        self.gamma_pos = _inputs.check_number("gamma_pos", gamma_pos, validation.NONNEGATIVE, where)
        self.gamma_neg = _inputs.check_number("gamma_neg", gamma_neg, validation.NONNEGATIVE, where)
        self.clip = validation.check_clip(clip, where)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.asymmetric_loss(
            input,
            target,
            self.weight,
            self.reduction,
            gamma_pos=self.gamma_pos,
            gamma_neg=self.gamma_neg,
            clip=self.clip,
            divisor=divisor,
        )


class VarifocalLoss(_ElementwiseBase):
    """Varifocal loss with an IoU-aware target score. See :func:`varifocal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import VarifocalLoss
        >>> criterion = VarifocalLoss()
        >>> criterion
        VarifocalLoss(alpha=0.75, gamma=2.0, reduction='mean', weight=None)
        >>> criterion(torch.tensor([[2.0, -1.0]]), torch.tensor([[0.9, 0.0]]), divisor=1)
        tensor(0.3112)
    """

    _settings = ("alpha", "gamma", "reduction", "weight")

    def __init__(
        self,
        weight: ArrayLike | None = None,
        reduction: Reduction = "mean",
        *,
        alpha: float = 0.75,
        gamma: float = 2.0,
    ) -> None:
        super().__init__(reduction, weight)
        where = "VarifocalLoss()"
        self.alpha = _inputs.check_number("alpha", alpha, validation.NONNEGATIVE, where)
        self.gamma = _inputs.check_number("gamma", gamma, validation.NONNEGATIVE, where)

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.varifocal_loss(
            input,
            target,
            self.weight,
            self.reduction,
            alpha=self.alpha,
            gamma=self.gamma,
            divisor=divisor,
        )


class QualityFocalLoss(_ElementwiseBase):
    """Quality focal loss with a soft target. See :func:`quality_focal_loss`.

    Example:
        >>> import torch
        >>> from focalkit import QualityFocalLoss
        >>> criterion = QualityFocalLoss(beta=2.0)
        >>> criterion
        QualityFocalLoss(beta=2.0, reduction='mean', weight=None)
        >>> criterion(torch.tensor([[2.0, -1.0]]), torch.tensor([[0.9, 0.0]]))
        tensor(0.0114)
    """

    _settings = ("beta", "reduction", "weight")

    def __init__(
        self, weight: ArrayLike | None = None, reduction: Reduction = "mean", *, beta: float = 2.0
    ) -> None:
        super().__init__(reduction, weight)
        self.beta = _inputs.check_number("beta", beta, validation.NONNEGATIVE, "QualityFocalLoss()")

    def forward(self, input: Tensor, target: Tensor, *, divisor: Divisor | None = None) -> Tensor:
        return functional.quality_focal_loss(
            input, target, self.weight, self.reduction, beta=self.beta, divisor=divisor
        )


class DistributionFocalLoss(_Configured):
    """Distribution focal loss over the bins of a real target. See
    :func:`distribution_focal_loss`.

    ``forward(input, target, weight=None)`` takes the weight, one per sample (e.g. a box's
    quality score), with each call, as mmdetection's ``DistributionFocalLoss`` does.

    Example:
        >>> import torch
        >>> from focalkit import DistributionFocalLoss
        >>> criterion = DistributionFocalLoss()
        >>> criterion
        DistributionFocalLoss(reduction='mean')
        >>> criterion(torch.tensor([[0.5, 2.0, 1.0, -1.0]]), torch.tensor([1.25]))
        tensor(0.7452)
    """

    _settings = ("reduction",)

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        validation.check_reduction(reduction, "DistributionFocalLoss()")
        self.reduction: Reduction = reduction

    def forward(
        self,
        input: Tensor,
        target: Tensor,
        weight: Tensor | None = None,
        *,
        divisor: Divisor | None = None,
    ) -> Tensor:
        return functional.distribution_focal_loss(
            input, target, weight, self.reduction, divisor=divisor
        )
