"""Bad input gets a clear error naming the argument and what was expected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import focalkit

X = torch.randn(4, 3)
T = torch.tensor([0, 1, 2, 1])
Y = torch.tensor([[1.0, 0.0, 1.0]] * 4)
P = torch.full((4, 3), 0.5)

SOFTMAX_ERRORS = [
    (
        {"target": torch.tensor([0, 1, 2])},
        ValueError,
        r"expected target of shape \(4,\) for input of shape \(4, 3\), got \(3,\)",
    ),
    (
        {"target": torch.tensor([0, 1, 3, 1])},
        ValueError,
        r"target class indices must be in \[0, 3\) or equal ignore_index=-100",
    ),
    (
        {"target": torch.tensor([0, -1, 2, 1])},
        ValueError,
        r"target class indices must be in \[0, 3\)",
    ),
    (
        {"target": torch.tensor([[0.5, 0.6, -0.1]] * 4)},
        ValueError,
        r"target \(class probabilities\) values must be in \[0, 1\]",
    ),
    (
        {"target": torch.zeros(4, 2)},
        ValueError,
        r"expected target of shape \(4, 3\) \(class probabilities\) or \(4,\)",
    ),
    ({"target": torch.ones(4, dtype=torch.bool)}, TypeError, r"target must hold class indices"),
    (
        {"target": torch.tensor([0.0, 1.0, 2.0, 1.0])},
        TypeError,
        r"target of shape \(4,\) holds class indices but has floating dtype torch.float32; "
        r"pass an integer tensor \(target.long\(\)\)",
    ),
    ({"gamma": -0.5}, ValueError, r"gamma must be >= 0, got -0.5"),
    ({"gamma": "2"}, TypeError, r"gamma must be a real number >= 0, got '2'"),
    ({"gamma": float("nan")}, ValueError, r"gamma must be >= 0, got nan"),
    (
        {"alpha": [0.5, 0.5]},
        ValueError,
        r"alpha must have one value per class \(3 classes\), got 2 values",
    ),
    (
        {"alpha": [[0.5, 0.5, 0.5]]},
        ValueError,
        r"alpha must be a 1-D sequence with one value per class",
    ),
    ({"alpha": -0.1}, ValueError, r"alpha must be >= 0, got -0.1"),
    ({"alpha": [0.5, -0.5, 0.5]}, ValueError, r"alpha values must be >= 0"),
    ({"alpha": "balanced"}, TypeError, r"alpha must be a tensor or a sequence of numbers"),
    (
        {"weight": [1.0, 2.0]},
        ValueError,
        r"weight must have one value per class \(3 classes\), got 2 values",
    ),
    ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\], got 1.5"),
    ({"label_smoothing": -0.1}, ValueError, r"label_smoothing must be in \[0, 1\], got -0.1"),
    (
        {"reduction": "avg"},
        ValueError,
        r"reduction must be one of 'none', 'mean', 'sum', got 'avg'",
    ),
    ({"ignore_index": 1.5}, TypeError, r"ignore_index must be an int, got 1.5"),
    (
        {"ignore_index": 2**63},
        ValueError,
        r"ignore_index must fit in int64, got 9223372036854775808",
    ),
    (
        {"input": torch.ones(4, 3, dtype=torch.long)},
        TypeError,
        r"input must be a floating-point tensor, got dtype torch.int64",
    ),
    ({"input": [[1.0, 2.0, 3.0]]}, TypeError, r"input must be a torch.Tensor, got list"),
    (
        {"input": torch.tensor(1.0)},
        ValueError,
        r"input must have shape \(C\), \(N, C\) or \(N, C, d1, ...\), got \(\)",
    ),
]


@pytest.mark.parametrize(("change", "error", "message"), SOFTMAX_ERRORS)
def test_softmax_focal_loss_errors(change, error, message):
    kwargs = {"input": X, "target": T, **change}
    with pytest.raises(error, match=r"^softmax_focal_loss\(\): " + message):
        focalkit.softmax_focal_loss(**kwargs)


NLL_ERRORS = [
    (
        {"input": torch.full((4, 3), 0.1)},
        ValueError,
        r"input holds log-probabilities, which must be <= 0",
    ),
    (
        {"target": torch.tensor([0, 1, 5, 1])},
        ValueError,
        r"target class indices must be in \[0, 3\)",
    ),
    (
        {"target": torch.zeros(4, 3)},
        TypeError,
        r"target must hold class indices \(an integer tensor\), got dtype torch.float32",
    ),
    ({"gamma": -1}, ValueError, r"gamma must be >= 0"),
    (
        {"alpha": [1.0] * 4},
        ValueError,
        r"alpha must have one value per class \(3 classes\), got 4 values",
    ),
    ({"reduction": None}, ValueError, r"reduction must be one of"),
]


@pytest.mark.parametrize(("change", "error", "message"), NLL_ERRORS)
def test_nll_focal_loss_errors(change, error, message):
    kwargs = {"input": X.log_softmax(1), "target": T, **change}
    with pytest.raises(error, match=r"^nll_focal_loss\(\): " + message):
        focalkit.nll_focal_loss(**kwargs)


ELEMENTWISE_ERRORS = [
    (
        {"target": torch.ones(4, 2)},
        ValueError,
        r"expected target of shape \(4, 3\) for input of shape \(4, 3\), got \(4, 2\)",
    ),
    ({"target": torch.full((4, 3), 1.5)}, ValueError, r"target values must be in \[0, 1\]"),
    ({"target": torch.full((4, 3), -1)}, ValueError, r"target values must be in \[0, 1\]"),
    ({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\], got 1.5"),
    ({"alpha": -0.25}, ValueError, r"alpha must be in \[0, 1\], got -0.25"),
    ({"alpha": torch.tensor([0.5, 2.0, 0.5])}, ValueError, r"alpha values must be in \[0, 1\]"),
    (
        {"alpha": torch.tensor([0.5, 0.5])},
        ValueError,
        r"alpha of shape \(2,\) does not broadcast to input of shape \(4, 3\)",
    ),
    (
        {"weight": torch.ones(5)},
        ValueError,
        r"weight of shape \(5,\) does not broadcast to input of shape \(4, 3\)",
    ),
    (
        {"weight": torch.ones(2, 4, 3)},
        ValueError,
        r"weight of shape \(2, 4, 3\) does not broadcast",
    ),
    ({"gamma": -2.0}, ValueError, r"gamma must be >= 0, got -2.0"),
    ({"reduction": "batchmean"}, ValueError, r"reduction must be one of 'none', 'mean', 'sum'"),
    (
        {"input": torch.ones(4, 3, dtype=torch.int32)},
        TypeError,
        r"input must be a floating-point tensor",
    ),
]


@pytest.mark.parametrize(("change", "error", "message"), ELEMENTWISE_ERRORS)
def test_sigmoid_focal_loss_errors(change, error, message):
    kwargs = {"input": X, "target": Y, **change}
    with pytest.raises(error, match=r"^sigmoid_focal_loss\(\): " + message):
        focalkit.sigmoid_focal_loss(**kwargs)


def test_sigmoid_pos_weight_must_broadcast():
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\) does not broadcast"):
        focalkit.sigmoid_focal_loss(X, Y, pos_weight=torch.ones(4))


@pytest.mark.parametrize(("change", "error", "message"), ELEMENTWISE_ERRORS[:-1])
def test_binary_focal_loss_errors(change, error, message):
    kwargs = {"input": P, "target": Y, **change}
    with pytest.raises(error, match=r"^binary_focal_loss\(\): " + message):
        focalkit.binary_focal_loss(**kwargs)


@pytest.mark.parametrize("bad", [1.01, -0.01])
def test_binary_focal_loss_rejects_probabilities_outside_unit_interval(bad):
    probs = P.clone()
    probs[2, 1] = bad
    with pytest.raises(ValueError, match=r"input \(probabilities\) values must be in \[0, 1\]"):
        focalkit.binary_focal_loss(probs, Y)


def test_binary_focal_loss_rejects_differentiable_target():
    with pytest.raises(ValueError, match="target is not differentiated"):
        focalkit.binary_focal_loss(P, Y.clone().requires_grad_())


def test_data_checks_can_be_switched_off():
    bad_target = torch.tensor([0, 1, 2, 1])
    bad_target[0] = 7
    with focalkit.validate_inputs(False):
        assert not focalkit.inputs_validated()
        # Argument checks still run:
        with pytest.raises(ValueError, match="gamma must be >= 0"):
            focalkit.softmax_focal_loss(X, T, gamma=-1.0)
        # Data checks do not (and the out-of-range probability goes through unchecked):
        focalkit.binary_focal_loss(torch.full((4, 3), 1.5), Y)
    assert focalkit.inputs_validated()
    with pytest.raises(ValueError, match="target class indices"):
        focalkit.softmax_focal_loss(X, bad_target)


def test_validate_inputs_as_a_call_holds_until_changed():
    try:
        focalkit.validate_inputs(False)
        assert not focalkit.inputs_validated()
    finally:
        focalkit.validate_inputs(True)
    assert focalkit.inputs_validated()
    with pytest.raises(TypeError, match="enabled must be a bool"):
        focalkit.validate_inputs("no")


def test_validate_inputs_object_can_be_reused_and_nested():
    off, on = focalkit.validate_inputs(False), focalkit.validate_inputs(True)
    assert focalkit.inputs_validated()  # the last call wins
    for _ in range(3):  # every ``with`` turns the checks off and restores what it found
        with off:
            assert not focalkit.inputs_validated()
            with on:
                assert focalkit.inputs_validated()
                with off:
                    assert not focalkit.inputs_validated()
                assert focalkit.inputs_validated()
            with off:  # the same object, nested in itself
                assert not focalkit.inputs_validated()
            assert not focalkit.inputs_validated()
        assert focalkit.inputs_validated()
    bad_probabilities = torch.full((4, 3), 1.5)
    with off:
        focalkit.binary_focal_loss(bad_probabilities, Y)  # the data check is off
    with pytest.raises(ValueError, match=r"input \(probabilities\) values must be in \[0, 1\]"):
        focalkit.binary_focal_loss(bad_probabilities, Y)


def test_validate_inputs_first_with_restores_the_setting_before_the_call():
    try:
        focalkit.validate_inputs(False)
        off_again = focalkit.validate_inputs(False)
        with off_again:
            assert not focalkit.inputs_validated()
        assert not focalkit.inputs_validated()  # it was off before the call too
    finally:
        focalkit.validate_inputs(True)


@pytest.mark.parametrize("name", ["nll_focal_loss", "linear_softmax_focal_loss"])
def test_float_class_indices_are_told_to_be_integers(name):
    target = torch.tensor([0.0, 1.0, 2.0, 1.0], dtype=torch.float64)
    message = (
        rf"^{name}\(\): target of shape \(4,\) holds class indices but has floating dtype "
        r"torch.float64; pass an integer tensor \(target.long\(\)\)"
    )
    calls = {
        "nll_focal_loss": lambda: focalkit.nll_focal_loss(X.log_softmax(1), target),
        "linear_softmax_focal_loss": lambda: focalkit.linear_softmax_focal_loss(
            X, torch.eye(3), target
        ),
    }
    with pytest.raises(TypeError, match=message):
        calls[name]()


def _alpha_calls(alpha):
    """Every loss and module given ``alpha``, with the name its errors start with."""
    log_probs, probs, head = X.log_softmax(1), X.sigmoid(), torch.eye(3)
    return {
        "softmax_focal_loss": lambda: focalkit.softmax_focal_loss(X, T, alpha=alpha),
        "nll_focal_loss": lambda: focalkit.nll_focal_loss(log_probs, T, alpha=alpha),
        "sigmoid_focal_loss": lambda: focalkit.sigmoid_focal_loss(X, Y, alpha=alpha),
        "binary_focal_loss": lambda: focalkit.binary_focal_loss(probs, Y, alpha=alpha),
        "linear_softmax_focal_loss": lambda: focalkit.linear_softmax_focal_loss(
            X, head, T, alpha=alpha
        ),
        "FocalLoss": lambda: focalkit.FocalLoss(alpha=alpha),
        "NLLFocalLoss": lambda: focalkit.NLLFocalLoss(alpha=alpha),
        "SigmoidFocalLoss": lambda: focalkit.SigmoidFocalLoss(alpha=alpha),
        "BinaryFocalLoss": lambda: focalkit.BinaryFocalLoss(alpha=alpha),
        "LinearFocalLoss": lambda: focalkit.LinearFocalLoss(alpha=alpha),
    }


@pytest.mark.parametrize(
    ("alpha", "message"),
    [
        (False, r"alpha must be a real number (>= 0|in \[0, 1\]), got False"),
        (True, r"alpha must be a real number (>= 0|in \[0, 1\]), got True"),
        (np.bool_(True), r"alpha must be a real number (>= 0|in \[0, 1\]), got (np\.)?True_?"),
        (
            [1.0, None, 0.5],
            r"alpha must be a tensor or a sequence of numbers, got \[1.0, None, 0.5\]",
        ),
        (
            [True, 0.5, 0.5],
            r"alpha must be a tensor or a sequence of numbers, got \[True, 0.5, 0.5\]",
        ),
        ([[0.5], [None]], r"alpha must be a tensor or a sequence of numbers"),
        (np.array([True, False, True]), r"alpha must be a tensor or a sequence of numbers"),
        (torch.tensor([True, False, True]), r"alpha must hold real numbers, got dtype torch.bool"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("where", list(_alpha_calls(None)))
def test_booleans_and_none_are_not_alpha_values(where, alpha, message):
    # alpha=False once meant 0 (a zero loss), True meant 1 and None inside a sequence NaN.
    with pytest.raises(TypeError, match=rf"^{where}\(\): {message}"):
        _alpha_calls(alpha)[where]()


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("weight", lambda w: focalkit.softmax_focal_loss(X, T, w)),
        ("weight", lambda w: focalkit.nll_focal_loss(X.log_softmax(1), T, w)),
        ("weight", lambda w: focalkit.sigmoid_focal_loss(X, Y, w)),
        ("pos_weight", lambda w: focalkit.sigmoid_focal_loss(X, Y, pos_weight=w)),
        ("weight", lambda w: focalkit.binary_focal_loss(X.sigmoid(), Y, w)),
        ("weight", lambda w: focalkit.linear_softmax_focal_loss(X, torch.eye(3), T, weight=w)),
        ("weight", lambda w: focalkit.FocalLoss(w)),
        ("weight", lambda w: focalkit.NLLFocalLoss(w)),
        ("weight", lambda w: focalkit.SigmoidFocalLoss(w)),
        ("pos_weight", lambda w: focalkit.SigmoidFocalLoss(pos_weight=w)),
        ("weight", lambda w: focalkit.BinaryFocalLoss(w)),
        ("weight", lambda w: focalkit.LinearFocalLoss(w)),
    ],
)
@pytest.mark.parametrize("bad", [[1.0, None, 2.0], [True, False, True], "heavy", True])
def test_booleans_and_none_are_not_weight_values(name, call, bad):
    with pytest.raises(TypeError, match=rf"\(\): {name} must be a tensor or a sequence of numbers"):
        call(bad)


def test_fused_loss_takes_bias_and_weight_by_keyword_only():
    # A 4th positional argument once became the bias, even when meant as class weights.
    hidden, head, weight = torch.randn(4, 5), torch.randn(3, 5), torch.tensor([1.0, 2.0, 0.5])
    with pytest.raises(TypeError, match="positional argument"):
        focalkit.linear_softmax_focal_loss(hidden, head, T, weight)
    with pytest.raises(TypeError, match="positional argument"):
        focalkit.linear_softmax_focal_loss(hidden, head, T, None, weight)
    torch.testing.assert_close(
        focalkit.linear_softmax_focal_loss(hidden, head, T, weight=weight, gamma=0.0),
        torch.nn.functional.cross_entropy(hidden @ head.T, T, weight),
    )
