"""The modules: thin wrappers, buffers that follow the module, settings checked when built."""

from __future__ import annotations

import inspect

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


def test_repr_shows_the_whole_configuration():
    assert repr(focalkit.FocalLoss(gamma=1.5, alpha=[0.25, 0.75])) == (
        "FocalLoss(gamma=1.5, alpha=[0.25, 0.75], reduction='mean', weight=None, "
        "ignore_index=-100, label_smoothing=0.0)"
    )
    assert repr(focalkit.SigmoidFocalLoss(reduction="sum", pos_weight=[2.0])) == (
        "SigmoidFocalLoss(gamma=2.0, alpha=0.25, reduction='sum', weight=None, pos_weight=[2.0])"
    )
    assert repr(focalkit.LinearFocalLoss([1.0, 2.0], 0, label_smoothing=0.1, chunk_size=8)) == (
        "LinearFocalLoss(gamma=2.0, alpha=None, reduction='mean', weight=[1.0, 2.0], "
        "ignore_index=0, label_smoothing=0.1, chunk_size=8)"
    )
    assert repr(focalkit.NLLFocalLoss(alpha=[0.1] * 10, ignore_index=3)) == (
        "NLLFocalLoss(gamma=2.0, alpha=tensor of shape (10,), reduction='mean', weight=None, "
        "ignore_index=3)"
    )
    assert repr(focalkit.BinaryFocalLoss(weight=[1.0, 3.0], alpha=None)) == (
        "BinaryFocalLoss(gamma=2.0, alpha=None, reduction='mean', weight=[1.0, 3.0])"
    )


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


_LOG_PROBS = X.log_softmax(1)
# Each module beside its function, called on data the settings fit.
MODULE_AND_FUNCTION = {
    focalkit.FocalLoss: lambda **kw: focalkit.softmax_focal_loss(X, T, **kw),
    focalkit.NLLFocalLoss: lambda **kw: focalkit.nll_focal_loss(_LOG_PROBS, T, **kw),
    focalkit.SigmoidFocalLoss: lambda **kw: focalkit.sigmoid_focal_loss(X, Y, **kw),
    focalkit.BinaryFocalLoss: lambda **kw: focalkit.binary_focal_loss(X.sigmoid(), Y, **kw),
    focalkit.LinearFocalLoss: lambda **kw: focalkit.linear_softmax_focal_loss(
        X, torch.eye(4), T, **kw
    ),
}
BAD_SETTINGS = {
    "reduction": ["avg", None],
    "gamma": [-1.0, float("nan"), float("inf"), "2", True, None],
    "alpha": [-0.5, 1.5, False, True, [1.0, None, 2.0, 1.0], [0.5, -0.5, 0.5, 0.5], "balanced"],
    "weight": ["heavy", [1.0, None, 1.0, 1.0], [True] * 4, True],
    "pos_weight": ["heavy", [1.0, None, 1.0, 1.0], False],
    "ignore_index": [1.5, True, 2**63, None],
    "label_smoothing": [1.5, -0.1, True, "0.1", None],
    "chunk_size": [0, -3, True, 2.5, "8"],
}
CASES = [
    (module, name, bad)
    for module in MODULE_AND_FUNCTION
    for name, values in BAD_SETTINGS.items()
    if name in inspect.signature(module).parameters
    for bad in values
    if not (name == "alpha" and bad == 1.5 and module.__name__.startswith(("Focal", "NLL", "Lin")))
]


@pytest.mark.parametrize(("module", "name", "bad"), CASES, ids=repr)
def test_every_setting_is_checked_at_construction_as_its_function_checks_it(module, name, bad):
    function_name = {
        "FocalLoss": "softmax_focal_loss",
        "NLLFocalLoss": "nll_focal_loss",
        "SigmoidFocalLoss": "sigmoid_focal_loss",
        "BinaryFocalLoss": "binary_focal_loss",
        "LinearFocalLoss": "linear_softmax_focal_loss",
    }[module.__name__]
    with pytest.raises((TypeError, ValueError)) as from_function:
        MODULE_AND_FUNCTION[module](**{name: bad})
    with pytest.raises(type(from_function.value)) as from_module:
        module(**{name: bad})  # at construction, not at the first forward
    expected = str(from_function.value).replace(f"{function_name}()", f"{module.__name__}()")
    assert str(from_module.value) == expected


@pytest.mark.parametrize(
    "module", [focalkit.FocalLoss, focalkit.NLLFocalLoss, focalkit.LinearFocalLoss]
)
def test_per_class_settings_must_be_vectors_at_construction(module):
    with pytest.raises(ValueError, match=r"weight must be a 1-D sequence with one value per class"):
        module(weight=[[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"alpha must be a 1-D sequence with one value per class"):
        module(alpha=[[1.0, 2.0]])
    module(alpha=torch.tensor(0.5))  # a 0-d alpha scales every term, as in the function


def test_linear_focal_loss_chunk_size_true_fails_when_built():
    with pytest.raises(TypeError, match=r"^LinearFocalLoss\(\): chunk_size must be a positive int"):
        focalkit.LinearFocalLoss(chunk_size=True)
