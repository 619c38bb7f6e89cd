"""torch.compile(fullgraph=True) over every loss, with dynamic=True and with settings that change.

A traced number cannot be branched on: the argument checks must not stop the trace, and the
compiled losses must give the eager values and gradients. The "eager" backend keeps these tests
fast: what is checked is Dynamo's trace of focalkit's Python; "aot_eager" adds AOTAutograd's
trace of the backward for one loss.
"""

from __future__ import annotations

import pytest
import torch

import focalkit

_generator = torch.Generator().manual_seed(0)
X = torch.randn(6, 4, generator=_generator, dtype=torch.float64)
INDEX = torch.tensor([0, 3, 2, 1, -100, 3])
PROBS = torch.rand(6, 4, generator=_generator, dtype=torch.float64)
HEAD = torch.randn(4, 4, generator=_generator, dtype=torch.float64)

# Each loss as a function of (logits, gamma, alpha, label_smoothing); the sigmoid and binary
# losses read label_smoothing as a soft-label mix, so that every number changes between calls.
LOSSES = {
    "softmax": lambda x, g, a, s: focalkit.softmax_focal_loss(
        x, INDEX, label_smoothing=s, gamma=g, alpha=a
    ),
    "softmax-probabilities": lambda x, g, a, s: focalkit.softmax_focal_loss(
        x, PROBS, label_smoothing=s, gamma=g, alpha=a
    ),
    "nll": lambda x, g, a, s: focalkit.nll_focal_loss(x.log_softmax(1), INDEX, gamma=g, alpha=a),
    "sigmoid": lambda x, g, a, s: focalkit.sigmoid_focal_loss(x, PROBS * (1 - s), gamma=g, alpha=a),
    "binary": lambda x, g, a, s: focalkit.binary_focal_loss(
        x.sigmoid(), PROBS * (1 - s), gamma=g, alpha=a
    ),
    "fused": lambda x, g, a, s: focalkit.linear_softmax_focal_loss(
        x, HEAD, INDEX, label_smoothing=s, gamma=g, alpha=a
    ),
}
SETTINGS = [(2.0, 0.25, 0.0), (0.5, 0.75, 0.1), (3.0, 1.0, 0.2)]


def _value_and_grad(loss_fn, *settings):
    x = X.clone().requires_grad_()
    value = loss_fn(x, *settings)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


@pytest.mark.parametrize("dynamic", [True, None], ids=["dynamic", "default"])
@pytest.mark.parametrize("name", LOSSES)
def test_compiled_loss_follows_changing_settings(name, dynamic):
    # dynamic=True traces gamma, alpha and label_smoothing as symbols from the first call; the
    # default makes them symbols when a second call changes them.
    torch._dynamo.reset()
    compiled = torch.compile(LOSSES[name], fullgraph=True, dynamic=dynamic, backend="eager")
    for settings in SETTINGS:
        value, grad = _value_and_grad(compiled, *settings)
        expected_value, expected_grad = _value_and_grad(LOSSES[name], *settings)
        torch.testing.assert_close(value, expected_value)
        torch.testing.assert_close(grad, expected_grad)


MODULES = {
    "FocalLoss": (focalkit.FocalLoss(), lambda m, x, t, y: m(x, t)),
    "NLLFocalLoss": (focalkit.NLLFocalLoss(), lambda m, x, t, y: m(x.log_softmax(1), t)),
    "SigmoidFocalLoss": (focalkit.SigmoidFocalLoss(), lambda m, x, t, y: m(x, y)),
    "BinaryFocalLoss": (focalkit.BinaryFocalLoss(), lambda m, x, t, y: m(x.sigmoid(), y)),
    "LinearFocalLoss": (focalkit.LinearFocalLoss(), lambda m, x, t, y: m(x, HEAD, t)),
}


@pytest.mark.parametrize("name", MODULES)
def test_modules_at_their_defaults_compile_with_dynamic_shapes(name):
    module, call = MODULES[name]
    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, dynamic=True, backend="eager")
    for rows in (6, 4):  # a second batch size reuses the dynamic graph
        inputs = (X[:rows], INDEX[:rows], PROBS[:rows])
        torch.testing.assert_close(compiled(module, *inputs), call(module, *inputs))


def test_aot_eager_traces_the_backward_with_symbolic_gamma():
    torch._dynamo.reset()
    loss_fn = LOSSES["softmax"]
    compiled = torch.compile(loss_fn, fullgraph=True, dynamic=True, backend="aot_eager")
    for settings in SETTINGS[:2]:
        value, grad = _value_and_grad(compiled, *settings)
        expected_value, expected_grad = _value_and_grad(loss_fn, *settings)
        torch.testing.assert_close(value, expected_value)
        torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ((-1.0, 0.25, 0.0), r"softmax_focal_loss\(\): gamma must be >= 0"),
        ((2.0, -0.5, 0.0), r"softmax_focal_loss\(\): alpha must be >= 0"),
        ((2.0, 0.25, 1.5), r"softmax_focal_loss\(\): label_smoothing must be in \[0, 1\]"),
    ],
)
def test_compiled_checks_still_refuse_a_traced_number_out_of_range(settings, message):
    torch._dynamo.reset()
    compiled = torch.compile(LOSSES["softmax"], fullgraph=True, dynamic=True, backend="eager")
    compiled(X, *SETTINGS[0])
    with pytest.raises(RuntimeError, match=message):
        compiled(X, *settings)
