"""Bad arguments and unsupported models: an error naming what was expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import hf_models as hf
import torch
from transformers import Trainer

from focalkit.transformers import (
    FocalTrainer,
    ModelFocalLoss,
    focal_loss_func,
    fused_causal_lm_loss,
    use_focal_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("task", "kwargs", "error", "message"),
    [
        ("ForMaskedLM", {}, ValueError, "task must be one of 'ForCausalLM', "),
        ("ForCausalLM", {"gamma": -1.0}, ValueError, "gamma must be >= 0, got -1.0"),
        ("ForCausalLM", {"gamma": "2"}, TypeError, "gamma must be a real number"),
        ("ForCausalLM", {"label_smoothing": 1.5}, ValueError, "label_smoothing must be in"),
        ("ForCausalLM", {"weight": [True, False]}, TypeError, "weight"),
        ("ForCausalLM", {"weight": [[1.0, 2.0]]}, ValueError, "weight must be a 1-D sequence"),
        ("ForTokenClassification", {"alpha": -1.0}, ValueError, "alpha must be >= 0, got -1.0"),
        ("ForCausalLM", {"alpha": [0.5, -0.1]}, ValueError, "alpha values must be >= 0"),
        ("ForSequenceClassification", {"alpha": "x"}, TypeError, "alpha must be a tensor"),
    ],
)
def test_focal_loss_func_arguments(
    task: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^focal_loss_func\\(\\): {re.escape(message)}"):
        focal_loss_func(task, **kwargs)


def test_regression_has_no_focal_form() -> None:
    model = hf.bert_sequence_classifier(num_labels=1)
    rows = hf.sequence_classification_rows()
    loss_func = focal_loss_func(model)  # problem_type None: decided per call, as transformers
    with pytest.raises(ValueError, match=r"num_labels=1\) is a regression, which has no focal"):
        loss_func(model(**hf.whole_batch(rows)), rows["labels"].double())
    regression = hf.bert_sequence_classifier("regression", num_labels=2)
    with pytest.raises(ValueError, match="problem_type is 'regression', which has no focal form"):
        focal_loss_func(regression)


def test_a_model_without_a_supported_loss_type() -> None:
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(
        BertConfig(
            vocab_size=20,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
        )
    )
    with pytest.raises(ValueError, match="got a model with loss_type='ForMaskedLM'"):
        focal_loss_func(model)


def test_labels_must_be_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"labels must be a torch\.Tensor, got NoneType"):
        focal_loss_func("ForCausalLM")({"logits": torch.zeros(1, 3, 5)}, None)  # type: ignore


def test_a_model_whose_forward_ignores_loss_function() -> None:
    with pytest.raises(ValueError, match=r"BertForTokenClassification\.forward computes its loss"):
        use_focal_loss(hf.bert_token_classifier())


def test_fused_needs_a_causal_lm() -> None:
    with pytest.raises(ValueError, match="the fused loss is for causal language models"):
        use_focal_loss(hf.llama_token_classifier(), fused=True)


@pytest.mark.parametrize("field", ["final_logit_softcapping", "logit_scale"])
def test_fused_refuses_transformed_logits(field: str) -> None:
    model = hf.CAUSAL_LMS["llama"]()
    setattr(model.config, field, 30.0)
    with pytest.raises(ValueError, match=f"config sets {field}"):
        use_focal_loss(model, fused=True)
    with pytest.raises(ValueError, match=f"config sets {field}"):
        fused_causal_lm_loss(model, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3))


def test_fused_forward_needs_every_position() -> None:
    model, rows = use_focal_loss(hf.CAUSAL_LMS["llama"](), fused=True), hf.causal_lm_rows()
    with pytest.raises(ValueError, match=r"logits_to_keep must be 0 in training, .* got 1"):
        model(**rows, logits_to_keep=1)


def test_model_loss_ignore_index() -> None:
    model = use_focal_loss(hf.CAUSAL_LMS["llama"]())
    assert isinstance(model.loss_function, ModelFocalLoss)
    with pytest.raises(ValueError, match=r"ignore_index must be -100 .* got 0"):
        model.loss_function(torch.zeros(1, 3, 5), torch.zeros(1, 3), ignore_index=0)


def test_focal_trainer_needs_a_focal_loss(tmp_path: Path) -> None:
    model = hf.CAUSAL_LMS["llama"]()
    with pytest.raises(ValueError, match=r"^FocalTrainer\(\): expected compute_loss_func="):
        FocalTrainer(model=model, args=hf.training_arguments(tmp_path))
    assert isinstance(Trainer(model=model, args=hf.training_arguments(tmp_path)), Trainer)


def test_use_focal_loss_chunk_size() -> None:
    model = hf.CAUSAL_LMS["llama"]()
    with pytest.raises(ValueError, match=r"^use_focal_loss\(\): chunk_size must be"):
        use_focal_loss(model, fused=True, chunk_size=0)
