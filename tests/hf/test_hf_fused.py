"""The fused causal-LM loss: values and gradients of the unfused loss, with no logits formed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import hf_models as hf
import torch

from focalkit.transformers import (
    FocalTrainer,
    focal_loss_func,
    fused_causal_lm_loss,
    use_focal_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CLASS_WEIGHT = torch.linspace(0.2, 3.0, hf.VOCAB, dtype=torch.float64)
SETTINGS = [
    {"gamma": 0.0},
    {"gamma": 2.0},
    {"gamma": 0.5, "alpha": 0.25, "label_smoothing": 0.1},
    {"gamma": 2.0, "weight": CLASS_WEIGHT},
]


@contextmanager
def head_calls(model: hf.PreTrainedModel) -> Iterator[list[int]]:
    """Counts the calls of the model's lm_head: each one forms logits."""
    calls: list[int] = []
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: calls.append(1)
    )
    try:
        yield calls
    finally:
        handle.remove()


def assert_same(
    loss: torch.Tensor, grads: dict[str, torch.Tensor], want: torch.Tensor, want_grads: Any
) -> None:
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=0)
    for name in grads:
        torch.testing.assert_close(grads[name], want_grads[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s))
def test_fused_function_equals_unfused(name: str, settings: dict[str, Any]) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    labels = rows["labels"]
    unfused = focal_loss_func(model, **settings)(model(**hf.whole_batch(rows)), labels)
    want_grads = hf.gradients(model, unfused)
    with head_calls(model) as calls:
        fused = fused_causal_lm_loss(
            model,
            rows["input_ids"],
            labels,
            attention_mask=rows["attention_mask"],
            chunk_size=5,  # several chunks, the last one short
            **settings,
        )
    assert not calls
    assert_same(fused, hf.gradients(model, fused), unfused, want_grads)
    # and both are the float64 formula, the labels shifted by hand
    logits = model(**hf.whole_batch(rows)).logits
    divide_by = "weight" if "weight" in settings else "count"
    if "label_smoothing" not in settings:
        expected = hf.softmax_objective(
            *hf.shifted(logits, labels), divide_by=divide_by, **settings
        )
        torch.testing.assert_close(fused, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
def test_fused_function_divides_by_num_items_and_takes_shift_labels(name: str) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    shift_labels = torch.nn.functional.pad(rows["labels"], (0, 1), value=-100)[:, 1:]
    count = (shift_labels != -100).sum()
    mean = fused_causal_lm_loss(model, rows["input_ids"], rows["labels"])
    divided = fused_causal_lm_loss(
        model,
        rows["input_ids"],
        torch.full_like(rows["labels"], 7),  # unused: shift_labels win
        shift_labels=shift_labels,
        num_items_in_batch=count * 2,
    )
    torch.testing.assert_close(divided, mean / 2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
def test_fused_forward_in_training_never_forms_logits(name: str) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    twin = use_focal_loss(hf.copy_of(model), gamma=2.0)
    unfused = twin(**rows).loss
    want_grads = hf.gradients(twin, unfused)
    use_focal_loss(model, gamma=2.0, fused=True, chunk_size=7)
    with head_calls(model) as calls:
        outputs = model(**rows)
    assert not calls
    assert outputs.logits is None
    assert_same(outputs.loss, hf.gradients(model, outputs.loss), unfused, want_grads)
    as_tuple = model(**rows, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], unfused, rtol=1e-12, atol=0)
    # evaluation mode, or no labels: the model's own forward, with its logits
    evaluated = model.eval()(**rows)
    assert evaluated.logits.shape == (hf.ROWS, hf.LENGTH, hf.VOCAB)
    torch.testing.assert_close(evaluated.loss, unfused, rtol=1e-12, atol=0)
    assert model.train()(**hf.whole_batch(rows)).logits is not None
    # fused=False puts the class's forward back
    use_focal_loss(model, gamma=2.0)
    assert "forward" not in model.__dict__
    assert model(**rows).logits is not None


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
def test_trainer_with_the_fused_model(name: str, tmp_path: Path) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    use_focal_loss(model, gamma=2.0, fused=True, chunk_size=5)
    objective = hf.causal_lm_objective(rows, gamma=2.0)
    with head_calls(model) as calls:
        run = hf.train(model, rows, tmp_path, objective=objective)
    assert len(calls) == 3  # the objective's forward, once a step; none in the six micro-batches
    hf.assert_gradients_equal(run.gradients, run.expected)
    assert all(map(hf.is_close, run.logged_losses, run.expected_losses))


def test_focal_trainer_with_the_fused_model_and_class_weights(tmp_path: Path) -> None:
    model, rows = hf.CAUSAL_LMS["llama"](), hf.causal_lm_rows()
    use_focal_loss(model, gamma=2.0, weight=CLASS_WEIGHT, fused=True)
    objective = hf.causal_lm_objective(rows, gamma=2.0, weight=CLASS_WEIGHT, divide_by="weight")
    run = hf.train(model, rows, tmp_path, objective=objective, trainer_class=FocalTrainer)
    hf.assert_gradients_equal(run.gradients, run.expected)
