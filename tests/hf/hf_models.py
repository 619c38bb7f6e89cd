"""Tiny transformers models built from configs, their data, a Trainer run that records every
step's gradients, and the float64 objectives the runs are held to.

Every model is float64 and has no dropout, so that a Trainer step and the oracle's gradient of
the whole step's objective at the same parameters agree to rounding (1e-10). Every dataset holds
exactly one optimizer step (``BATCH * ACCUMULATION`` rows, read in order), so that step ``k``
of any run trains the objective of the whole dataset at the parameters it starts from.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from oracles import sigmoid_focal_reference, softmax_focal_reference
from torch import Tensor, nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaForTokenClassification,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

VOCAB = 61
CLASSES = 5
LENGTH = 8
BATCH = 2
ACCUMULATION = 2
ROWS = BATCH * ACCUMULATION
# tokens per row: every way of pairing the rows into micro-batches has unequal target counts,
# so a mean per micro-batch is never the mean over the step
REAL_LENGTHS = (2, 3, 6, 8)
PAD = 0

Batch = dict[str, Tensor]


def _llama_config(**extra: Any) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
        **extra,
    )


def _bert_config(**extra: Any) -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
        **extra,
    )


def _gpt2_config() -> GPT2Config:
    return GPT2Config(
        vocab_size=VOCAB,
        n_embd=16,
        n_layer=1,
        n_head=2,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=2,
    )


def _build(cls: type[PreTrainedModel], config: Any, seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    return cls(config).double().train()


CAUSAL_LMS: dict[str, Callable[[], PreTrainedModel]] = {
    "llama": lambda: _build(LlamaForCausalLM, _llama_config(), 0),
    "gpt2": lambda: _build(GPT2LMHeadModel, _gpt2_config(), 1),
}


def llama_token_classifier() -> PreTrainedModel:
    return _build(LlamaForTokenClassification, _llama_config(num_labels=CLASSES), 2)


def llama_sequence_classifier() -> PreTrainedModel:
    return _build(LlamaForSequenceClassification, _llama_config(num_labels=CLASSES), 3)


def bert_token_classifier() -> PreTrainedModel:
    return _build(BertForTokenClassification, _bert_config(num_labels=CLASSES), 4)


def bert_sequence_classifier(problem_type: str | None = None, num_labels: int = CLASSES) -> Any:
    config = _bert_config(num_labels=num_labels, problem_type=problem_type)
    return _build(BertForSequenceClassification, config, 5)


def _ids_and_mask(
    generator: torch.Generator, lengths: Sequence[int] = REAL_LENGTHS
) -> tuple[Tensor, Tensor]:
    ids = torch.randint(3, VOCAB, (len(lengths), LENGTH), generator=generator)
    mask = (torch.arange(LENGTH) < torch.tensor(lengths)[:, None]).long()
    return torch.where(mask.bool(), ids, PAD), mask


def causal_lm_rows(seed: int = 0, lengths: Sequence[int] = REAL_LENGTHS) -> Batch:
    """Right-padded rows; labels are the tokens, -100 at the padding."""
    ids, mask = _ids_and_mask(torch.Generator().manual_seed(seed), lengths)
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def token_classification_rows(seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    ids, mask = _ids_and_mask(generator)
    labels = torch.randint(0, CLASSES, (ROWS, LENGTH), generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels.masked_fill(mask == 0, -100)}


def sequence_classification_rows(seed: int = 0, *, multi_label: bool = False) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    ids, mask = _ids_and_mask(generator)
    if multi_label:
        labels = torch.randint(0, 2, (ROWS, CLASSES), generator=generator).double()
    else:
        labels = torch.tensor([0, 3, 3, 1])  # unequal class mix over the micro-batches
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Rows(torch.utils.data.Dataset[Batch]):
    def __init__(self, rows: Batch) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(next(iter(self.rows.values())))

    def __getitem__(self, index: int) -> Batch:
        return {name: value[index] for name, value in self.rows.items()}


def training_arguments(output_dir: Path, **overrides: Any) -> TrainingArguments:
    """Plain SGD at a constant rate, no clipping, every micro-batch in order, nothing saved."""
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "report_to": [],
        "save_strategy": "no",
        "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": ACCUMULATION,
        "num_train_epochs": 3,
        "optim": "sgd",
        "learning_rate": 0.5,
        "lr_scheduler_type": "constant",
        "max_grad_norm": 0.0,
        "logging_steps": 1,
        "train_sampling_strategy": "sequential",
        "use_cpu": True,
        "disable_tqdm": True,
        "dataloader_pin_memory": False,
        "log_level": "error",
    }
    settings.update(overrides)
    return TrainingArguments(**settings)


# transformers' own losses run in float32 (``logits.float()``) even for a float64 model
FLOAT32 = {"rtol": 1e-5, "atol": 1e-7}

Objective = Callable[[PreTrainedModel], Tensor]


@dataclass
class Run:
    """Per optimizer step: the Trainer's gradients, the objective's at the same parameters (if
    one was given), and the loss the Trainer logged."""

    gradients: list[dict[str, Tensor]] = field(default_factory=list)
    expected: list[dict[str, Tensor]] = field(default_factory=list)
    expected_losses: list[float] = field(default_factory=list)
    logged_losses: list[float] = field(default_factory=list)


class _Recorder(TrainerCallback):
    def __init__(self, run: Run, objective: Objective | None) -> None:
        self.run, self.objective = run, objective

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model: PreTrainedModel = kwargs["model"]
        named = dict(model.named_parameters())
        self.run.gradients.append({name: p.grad.detach().clone() for name, p in named.items()})
        if self.objective is not None:
            loss = self.objective(model)
            self.run.expected.append(gradients(model, loss))
            self.run.expected_losses.append(loss.item())


def train(
    model: PreTrainedModel,
    rows: Batch,
    output_dir: Path,
    *,
    objective: Objective | None = None,
    trainer_class: type[Trainer] = Trainer,
    arguments: dict[str, Any] | None = None,
    **trainer_kwargs: Any,
) -> Run:
    run = Run()
    trainer = trainer_class(
        model=model,
        args=training_arguments(output_dir, **(arguments or {})),
        train_dataset=Rows(rows),
        callbacks=[_Recorder(run, objective)],
        **trainer_kwargs,
    )
    trainer.train()
    run.logged_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return run


def assert_gradients_equal(
    actual: Sequence[dict[str, Tensor]],
    expected: Sequence[dict[str, Tensor]],
    *,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> None:
    assert len(actual) == len(expected) == 3  # three optimizer steps
    for step, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got.keys() == want.keys()
        for name in got:
            error = (got[name] - want[name]).abs().max().item()
            torch.testing.assert_close(
                got[name],
                want[name],
                rtol=rtol,
                atol=atol,
                msg=f"step {step}: {name}: largest difference {error:.3g}",
            )


def relative_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    flat_a = torch.cat([g.flatten() for g in a.values()])
    flat_b = torch.cat([b[name].flatten() for name in a])
    return float((flat_a - flat_b).norm() / flat_b.norm())


# ------------------------------------------------------------------------ the objectives, float64


def shifted(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Position t's logits with label t + 1, flattened: the causal-LM pairs, shifted by hand."""
    return logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)


