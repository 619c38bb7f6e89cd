r"""A ``Trainer`` whose ``num_items_in_batch`` is the summed class weights of the step's targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from transformers import Trainer

from focalkit.transformers.losses import FocalLossFunc
from focalkit.transformers.models import ModelFocalLoss

__all__ = ["FocalTrainer"]


class FocalTrainer(Trainer):
    r"""``Trainer`` for a focal loss with class weights: the exact weighted mean per step.

    The ``Trainer`` divides each micro-batch's summed loss by ``num_items_in_batch``, its count
    of the step's targets that are not ``-100`` (over every micro-batch of the optimizer step,
    and over every process with ``average_tokens_across_devices=True``). With per-class weights
    :math:`w` that gives :math:`\sum_n w_{y_n} \ell_n / N`, not the weighted mean
    :math:`\sum_n w_{y_n} \ell_n / \sum_n w_{y_n}` that ``F.cross_entropy`` and
    :func:`focalkit.softmax_focal_loss` take in one call. This ``Trainer`` replaces the count by
    :math:`\sum_n w_{y_n}` over the same targets (:meth:`FocalLossFunc.divisor`, summed over the
    micro-batches, then over the processes by the same gather as the ``Trainer``'s count), so that
    each optimizer step trains the weighted mean over the whole global batch: under gradient
    accumulation, and across processes with ``average_tokens_across_devices=True`` (the
    ``Trainer`` then multiplies the loss by the number of processes, which undoes DDP's average
    of the gradients). With ``average_tokens_across_devices=False`` each process divides by its
    own sum and DDP averages those means. Without class weights it is the ``Trainer`` itself.

    It takes the loss from ``compute_loss_func`` (a :func:`focal_loss_func`) or, without one,
    from a model prepared by :func:`use_focal_loss` (fused or not). Evaluation keeps the
    ``Trainer``'s per-batch count. ``DataParallel`` (several GPUs in one process) is not
    supported with class weights; use DDP.

    Example:
        >>> import tempfile, torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments
        >>> from focalkit.transformers import FocalTrainer, use_focal_loss
        >>> _ = torch.manual_seed(0)
        >>> config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16,
        ...                      num_hidden_layers=1, num_attention_heads=2)
        >>> model = use_focal_loss(LlamaForCausalLM(config), gamma=2.0, fused=True,
        ...                        weight=torch.linspace(0.5, 2.0, 32))
        >>> data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 32, (8, 6))]
        >>> args = TrainingArguments(tempfile.mkdtemp(), per_device_train_batch_size=2,
        ...                          gradient_accumulation_steps=2, max_steps=2,
        ...                          report_to=[], save_strategy="no", disable_tqdm=True)
        >>> trainer = FocalTrainer(model=model, args=args, train_dataset=data)
        >>> trainer.train().global_step  # doctest: +ELLIPSIS
        {'train_runtime': ...}
        2
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.focal_loss = _focal_loss_of(self)
        if self.focal_loss.weight is not None and self.args.n_gpu > 1:
            raise ValueError(
                "FocalTrainer(): class weights under DataParallel (n_gpu > 1 in one process) are "
                "not supported; run one process per device (torchrun, accelerate launch)"
            )

    def get_batch_samples(
        self, epoch_iterator: Iterator[Any], num_batches: int, device: torch.device
    ) -> tuple[list[Any], torch.Tensor | int | None]:
        """The step's micro-batches and their divisor: with class weights, their summed weights."""
        batch_samples, num_items_in_batch = super().get_batch_samples(
            epoch_iterator, num_batches, device
        )
        if num_items_in_batch is None or self.focal_loss.weight is None:
            return batch_samples, num_items_in_batch
        divisor = torch.stack(
            [
                self.focal_loss.divisor(batch["labels"], shift_labels=batch.get("shift_labels"))
                for batch in batch_samples
            ]
        ).sum()
        divisor = divisor.to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            divisor = self.accelerator.gather(divisor).sum()
        # as the Trainer's count: ranks that see the same batch (tensor, context and sequence
        # parallelism) count it once
        return batch_samples, divisor / (
            self.get_tp_size() * self.get_cp_size() * self.get_sp_size()
        )


def _focal_loss_of(trainer: Trainer) -> FocalLossFunc:
    if isinstance(trainer.compute_loss_func, FocalLossFunc):
        return trainer.compute_loss_func
    model_loss = getattr(trainer.accelerator.unwrap_model(trainer.model), "loss_function", None)
    if trainer.compute_loss_func is None and isinstance(model_loss, ModelFocalLoss):
        return model_loss.focal
    raise ValueError(
        "FocalTrainer(): expected compute_loss_func=focal_loss_func(...) or a model prepared by "
        f"use_focal_loss(model, ...), got compute_loss_func={trainer.compute_loss_func!r} and a "
        f"model whose loss_function is {type(model_loss).__name__}"
    )
