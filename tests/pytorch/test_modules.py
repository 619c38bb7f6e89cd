"""The modules: thin wrappers, buffers that follow the module, settings checked when built."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import focalkit

X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
T = torch.tensor([0, 1, 2, 3, 1, -100])
Y = (torch.rand(6, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()


def test_focal_loss_equals_its_function_and_cross_entropy_module_at_gamma0():
    weight = [1.0, 2.0, 0.5, 1.0]
    module = focalkit.FocalLoss(weight, label_smoothing=0.1, gamma=0.0)
    torch.testing.assert_close(
        module(X, T), nn.CrossEntropyLoss(torch.tensor(weight), label_smoothing=0.1)(X, T)
    )
    target = torch.tensor([0, 1, 2, 3, 1, 3])
    module = focalkit.FocalLoss(weight, ignore_index=3, reduction="sum", gamma=1.5, alpha=0.5)
    torch.testing.assert_close(
        module(X, target),
        focalkit.softmax_focal_loss(
            X, target, torch.tensor(weight), 3, "sum", gamma=1.5, alpha=0.5
        ),
    )


def test_other_modules_equal_their_functions():
    log_probs = X.log_softmax(1)
    torch.testing.assert_close(
        focalkit.NLLFocalLoss(alpha=[0.1, 0.2, 0.3, 0.4], gamma=3.0)(log_probs, T),
        focalkit.nll_focal_loss(log_probs, T, alpha=[0.1, 0.2, 0.3, 0.4], gamma=3.0),
    )
    torch.testing.assert_close(
        focalkit.SigmoidFocalLoss(pos_weight=[1.0, 2.0, 3.0, 4.0], gamma=1.0)(X, Y),
        focalkit.sigmoid_focal_loss(X, Y, pos_weight=torch.tensor([1.0, 2.0, 3.0, 4.0]), gamma=1.0),
    )
    torch.testing.assert_close(
        focalkit.BinaryFocalLoss(weight=[1.0, 2.0, 3.0, 4.0], alpha=0.6)(X.sigmoid(), Y),
        focalkit.binary_focal_loss(X.sigmoid(), Y, torch.tensor([1.0, 2.0, 3.0, 4.0]), alpha=0.6),
    )
    torch.testing.assert_close(
        focalkit.SigmoidFocalLoss(gamma=0, alpha=None)(X, Y), nn.BCEWithLogitsLoss()(X, Y)
    )
    torch.testing.assert_close(
        focalkit.BinaryFocalLoss(gamma=0, alpha=None)(X.sigmoid(), Y), nn.BCELoss()(X.sigmoid(), Y)
    )


def test_tensor_settings_are_buffers_that_follow_the_module():
    module = focalkit.FocalLoss(weight=[1.0, 2.0, 3.0, 4.0], alpha=[0.1, 0.2, 0.3, 0.4])
    assert set(module.state_dict()) == {"weight", "alpha"}
    assert module.half().weight.dtype == torch.float16
    assert module.double().alpha.dtype == torch.float64
    assert module.to("meta").weight.device.type == "meta"
    sigmoid = focalkit.SigmoidFocalLoss(weight=[1.0] * 4, pos_weight=[2.0] * 4, alpha=[0.25] * 4)
    assert set(sigmoid.state_dict()) == {"weight", "pos_weight", "alpha"}
    assert focalkit.SigmoidFocalLoss().state_dict() == {}
    assert focalkit.SigmoidFocalLoss().alpha == 0.25


def test_state_dict_round_trip():
    source = focalkit.FocalLoss(weight=[1.0, 2.0, 3.0, 4.0], alpha=[0.1, 0.2, 0.3, 0.4])
    target = focalkit.FocalLoss(weight=[0.0] * 4, alpha=[0.0] * 4)
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target(X, T), source(X, T))


def test_half_module_on_float32_input_matches_float32_module():
    weight = [1.0, 2.0, 3.0, 4.0]
    torch.testing.assert_close(
        focalkit.FocalLoss(weight).half()(X, T),
        focalkit.FocalLoss(weight)(X, T),
        rtol=1e-3,
        atol=1e-4,
    )


def test_buffer_does_not_alias_callers_tensor():
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0])
    module = focalkit.FocalLoss(weight)
    weight.mul_(10)
    assert module.weight.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_repr_shows_gamma_alpha_and_reduction():
    assert repr(focalkit.FocalLoss(gamma=1.5, alpha=[0.25, 0.75])) == (
        "FocalLoss(gamma=1.5, alpha=[0.25, 0.75], reduction='mean')"
    )
    assert repr(focalkit.SigmoidFocalLoss(reduction="sum")) == (
        "SigmoidFocalLoss(gamma=2.0, alpha=0.25, reduction='sum')"
    )
    assert "alpha=tensor of shape (10,)" in repr(focalkit.NLLFocalLoss(alpha=[0.1] * 10))
    assert "alpha=None" in repr(focalkit.BinaryFocalLoss(alpha=None))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: focalkit.FocalLoss(gamma=-1.0), r"^FocalLoss\(\): gamma must be >= 0, got -1.0"),
        (lambda: focalkit.FocalLoss(reduction="avg"), r"^FocalLoss\(\): reduction must be one of"),
        (
            lambda: focalkit.FocalLoss(label_smoothing=2.0),
            r"^FocalLoss\(\): label_smoothing must be in \[0, 1\]",
        ),
        (
            lambda: focalkit.FocalLoss(alpha=[0.5, -0.5]),
            r"^FocalLoss\(\): alpha values must be >= 0",
        ),
        (lambda: focalkit.NLLFocalLoss(alpha=-1.0), r"^NLLFocalLoss\(\): alpha must be >= 0"),
        (
            lambda: focalkit.SigmoidFocalLoss(alpha=1.5),
            r"^SigmoidFocalLoss\(\): alpha must be in \[0, 1\]",
        ),
        (
            lambda: focalkit.SigmoidFocalLoss(alpha=[0.5, 1.5]),
            r"^SigmoidFocalLoss\(\): alpha values must be in \[0, 1\]",
        ),
        (lambda: focalkit.BinaryFocalLoss(gamma=-0.1), r"^BinaryFocalLoss\(\): gamma must be >= 0"),
        (
            lambda: focalkit.BinaryFocalLoss(weight="heavy"),
            r"^BinaryFocalLoss\(\): weight must be a tensor or a sequence",
        ),
    ],
)
def test_settings_are_checked_at_construction(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_module_trains_a_model():
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    criterion = focalkit.FocalLoss(gamma=2.0)
    targets = torch.tensor([0, 1, 2, 3, 1, 2])
    first = criterion(model(X), targets).item()
    for _ in range(50):
        optimizer.zero_grad()
        criterion(model(X), targets).backward()
        optimizer.step()
    assert criterion(model(X), targets).item() < first / 2
