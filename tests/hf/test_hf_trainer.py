"""``Trainer(compute_loss_func=focal_loss_func(...))`` under gradient accumulation.

Every run takes three optimizer steps of two micro-batches with unequal target counts; each
step's gradients are compared with the gradient of the whole step's float64 objective at the
parameters the step started from (tests/oracles.py's formulas, the labels shifted by hand).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import hf_models as hf
import torch
import torch.nn.functional as F
from transformers import Trainer

from focalkit.transformers import FocalTrainer, focal_loss_func

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (0.5, torch.linspace(0.5, 1.5, 61))])
def test_causal_lm_trains_the_focal_mean_over_the_step(
    name: str, gamma: float, alpha: torch.Tensor | None, tmp_path: Path
) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()
    naive = hf.naive_mean_gradient(model, rows, gamma=gamma, alpha=alpha)
    loss_func = focal_loss_func(model, gamma=gamma, alpha=alpha)
    objective = hf.causal_lm_objective(rows, gamma=gamma, alpha=alpha)
    run = hf.train(model, rows, tmp_path, objective=objective, compute_loss_func=loss_func)
    hf.assert_gradients_equal(run.gradients, run.expected)
    assert all(map(hf.is_close, run.logged_losses, run.expected_losses))
    # the test can fail: dividing each micro-batch by its own count trains something else
    assert hf.relative_difference(naive, run.expected[0]) > 1e-2


def test_causal_lm_at_gamma_0_is_the_trainers_own_loss(tmp_path: Path) -> None:
    model, rows = hf.CAUSAL_LMS["llama"](), hf.causal_lm_rows()
    twin = hf.copy_of(model)
    own = hf.train(model, rows, tmp_path / "own")
    focal = focal_loss_func(twin, gamma=0.0)
    ours = hf.train(twin, rows, tmp_path / "focal", compute_loss_func=focal)
    # transformers computes its loss in float32 (logits.float()), even for a float64 model
    hf.assert_gradients_equal(ours.gradients, own.gradients, **hf.FLOAT32)
    assert all(map(hf.is_close, ours.logged_losses, own.logged_losses))


@pytest.mark.parametrize("name", sorted(hf.CAUSAL_LMS))
def test_causal_lm_at_gamma_0_is_cross_entropy_over_the_step(name: str, tmp_path: Path) -> None:
    model, rows = hf.CAUSAL_LMS[name](), hf.causal_lm_rows()

    def cross_entropy(model: hf.PreTrainedModel) -> torch.Tensor:
        logits = model(**hf.whole_batch(rows)).logits
        return F.cross_entropy(*hf.shifted(logits, rows["labels"]))

    focal = focal_loss_func(model, gamma=0.0)
    run = hf.train(model, rows, tmp_path, objective=cross_entropy, compute_loss_func=focal)
    hf.assert_gradients_equal(run.gradients, run.expected)


def test_gpt2_without_a_loss_type_is_counted_before_the_shift(tmp_path: Path) -> None:
    """Why focal_loss_func sets GPT2LMHeadModel's loss_type: without one, the Trainer divides
    by the unshifted count, one more than the targets per row."""
    model, rows = hf.CAUSAL_LMS["gpt2"](), hf.causal_lm_rows()
    assert model.loss_type is None
    objective = hf.causal_lm_objective(rows, gamma=0.0)
    own = hf.train(hf.copy_of(model), rows, tmp_path / "own", objective=objective)
    expected_ratio = ((rows["labels"][:, 1:] != -100).sum() / (rows["labels"] != -100).sum()).item()
    scaled = [{name: g * expected_ratio for name, g in step.items()} for step in own.expected]
    hf.assert_gradients_equal(own.gradients, scaled, **hf.FLOAT32)  # the Trainer's own: float32
    focal_loss_func(model, gamma=0.0)
    assert model.loss_type == "ForCausalLM"
    fixed = hf.train(model, rows, tmp_path / "fixed", objective=objective)
    hf.assert_gradients_equal(fixed.gradients, fixed.expected, **hf.FLOAT32)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_token_classification(gamma: float, tmp_path: Path) -> None:
    model, rows = hf.bert_token_classifier(), hf.token_classification_rows()
    objective = hf.token_objective(rows, gamma=gamma)
    loss_func = focal_loss_func(model, gamma=gamma)
    run = hf.train(model, rows, tmp_path, objective=objective, compute_loss_func=loss_func)
    hf.assert_gradients_equal(run.gradients, run.expected)
    assert all(map(hf.is_close, run.logged_losses, run.expected_losses))


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_single_label_sequence_classification(gamma: float, tmp_path: Path) -> None:
    model, rows = hf.llama_sequence_classifier(), hf.sequence_classification_rows()
    objective = hf.sequence_objective(rows, gamma=gamma)
    loss_func = focal_loss_func(model, gamma=gamma)
    run = hf.train(model, rows, tmp_path, objective=objective, compute_loss_func=loss_func)
    hf.assert_gradients_equal(run.gradients, run.expected)


@pytest.mark.parametrize("problem_type", [None, "multi_label_classification"])
def test_multi_label_sequence_classification(problem_type: str | None, tmp_path: Path) -> None:
    model = hf.bert_sequence_classifier(problem_type)
    rows = hf.sequence_classification_rows(multi_label=True)
    objective = hf.sequence_objective(rows, multi_label=True, gamma=2.0)
    loss_func = focal_loss_func(model, gamma=2.0)
    run = hf.train(model, rows, tmp_path, objective=objective, compute_loss_func=loss_func)
    hf.assert_gradients_equal(run.gradients, run.expected)


@pytest.mark.parametrize(
    ("make_model", "make_rows", "flatten"),
    [
        (hf.llama_token_classifier, hf.token_classification_rows, True),
        (hf.bert_token_classifier, hf.token_classification_rows, True),
        (hf.llama_sequence_classifier, hf.sequence_classification_rows, False),
        (hf.bert_sequence_classifier, hf.sequence_classification_rows, False),
    ],
)
def test_one_call_at_gamma_0_is_the_models_own_loss(
    make_model: Callable[[], hf.PreTrainedModel], make_rows: Callable[[], hf.Batch], flatten: bool
) -> None:
    model, rows = make_model(), make_rows()
    outputs = model(**rows)
    loss_func = focal_loss_func(model, gamma=0.0)
    # transformers' token-classification loss is float32 (logits.float()), even here
    own = outputs.loss.double()
    torch.testing.assert_close(loss_func(outputs, rows["labels"]), own, **hf.FLOAT32)
    count = (rows["labels"] != -100).sum()
    summed = F.cross_entropy(
        outputs.logits.reshape(-1, hf.CLASSES) if flatten else outputs.logits,
        rows["labels"].reshape(-1),
        reduction="sum",
    )
    got = loss_func(outputs, rows["labels"], num_items_in_batch=count * 3)
    torch.testing.assert_close(got, summed / (count * 3), rtol=1e-12, atol=0)


CLASS_WEIGHT = torch.linspace(0.2, 3.0, hf.VOCAB, dtype=torch.float64)


@pytest.mark.parametrize(
    ("trainer_class", "divide_by"), [(Trainer, "count"), (FocalTrainer, "weight")]
)
def test_class_weights_under_accumulation(
    trainer_class: type[Trainer], divide_by: str, tmp_path: Path
) -> None:
    """A plain Trainer trains the weighted sum over the step's target count; FocalTrainer the
    weighted mean (divided by the step's summed weights). Both exactly, whatever the split."""
    model, rows = hf.CAUSAL_LMS["llama"](), hf.causal_lm_rows()
    focal = {"gamma": 2.0, "weight": CLASS_WEIGHT}
    objective = hf.causal_lm_objective(rows, divide_by=divide_by, **focal)
    other = hf.causal_lm_objective(
        rows, divide_by={"count": "weight"}.get(divide_by, "count"), **focal
    )
    run = hf.train(
        model,
        rows,
        tmp_path,
        objective=objective,
        trainer_class=trainer_class,
        compute_loss_func=focal_loss_func(model, **focal),
    )
    hf.assert_gradients_equal(run.gradients, run.expected)
    assert all(map(hf.is_close, run.logged_losses, run.expected_losses))
    # the two objectives are different: the ratio of summed weights to count is not 1 here
    assert not hf.is_close(objective(model).item(), other(model).item())


def test_token_classification_class_weights_weighted_mean(tmp_path: Path) -> None:
    model, rows = hf.bert_token_classifier(), hf.token_classification_rows()
    weight = torch.tensor([0.3, 1.0, 2.5, 0.7, 1.9], dtype=torch.float64)
    objective = hf.token_objective(rows, gamma=1.0, weight=weight, divide_by="weight")
    loss_func = focal_loss_func(model, gamma=1.0, weight=weight)
    run = hf.train(
        model,
        rows,
        tmp_path,
        objective=objective,
        trainer_class=FocalTrainer,
        compute_loss_func=loss_func,
    )
    hf.assert_gradients_equal(run.gradients, run.expected)


def test_focal_trainer_without_class_weights_is_the_trainer(tmp_path: Path) -> None:
    model, rows = hf.CAUSAL_LMS["llama"](), hf.causal_lm_rows()
    twin = hf.copy_of(model)
    plain = hf.train(model, rows, tmp_path / "a", compute_loss_func=focal_loss_func(model))
    focal = hf.train(
        twin,
        rows,
        tmp_path / "b",
        trainer_class=FocalTrainer,
        compute_loss_func=focal_loss_func(twin),
    )
    hf.assert_gradients_equal(focal.gradients, plain.gradients)


def test_the_weighted_divisor_is_summed_exactly() -> None:
    """FocalTrainer sums these over a step's micro-batches and processes: float64, so that a
    sum past 2**24 keeps its units (float32 would give 2**24 here)."""
    weight = torch.tensor([2.0**24, 1.0, 0.5])
    loss_func = focal_loss_func("ForTokenClassification", weight=weight)
    labels = torch.tensor([[0, 1, -100], [2, 1, 1]])
    divisor = loss_func.divisor(labels)
    assert divisor.dtype == torch.float64
    assert float(divisor) == 2.0**24 + 1.0 + 0.5 + 1.0 + 1.0
    # the causal LM's targets are the shifted labels: 1, (ignored), 1, 1
    causal = focal_loss_func("ForCausalLM", weight=weight)
    assert float(causal.divisor(labels)) == 3.0
    assert torch.equal(focal_loss_func("ForCausalLM").divisor(labels), torch.tensor(3))