def softmax_objective(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float,
    alpha: Any = None,
    weight: Tensor | None = None,
    divide_by: str = "count",
) -> Tensor:
    """The focal loss summed over the kept targets (tests/oracles.py's float64 formula), divided
    by their count (the Trainer's num_items_in_batch) or by their summed class weights."""
    total = softmax_focal_reference(
        logits, target, gamma=gamma, alpha=alpha, weight=weight, reduction="sum"
    )
    kept = target != -100
    if divide_by == "count":
        return total / kept.sum()
    assert weight is not None
    return total / weight[target[kept]].sum()


def sigmoid_objective(logits: Tensor, target: Tensor, *, gamma: float) -> Tensor:
    total = sigmoid_focal_reference(logits, target, gamma=gamma, alpha=None, reduction="sum")
    return total / target.numel()


def whole_batch(rows: Batch) -> dict[str, Tensor]:
    return {name: value for name, value in rows.items() if name != "labels"}


def causal_lm_objective(rows: Batch, **focal: Any) -> Objective:
    def objective(model: PreTrainedModel) -> Tensor:
        logits = model(**whole_batch(rows)).logits
        return softmax_objective(*shifted(logits, rows["labels"]), **focal)

    return objective


def token_objective(rows: Batch, **focal: Any) -> Objective:
    def objective(model: PreTrainedModel) -> Tensor:
        logits = model(**whole_batch(rows)).logits
        return softmax_objective(logits.reshape(-1, CLASSES), rows["labels"].reshape(-1), **focal)

    return objective


def sequence_objective(rows: Batch, *, multi_label: bool = False, **focal: Any) -> Objective:
    def objective(model: PreTrainedModel) -> Tensor:
        logits = model(**whole_batch(rows)).logits
        if multi_label:
            return sigmoid_objective(logits, rows["labels"], **focal)
        return softmax_objective(logits, rows["labels"], **focal)

    return objective


def naive_mean_gradient(model: PreTrainedModel, rows: Batch, **focal: Any) -> dict[str, Tensor]:
    """The gradient of the mean of each micro-batch's own mean: what dividing each call by its
    own count trains (the Trainer before num_items_in_batch)."""
    losses = []
    for start in range(0, ROWS, BATCH):
        part = {name: value[start : start + BATCH] for name, value in rows.items()}
        losses.append(causal_lm_objective(part, **focal)(model))
    return gradients(model, torch.stack(losses).mean())


def gradients(model: nn.Module, loss: Tensor) -> dict[str, Tensor]:
    """d loss / d parameter, by name (zeros for a parameter the loss does not reach)."""
    named = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    return {
        name: torch.zeros_like(p) if g is None else g
        for (name, p), g in zip(named.items(), grads, strict=True)
    }


def copy_of(model: nn.Module) -> Any:
    return copy.deepcopy(model)


def is_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)
