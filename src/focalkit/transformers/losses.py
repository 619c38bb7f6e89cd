r"""Focal loss for the Hugging Face ``Trainer``: ``Trainer(compute_loss_func=...)``.

The three kinds of model a ``Trainer`` routes through its loss mapping, by their ``loss_type``:

- ``"ForCausalLM"``: logits :math:`(B, T, V)` and labels :math:`(B, T)`; the logits at
  position :math:`t` predict the label at :math:`t + 1` (the labels are shifted here, as
  transformers' ``ForCausalLMLoss`` does), and ``-100`` is ignored;
- ``"ForTokenClassification"``: logits :math:`(B, T, C)`, labels :math:`(B, T)`, ``-100``
  ignored, no shift;
- ``"ForSequenceClassification"``: logits :math:`(B, C)`. Integer labels :math:`(B)` are
  single-label (softmax focal loss); float labels :math:`(B, C)` are multi-label (sigmoid focal
  loss, element-wise, as transformers' ``BCEWithLogitsLoss``). One output (``num_labels=1``) is
  regression, which has no focal form: a ``ValueError``. transformers decides between these the
  same way (``config.problem_type`` first, then the labels' dtype).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit._core import validation
from focalkit.torch import sigmoid_focal_loss, softmax_focal_loss
from focalkit.torch._inputs import ArrayLike, alpha_setting, setting_tensor

__all__ = ["FocalLossFunc", "focal_loss_func"]

Task: TypeAlias = Literal["ForCausalLM", "ForTokenClassification", "ForSequenceClassification"]
TASKS: tuple[str, ...] = get_args(Task)
ProblemType: TypeAlias = Literal["single_label_classification", "multi_label_classification"]
# transformers ignores this label value everywhere, and its Trainer counts the others
IGNORE_INDEX = -100
_HALF = (torch.float16, torch.bfloat16)


class FocalLossFunc:
    r"""Focal loss for ``Trainer(compute_loss_func=...)``; build it with :func:`focal_loss_func`.

    Called as the ``Trainer`` calls its ``compute_loss_func``, with the model's outputs, the
    labels and ``num_items_in_batch``, it returns

    .. math::
        L = \frac{1}{D} \sum_{n} \ell_n, \qquad
        \ell_n = -\alpha_{y_n} w_{y_n} (1 - p_{n,y_n})^{\gamma} \log p_{n,y_n}

    over the targets :math:`n` of the micro-batch that are not ``-100`` (for multi-label
    sequence classification, :math:`\ell` is :func:`focalkit.sigmoid_focal_loss`'s, element by
    element). :math:`D` is ``num_items_in_batch`` when the ``Trainer`` gives one: its count of
    the targets that are not ``-100`` over every micro-batch of the optimizer step (and over every
    process, with ``average_tokens_across_devices=True``, its default), so that the gradient of
    a step is that of one call on the whole global batch. Without it :math:`D` is what ``'mean'``
    divides by in this call (the count, or :math:`\sum_n w_{y_n}` with ``weight``).

    **Class weights.** The ``Trainer``'s ``num_items_in_batch`` counts targets; it does not sum
    their weights. With ``weight`` and a plain ``Trainer`` the objective of each optimizer step is
    therefore :math:`\sum_n w_{y_n} \ell'_n / N`, the weighted sum over the step's :math:`N`
    kept targets on all processes: exact under gradient accumulation and across processes (every
    micro-batch divides by the same :math:`N`), but not ``F.cross_entropy``'s weighted mean
    :math:`\sum_n w_{y_n} \ell'_n / \sum_n w_{y_n}`; the two differ by the factor
    :math:`\sum_n w_{y_n} / N`, which changes with the class mix of each step like a learning
    rate. :class:`focalkit.transformers.FocalTrainer` divides by :math:`\sum_n w_{y_n}` over the
    step instead, the exact weighted mean.

    Half-precision logits are computed in float32 and the loss is float32, as transformers'
    losses do.

    Attributes:
        task: ``"ForCausalLM"``, ``"ForTokenClassification"`` or ``"ForSequenceClassification"``.
        gamma, alpha, weight, label_smoothing: as in :func:`focalkit.softmax_focal_loss`.
        problem_type: For sequence classification, ``"single_label_classification"`` or
            ``"multi_label_classification"``, or ``None`` to decide from the labels' dtype.
    """

    def __init__(
        self,
        task: Task,
        *,
        gamma: float,
        alpha: float | ArrayLike | None,
        weight: Tensor | None,
        label_smoothing: float,
        problem_type: ProblemType | None,
    ) -> None:
        self.task = task
        self.gamma = gamma
        self.alpha = alpha
        self.weight = weight
        self.label_smoothing = label_smoothing
        self.problem_type = problem_type

    def __call__(
        self,
        outputs: Mapping[str, Any] | tuple[Any, ...],
        labels: Tensor,
        num_items_in_batch: Tensor | float | None = None,
    ) -> Tensor:
        """The loss of a micro-batch from the model's outputs (their ``logits``)."""
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        return self.loss(logits, labels, num_items_in_batch=num_items_in_batch)

    def loss(
        self,
        logits: Tensor,
        labels: Tensor,
        *,
        num_items_in_batch: Tensor | float | None = None,
        shift_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss from logits and labels (causal LM: ``shift_labels``, if given, are used as
        they are, as transformers' padding-free collators provide them)."""
        where = f"{type(self).__name__}()"
        if not isinstance(labels, Tensor):
            raise TypeError(
                f"{where}: labels must be a torch.Tensor, got {type(labels).__name__} (does the "
                "dataset give 'labels'?)"
            )
        if logits.dtype in _HALF:
            logits = logits.float()
        divisor = _divisor_argument(num_items_in_batch)
        if self.task == "ForSequenceClassification" and self._multi_label(logits, labels):
            return sigmoid_focal_loss(
                logits,
                labels.to(logits.device, logits.dtype),
                self.weight,
                gamma=self.gamma,
                alpha=self.alpha,  # type: ignore[arg-type]
                divisor=divisor,
            )
        target = self._targets(labels, shift_labels).to(logits.device)
        return softmax_focal_loss(
            logits.reshape(-1, logits.shape[-1]),
            target.reshape(-1),
            self.weight,
            IGNORE_INDEX,
            "mean",
            self.label_smoothing,
            gamma=self.gamma,
            alpha=self.alpha,  # type: ignore[arg-type]
            divisor=divisor,
        )

    def divisor(self, labels: Tensor, *, shift_labels: Tensor | None = None) -> Tensor:
        """What ``'mean'`` divides these labels' loss by: the count of targets that are not
        ``-100``, or, with ``weight``, their summed class weights (every element's count for
        multi-label float labels, whose weights are not in the mean's divisor). A count is an
        int64 tensor, a sum of weights a float64 one (float32 on MPS).

        Sum it over the micro-batches of a step and the processes, and pass it as
        ``num_items_in_batch``, and the step trains the loss's ``'mean'`` over the whole global
        batch; :class:`FocalTrainer` does so.
        """
        if self.task == "ForSequenceClassification" and labels.is_floating_point():
            return torch.tensor(labels.numel(), device=labels.device)
        target = self._targets(labels, shift_labels)
        kept = target != IGNORE_INDEX
        if self.weight is None:
            return kept.sum()
        # Summed in float64, which is exact far beyond a step's targets (float32 rounds a sum
        # past 2**24); MPS has no float64.
        dtype = torch.float32 if target.device.type == "mps" else torch.float64
        weight = self.weight.to(target.device, dtype)
        return torch.where(kept, weight[torch.where(kept, target, 0)], 0.0).sum()

    def _targets(self, labels: Tensor, shift_labels: Tensor | None) -> Tensor:
        if self.task != "ForCausalLM":
            return labels
        if shift_labels is not None:
            return shift_labels
        # position t predicts t + 1; the last position predicts nothing
        return F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]

    def _multi_label(self, logits: Tensor, labels: Tensor) -> bool:
        where = f"{type(self).__name__}()"
        if logits.shape[-1] == 1:
            raise ValueError(
                f"{where}: a sequence-classification model with one output (num_labels=1) is a "
                "regression, which has no focal form; give the model num_labels >= 2"
            )
        if self.problem_type is not None:
            return self.problem_type == "multi_label_classification"
        return labels.is_floating_point()  # transformers' rule for config.problem_type=None

    def __repr__(self) -> str:
        weight = None if self.weight is None else f"tensor of shape {tuple(self.weight.shape)}"
        return (
            f"{type(self).__name__}(task={self.task!r}, gamma={self.gamma}, "
            f"alpha={_describe(self.alpha)}, weight={weight}, "
            f"label_smoothing={self.label_smoothing}, problem_type={self.problem_type!r})"
        )


def focal_loss_func(
    task: Task | Any,
    *,
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    weight: ArrayLike | None = None,
    label_smoothing: float = 0.0,
) -> FocalLossFunc:
    r"""Focal loss as a ``compute_loss_func`` for the Hugging Face ``Trainer``.

    ``Trainer(model=model, args=args, train_dataset=data,
    compute_loss_func=focal_loss_func(model, gamma=2.0))`` trains ``model`` with the focal loss
    :math:`-\alpha_y w_y (1 - p_y)^{\gamma} \log p_y` of :func:`focalkit.softmax_focal_loss`,
    averaged exactly over each optimizer step's targets (see :class:`FocalLossFunc`). With
    ``gamma=0, alpha=None`` it gives the ``Trainer``'s own cross-entropy. For causal language
    models the labels are shifted inside (pass ``labels = input_ids``, ``-100`` where nothing is
    to be predicted), as transformers does.

    Args:
        task: A transformers model (its ``loss_type`` and, for sequence classification, its
            ``config.problem_type`` are read), or one of ``"ForCausalLM"``,
            ``"ForTokenClassification"``, ``"ForSequenceClassification"``. A causal LM whose
            class name does not end in ``ForCausalLM`` (``GPT2LMHeadModel``) has
            ``loss_type=None``, with which the ``Trainer`` counts ``num_items_in_batch`` before
            the shift, one target too many per row; given such a model, this sets its
            ``loss_type`` to ``"ForCausalLM"`` (the loss it already falls back to), so that the
            count is right. Pass the model before building the ``Trainer``, which reads it then.
        gamma: Focusing parameter :math:`\gamma \ge 0`. Default: 2.
        alpha: As in :func:`focalkit.softmax_focal_loss`: ``None``, a number that scales every
            term, or one value per class. For multi-label sequence classification, as in
            :func:`focalkit.sigmoid_focal_loss`: the balance of positives in :math:`[0, 1]`, one
            per class, or ``None``. Default: ``None``.
        weight: Per-class weight :math:`w`, shape :math:`(C)` (multi-label: broadcast over the
            labels, as ``BCEWithLogitsLoss``'s ``weight``). Under the ``Trainer``, see
            :class:`FocalLossFunc` for the objective it gives. Default: ``None``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`, as in ``F.cross_entropy`` (not for
            multi-label). Default: 0.

    Returns:
        A :class:`FocalLossFunc`.

    Example:
        >>> import torch
        >>> from focalkit.transformers import focal_loss_func
        >>> loss_func = focal_loss_func("ForCausalLM", gamma=0.0)
        >>> logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0]]])
        >>> labels = torch.tensor([[0, 1, -100]])  # only position 0 predicts a label: 1
        >>> loss_func({"logits": logits}, labels)
        tensor(2.1698)
        >>> torch.nn.functional.cross_entropy(logits[0, :1], labels[0, 1:2])
        tensor(2.1698)
    """
    where = "focal_loss_func()"
    problem_type: Any = None
    if isinstance(task, str):
        name = task
    else:
        name = _causal_lm_loss_type(task)
        problem_type = getattr(getattr(task, "config", None), "problem_type", None)
        if problem_type == "regression":
            raise ValueError(
                f"{where}: the model's config.problem_type is 'regression', which has no focal "
                "form; focal loss needs single- or multi-label classification"
            )
    if name not in TASKS:
        shown = repr(task) if isinstance(task, str) else f"a model with loss_type={name!r}"
        raise ValueError(f"{where}: task must be one of {', '.join(map(repr, TASKS))}, got {shown}")
    validation.check_gamma(gamma, where)
    validation.check_number("label_smoothing", label_smoothing, validation.UNIT_INTERVAL, where)
    # Checked here rather than at the first training step (multi-label's alpha in [0, 1] and
    # the lengths against the logits are checked by the loss, which sees them).
    alpha_setting(alpha, validation.NONNEGATIVE, where)
    weight_tensor = None if weight is None else setting_tensor(weight, "weight", where)
    if weight_tensor is not None and name != "ForSequenceClassification":
        validation.check_per_class_length("weight", weight_tensor.shape, None, where)
    return FocalLossFunc(
        name,  # type: ignore[arg-type]
        gamma=gamma,
        alpha=alpha,
        weight=weight_tensor,
        label_smoothing=label_smoothing,
        problem_type=problem_type,
    )


def _causal_lm_loss_type(model: Any) -> Any:
    """``model.loss_type``; for a causal LM without one (GPT-2's ``GPT2LMHeadModel``), sets it.

    transformers derives ``loss_type`` from the class name; a causal LM whose name does not end
    in ``ForCausalLM`` gets ``None``, for which ``model.loss_function`` falls back to
    ``ForCausalLMLoss`` anyway, but the ``Trainer`` then counts ``num_items_in_batch`` over the
    unshifted labels: one target too many per row whose first label is not ``-100``.
    Setting ``loss_type = "ForCausalLM"`` changes only that count, to the shifted one.
    """
    from transformers.loss.loss_utils import LOSS_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    loss_type = getattr(model, "loss_type", None)
    causal = type(model).__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
    if loss_type not in LOSS_MAPPING and causal:
        model.loss_type = loss_type = "ForCausalLM"
    return loss_type


def _divisor_argument(num_items_in_batch: Tensor | float | None) -> Tensor | float | None:
    """``num_items_in_batch`` as ``divisor=``: a one-element tensor becomes 0-dim (under
    ``DataParallel`` the ``Trainer`` hands each replica a ``(1, 1)`` slice of the count)."""
    if isinstance(num_items_in_batch, Tensor) and num_items_in_batch.numel() == 1:
        return num_items_in_batch.reshape(())
    return num_items_in_batch


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return repr(value)
