r"""Focal loss inside a transformers model: its ``loss_function``, and the fused causal-LM path.

transformers models compute their loss through ``self.loss_function``, which a model instance
lets one set (``PreTrainedModel.loss_function`` is a property with a setter; without one it is
looked up in ``transformers.loss.loss_utils.LOSS_MAPPING`` by ``model.loss_type``).
:func:`use_focal_loss` sets it, and leaves ``loss_type`` as it is, so that the ``Trainer``
still counts a causal LM's targets after the shift. For causal LMs it can also replace the
instance's ``forward`` while training, so that the loss is taken from the last hidden states and
the head's weight by :func:`focalkit.linear_softmax_focal_loss`, and the :math:`(B, T, V)`
logits are never formed (what Liger Kernel's and Cut Cross-Entropy's patched forwards do for
cross-entropy).
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any, TypeVar

from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from focalkit._core import validation
from focalkit.torch import linear_softmax_focal_loss
from focalkit.torch._inputs import ArrayLike
from focalkit.transformers.losses import (
    IGNORE_INDEX,
    FocalLossFunc,
    _causal_lm_loss_type,
    _divisor_argument,
    focal_loss_func,
)

__all__ = ["fused_causal_lm_loss", "use_focal_loss"]

Model = TypeVar("Model", bound=PreTrainedModel)
# Config fields of models whose logits are not lm_head(last hidden state) (Gemma 2 and 3,
# Cohere, Granite, Falcon-H1): the fused path would compute a different loss for them.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "lm_head_multiplier",
)


class ModelFocalLoss:
    """The focal loss as a model's ``loss_function``: called as transformers' models call theirs.

    Causal LMs call ``loss_function(logits, labels, vocab_size=..., **kwargs)`` (with
    ``num_items_in_batch`` and ``shift_labels`` among the keyword arguments when the ``Trainer``
    or a collator gives them), token classification ``loss_function(logits, labels, config)``,
    sequence classification ``loss_function(logits=..., labels=..., pooled_logits=...,
    config=...)``.

    Attributes:
        focal: The :class:`~focalkit.transformers.FocalLossFunc` that computes the loss.
        fused: Whether the model's ``forward`` was replaced to use the fused loss in training.
        chunk_size: Rows per chunk of the fused loss (``None``: chosen from the shapes).
    """

    def __init__(self, focal: FocalLossFunc, *, fused: bool, chunk_size: int | None) -> None:
        self.focal = focal
        self.fused = fused
        self.chunk_size = chunk_size

    def __call__(
        self,
        logits: Tensor | None = None,
        labels: Tensor | None = None,
        *args: Any,
        pooled_logits: Tensor | None = None,
        num_items_in_batch: Tensor | float | None = None,
        shift_labels: Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
        **kwargs: Any,
    ) -> Tensor:
        if ignore_index != IGNORE_INDEX:
            raise ValueError(
                f"{type(self).__name__}(): ignore_index must be {IGNORE_INDEX} (the labels the "
                f"Trainer leaves out of num_items_in_batch), got {ignore_index!r}"
            )
        if pooled_logits is not None:  # sequence classification: one row per sequence
            logits = pooled_logits
        if logits is None or labels is None:
            raise TypeError(f"{type(self).__name__}(): expected logits and labels")
        return self.focal.loss(
            logits, labels, num_items_in_batch=num_items_in_batch, shift_labels=shift_labels
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.focal!r}, fused={self.fused})"


def use_focal_loss(
    model: Model,
    *,
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    weight: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    fused: bool = False,
    chunk_size: int | None = None,
) -> Model:
    r"""Make ``model(**batch, labels=labels)`` return the focal loss instead of cross-entropy.

    Sets ``model.loss_function`` to the loss of :func:`focal_loss_func` (same arguments, same
    formula, same handling of ``num_items_in_batch``), for models whose ``forward`` computes its
    loss through ``self.loss_function``: transformers' ``*ForCausalLM`` classes (Llama, Mistral,
    Qwen2, GPT-2, ...) and the generic ``*ForTokenClassification`` and
    ``*ForSequenceClassification`` classes of decoder models. Models that build their loss
    inline (BERT's heads, for example) raise a ``ValueError``: give them
    ``Trainer(compute_loss_func=focal_loss_func(model, ...))``. Only this instance changes, and
    nothing of it is saved with the model.

    Of these models only the causal LMs pass the ``Trainer``'s ``num_items_in_batch`` on to
    their loss; a token- or sequence-classification model returns the mean over its own call, so
    train those with ``compute_loss_func`` when using gradient accumulation.

    With ``fused=True`` (causal LMs only), ``forward`` in training mode (``model.train()``) with
    ``labels`` runs the base model, then :func:`focalkit.linear_softmax_focal_loss` on the last
    hidden states and ``lm_head.weight`` (and its bias, if any), and returns the loss with
    ``logits=None``: the logits are never formed, which removes the largest tensors of training
    with a large vocabulary. Values and gradients are those of the unfused loss. In evaluation
    mode, or without labels, the model's own ``forward`` runs (with the focal loss), so that
    generation and metrics get their logits. The fused path needs logits that are exactly
    ``lm_head(last_hidden_state)``: models that scale or soft-cap them (Gemma 2 and 3, Cohere,
    Granite) raise a ``ValueError``; ``logits_to_keep`` must be 0 while training. The loss comes
    back in the hidden states' dtype. It calls the base model directly, so it does not suit a
    model whose head is sharded outside that call (FSDP's root module).

    Args:
        model: A transformers model (a ``PreTrainedModel``), changed in place.
        gamma, alpha, weight, label_smoothing: As in :func:`focal_loss_func`.
        fused: Replace the instance's ``forward`` with the fused one in training (causal LMs).
        chunk_size: Rows per chunk of the fused loss. Default: chosen from the shapes.

    Returns:
        ``model``, with ``model.loss_function`` a :class:`ModelFocalLoss`.

    Example:
        >>> import torch
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> from focalkit.transformers import use_focal_loss
        >>> _ = torch.manual_seed(0)
        >>> config = GPT2Config(vocab_size=50, n_embd=8, n_layer=1, n_head=2, bos_token_id=0,
        ...                     eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        >>> model = GPT2LMHeadModel(config)
        >>> input_ids = torch.randint(0, 50, (2, 6))
        >>> cross_entropy = model(input_ids, labels=input_ids).loss
        >>> model = use_focal_loss(model, gamma=0.0)
        >>> torch.allclose(model(input_ids, labels=input_ids).loss, cross_entropy)
        True
        >>> model = use_focal_loss(model.eval(), gamma=2.0, fused=True)
        >>> focal = model(input_ids, labels=input_ids).loss  # eval mode: the logits are formed
        >>> fused = model.train()(input_ids, labels=input_ids)  # train mode: never formed
        >>> fused.logits is None, torch.allclose(fused.loss, focal)
        (True, True)
    """
    where = "use_focal_loss()"
    validation.check_positive_int("chunk_size", chunk_size, where, optional=True)
    focal = focal_loss_func(
        model, gamma=gamma, alpha=alpha, weight=weight, label_smoothing=label_smoothing
    )
    if not _computes_loss_through_loss_function(type(model)):
        raise ValueError(
            f"{where}: {type(model).__name__}.forward computes its loss without "
            "self.loss_function, so setting it would change nothing; use "
            "Trainer(compute_loss_func=focal_loss_func(model, ...)) instead"
        )
    if fused:
        _check_fused(model, where)
    model.loss_function = ModelFocalLoss(focal, fused=fused, chunk_size=chunk_size)
    if fused:
        # the class's signature stays visible (the Trainer keeps the dataset columns it names)
        forward = functools.wraps(type(model).forward)(_fused_forward)
        model.forward = types.MethodType(forward, model)
    elif isinstance(model.__dict__.get("forward"), types.MethodType):
        del model.forward  # an earlier fused=True: back to the class's forward
    return model


def fused_causal_lm_loss(
    model: PreTrainedModel,
    input_ids: Tensor | None,
    labels: Tensor,
    *,
    attention_mask: Tensor | None = None,
    num_items_in_batch: Tensor | float | None = None,
    shift_labels: Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | ArrayLike | None = None,
    weight: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    chunk_size: int | None = None,
    **model_kwargs: Any,
) -> Tensor:
    r"""A causal LM's focal loss from its hidden states and ``lm_head.weight``, without logits.

    Runs the base model (``model.base_model``: ``model.model`` for Llama, ``model.transformer``
    for GPT-2) for the last hidden states :math:`h`, shifts the labels as transformers does
    (position :math:`t` predicts label :math:`t + 1`; ``-100`` ignored), and returns
    ``linear_softmax_focal_loss(h, lm_head.weight, shifted_labels, bias=lm_head.bias, ...)``: the
    value and gradients of ``focal_loss_func("ForCausalLM", ...)`` on ``model(...).logits``, with
    no :math:`(B, T, V)` tensor. ``num_items_in_batch`` divides the sum as in
    :class:`FocalLossFunc`; without it the loss is the mean over this call's targets.

    Args:
        model: A transformers causal LM whose logits are ``lm_head(last_hidden_state)``.
        input_ids: :math:`(B, T)`, or ``None`` with ``inputs_embeds`` in ``model_kwargs``.
        labels: :math:`(B, T)`, unshifted, ``-100`` where nothing is predicted.
        attention_mask: :math:`(B, T)`, as the model takes it.
        num_items_in_batch: The divisor (the ``Trainer``'s count of targets in the step).
        shift_labels: Already shifted labels :math:`(B, T)`, used instead of ``labels``.
        gamma, alpha, weight, label_smoothing: As in :func:`focal_loss_func`.
        chunk_size: Rows per chunk. Default: chosen from the shapes.
        model_kwargs: Passed to the base model (``position_ids``, ``inputs_embeds``, ...).

    Returns:
        The loss, a scalar in the hidden states' dtype.

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from focalkit.transformers import focal_loss_func, fused_causal_lm_loss
        >>> _ = torch.manual_seed(0)
        >>> config = LlamaConfig(vocab_size=64, hidden_size=8, intermediate_size=16,
        ...                      num_hidden_layers=1, num_attention_heads=2)
        >>> model = LlamaForCausalLM(config)
        >>> input_ids = torch.randint(0, 64, (2, 5))
        >>> fused = fused_causal_lm_loss(model, input_ids, input_ids, gamma=2.0)
        >>> unfused = focal_loss_func(model, gamma=2.0)(model(input_ids), input_ids)
        >>> torch.allclose(fused, unfused)
        True
    """
    where = "fused_causal_lm_loss()"
    focal = focal_loss_func(
        "ForCausalLM", gamma=gamma, alpha=alpha, weight=weight, label_smoothing=label_smoothing
    )
    _check_fused(model, where)
    outputs = model.base_model(input_ids=input_ids, attention_mask=attention_mask, **model_kwargs)
    return _fused_loss(
        model,
        focal,
        outputs.last_hidden_state,
        labels,
        num_items_in_batch=num_items_in_batch,
        shift_labels=shift_labels,
        chunk_size=chunk_size,
    )


def _fused_loss(
    model: PreTrainedModel,
    focal: FocalLossFunc,
    hidden_states: Tensor,
    labels: Tensor,
    *,
    num_items_in_batch: Tensor | float | None,
    shift_labels: Tensor | None,
    chunk_size: int | None,
) -> Tensor:
    head = _head(model)
    target = focal._targets(labels, shift_labels).to(hidden_states.device)
    return linear_softmax_focal_loss(
        hidden_states,
        head.weight,
        target,
        bias=head.bias,
        weight=focal.weight,
        ignore_index=IGNORE_INDEX,
        reduction="mean",
        label_smoothing=focal.label_smoothing,
        gamma=focal.gamma,
        alpha=focal.alpha,  # type: ignore[arg-type]
        chunk_size=chunk_size,
        divisor=_divisor_argument(num_items_in_batch),
    )


def _fused_forward(self: PreTrainedModel, *args: Any, **kwargs: Any) -> Any:
    """The ``forward`` that :func:`use_focal_loss` sets with ``fused=True``."""
    forward = type(self).forward
    arguments = _arguments(type(self), self, args, kwargs)
    labels = arguments.pop("labels", None)
    if labels is None or not self.training:
        return forward(self, *args, **kwargs)
    model_loss: ModelFocalLoss = self.loss_function
    num_items_in_batch = arguments.pop("num_items_in_batch", None)
    shift_labels = arguments.pop("shift_labels", None)
    logits_to_keep = arguments.pop("logits_to_keep", 0)
    if not isinstance(logits_to_keep, int) or logits_to_keep != 0:
        raise ValueError(
            f"{type(self).__name__}.forward (fused focal loss): logits_to_keep must be 0 in "
            f"training, where the loss covers every position, got {logits_to_keep!r}"
        )
    return_dict = arguments.pop("return_dict", None)
    outputs = self.base_model(**arguments)
    loss = _fused_loss(
        self,
        model_loss.focal,
        outputs.last_hidden_state,
        labels,
        num_items_in_batch=num_items_in_batch,
        shift_labels=shift_labels,
        chunk_size=model_loss.chunk_size,
    )
    result = CausalLMOutputWithPast(
        loss=loss, logits=None, hidden_states=outputs.hidden_states, attentions=outputs.attentions
    )
    if return_dict is None:
        return_dict = getattr(self.config, "return_dict", True)
    return result if return_dict else result.to_tuple()


def _arguments(
    cls: type[nn.Module], model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The arguments of a call of ``cls.forward`` by name (its ``**kwargs`` spread out)."""
    signature, var_keyword = _forward_signature(cls)
    bound = signature.bind(model, *args, **kwargs).arguments
    named = {name: value for name, value in list(bound.items())[1:] if name != var_keyword}
    named.update(bound.get(var_keyword, {}) if var_keyword else {})
    return named


def _forward_signature(cls: type[nn.Module]) -> tuple[inspect.Signature, str | None]:
    signature = inspect.signature(cls.forward)
    var_keyword = next(
        (p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None
    )
    return signature, var_keyword


def _head(model: PreTrainedModel) -> Any:
    return model.get_output_embeddings()  # type: ignore[no-untyped-call]


def _computes_loss_through_loss_function(cls: type[nn.Module]) -> bool:
    code = getattr(inspect.unwrap(cls.forward), "__code__", None)
    return code is not None and "loss_function" in code.co_names


def _check_fused(model: PreTrainedModel, where: str) -> None:
    if _causal_lm_loss_type(model) != "ForCausalLM":
        raise ValueError(
            f"{where}: the fused loss is for causal language models (loss_type 'ForCausalLM'), "
            f"got {type(model).__name__} with loss_type={getattr(model, 'loss_type', None)!r}"
        )
    head = _head(model)
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"{where}: the fused loss needs the output embeddings (lm_head) to be an nn.Linear, "
            f"got {type(head).__name__} in {type(model).__name__}"
        )
    config = getattr(model, "config", None)
    transforms = [name for name in _LOGIT_TRANSFORMS if getattr(config, name, None) is not None]
    if transforms:
        raise ValueError(
            f"{where}: {type(model).__name__}'s logits are not lm_head(last_hidden_state) (its "
            f"config sets {', '.join(transforms)}), which the fused loss computes; use "
            "use_focal_loss(model, fused=False)"
        )
