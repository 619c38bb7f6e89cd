"""``use_focal_loss(model)``: ``model(**batch, labels=...)`` returns the focal loss."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

import hf_models as hf
import torch

from focalkit.transformers import ModelFocalLoss, use_focal_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_causal_lm_returns_the_focal_loss(name: str, gamma: float) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    use_focal_loss(model, gamma=gamma)
    assert isinstance(model.loss_function, ModelFocalLoss)
    outputs = model(**rows)
    expected = hf.softmax_objective(*hf.shifted(outputs.logits, rows["labels"]), gamma=gamma)
    torch.testing.assert_close(outputs.loss, expected, rtol=1e-12, atol=0)
    # num_items_in_batch, as the Trainer passes it, divides the sum instead of the count
    count = (rows["labels"][:, 1:] != -100).sum()
    divided = model(**rows, num_items_in_batch=count * 4).loss
    torch.testing.assert_close(divided, expected / 4, rtol=1e-12, atol=0)


def test_token_classification_returns_the_focal_loss() -> None:
    model, rows = hf.llama_token_classifier(), hf.token_classification_rows()
    use_focal_loss(model, gamma=2.0, alpha=0.25)
    outputs = model(**rows)
    logits = outputs.logits.reshape(-1, hf.CLASSES)
    expected = hf.softmax_objective(logits, rows["labels"].reshape(-1), gamma=2.0, alpha=0.25)
    torch.testing.assert_close(outputs.loss, expected, rtol=1e-12, atol=0)


def test_sequence_classification_returns_the_focal_loss() -> None:
    model, rows = hf.llama_sequence_classifier(), hf.sequence_classification_rows()
    weight = torch.tensor([0.3, 1.0, 2.5, 0.7, 1.9], dtype=torch.float64)
    use_focal_loss(model, gamma=2.0, weight=weight)
    outputs = model(**rows)
    expected = hf.softmax_objective(
        outputs.logits, rows["labels"], gamma=2.0, weight=weight, divide_by="weight"
    )
    torch.testing.assert_close(outputs.loss, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
def test_trainer_uses_the_models_focal_loss(name: str, tmp_path: Path) -> None:
    """No compute_loss_func: the Trainer passes num_items_in_batch to the model's loss."""
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    use_focal_loss(model, gamma=2.0)
    objective = hf.causal_lm_objective(rows, gamma=2.0)
    run = hf.train(model, rows, tmp_path, objective=objective)
    hf.assert_gradients_equal(run.gradients, run.expected)
    assert all(map(hf.is_close, run.logged_losses, run.expected_losses))


def test_only_this_instance_changes() -> None:
    model, other, rows = hf.CAUSAL_LMS["llama"](), hf.CAUSAL_LMS["llama"](), hf.causal_lm_rows()
    use_focal_loss(model, gamma=2.0)
    assert model(**rows).loss < other(**rows).loss  # focal loss is below cross-entropy
    assert not isinstance(other.loss_function, ModelFocalLoss)
