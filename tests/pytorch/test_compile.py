"""torch.compile(fullgraph=True) over every loss, with dynamic=True and with settings that change.

A traced number cannot be branched on: the argument checks must not stop the trace, and the
compiled losses must give the eager values and gradients. The "eager" backend keeps these tests
fast: what is checked is Dynamo's trace of focalkit's Python; "aot_eager" adds AOTAutograd's
trace of the backward for one loss.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch._dynamo.utils import counters

import focalkit
from focalkit.torch import _kernels

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


# ---------------------------------------------------------------- the kernels as operators
#
# Under torch.compile the softmax and fused kernels are custom operators: the compiled graph
# calls them whole. Each compiled function below computes several losses, each of its own copy
# of the input, so that one compilation checks every option: the values and every gradient
# against eager mode, no graph break, and the operator (not the traced definition) in the graph.
# "aot_eager" traces the backward through AOTAutograd, which reads the operators' fake
# implementations and their registered backward; test_kernels.py compiles with inductor.

_g = torch.Generator().manual_seed(3)
X3 = torch.randn(5, 4, 3, generator=_g, dtype=torch.float64) * 3  # (N, C, d)
INDEX3 = torch.randint(0, 4, (5, 3), generator=_g)
INDEX3[1, 2] = -100
PROBS3 = torch.rand(5, 4, 3, generator=_g, dtype=torch.float64).softmax(1)
WEIGHT = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
ALPHA = torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=torch.float64)
GAMMA3 = torch.rand(5, 3, generator=_g, dtype=torch.float64) * 3

SOFTMAX_OPTIONS = {
    "2-D indices": lambda x: focalkit.softmax_focal_loss(x[..., 0], INDEX3[:, 0]),
    "N-D weight alpha ignore": lambda x: focalkit.softmax_focal_loss(
        x, INDEX3, WEIGHT, alpha=ALPHA, reduction="sum"
    ),
    "N-D none gamma 0.5": lambda x: focalkit.softmax_focal_loss(
        x, INDEX3, reduction="none", gamma=0.5, alpha=0.25
    ),
    "smoothing": lambda x: focalkit.softmax_focal_loss(
        x, INDEX3, WEIGHT, label_smoothing=0.2, gamma=3.0, alpha=0.5
    ),
    "smoothing gamma 0.5": lambda x: focalkit.softmax_focal_loss(
        x, INDEX3, label_smoothing=0.1, gamma=0.5, reduction="none"
    ),
    "probabilities": lambda x: focalkit.softmax_focal_loss(x, PROBS3, alpha=ALPHA, gamma=1.0),
    "probabilities smoothing none": lambda x: focalkit.softmax_focal_loss(
        x, PROBS3, label_smoothing=0.1, reduction="none"
    ),
    "tensor gamma": lambda x: focalkit.softmax_focal_loss(x, INDEX3, gamma=GAMMA3),
    "nll": lambda x: focalkit.nll_focal_loss(x.log_softmax(1), INDEX3, WEIGHT, gamma=0.5),
    "sigmoid": lambda x: focalkit.sigmoid_focal_loss(
        x, PROBS3.round(), WEIGHT[:, None], pos_weight=2.0, gamma=0.5
    ),
    "sigmoid none": lambda x: focalkit.sigmoid_focal_loss(x, PROBS3, reduction="none"),
}

HIDDEN = torch.randn(11, 6, generator=_g, dtype=torch.float64)
CLASSIFIER = torch.randn(7, 6, generator=_g, dtype=torch.float64)
BIAS = torch.randn(7, generator=_g, dtype=torch.float64)
TOKENS = torch.randint(0, 7, (11,), generator=_g)
TOKENS[4] = -100
W7 = torch.rand(7, generator=_g, dtype=torch.float64) + 0.5

FUSED_OPTIONS = {
    "mean": dict(chunk_size=4),
    "sum alpha weight": dict(reduction="sum", weight=W7, alpha=0.3, chunk_size=3),
    "none smoothing": dict(reduction="none", label_smoothing=0.1, gamma=0.5, chunk_size=5),
    "mean smoothing class alpha": dict(label_smoothing=0.2, alpha=W7 / 2, gamma=3.0),
}


def _graph_recorder():
    """A backend that keeps the forward and backward graphs AOTAutograd makes."""
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def keep(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module

    return aot_autograd(fw_compiler=keep, bw_compiler=keep), graphs


def _targets(graphs):
    return {str(node.target) for graph in graphs for node in graph.graph.nodes}


def _values_and_grads(fn, leaves_list, cotangent_seed=0):
    """Values and the gradient of every leaf, from one backward of a weighted sum."""
    leaves = [leaf.clone().requires_grad_() for leaf in leaves_list]
    outputs = fn(leaves)
    generator = torch.Generator().manual_seed(cotangent_seed)
    total = sum(
        (out * (torch.rand(out.shape, generator=generator, dtype=out.dtype) + 0.5)).sum()
        for out in outputs
    )
    grads = torch.autograd.grad(total, leaves)
    return [out.detach() for out in outputs], grads


def _check_parity(fn, leaves, graphs_expected_op):
    torch._dynamo.reset()
    counters.clear()
    backend, graphs = _graph_recorder()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    values, grads = _values_and_grads(compiled, leaves)
    expected_values, expected_grads = _values_and_grads(fn, leaves)
    assert not counters["graph_break"], dict(counters["graph_break"])
    everything = zip(values + list(grads), expected_values + list(expected_grads), strict=True)
    for got, expected in everything:
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert graphs_expected_op in _targets(graphs)
    return graphs


def test_compiled_softmax_nll_and_sigmoid_losses_give_eager_values_and_gradients():
    names = list(SOFTMAX_OPTIONS)

    def losses(xs):
        return [SOFTMAX_OPTIONS[name](x) for name, x in zip(names, xs, strict=True)]

    _check_parity(losses, [X3] * len(names), "focalkit.softmax_focal.default")


def test_compiled_fused_loss_gives_eager_values_and_every_gradient():
    names = list(FUSED_OPTIONS)

    def losses(leaves):
        return [
            focalkit.linear_softmax_focal_loss(
                leaves[3 * i], leaves[3 * i + 1], TOKENS, bias=leaves[3 * i + 2], **options
            )
            for i, options in enumerate(FUSED_OPTIONS[name] for name in names)
        ]

    leaves = [HIDDEN, CLASSIFIER, BIAS] * len(names)
    graphs = _check_parity(losses, leaves, "focalkit.linear_softmax_focal.default")
    # 'none' computes its gradients in backward: the operator is in the backward graph too.
    assert "focalkit.linear_softmax_focal.default" in _targets(graphs[1:])


def test_compiled_fused_graph_holds_no_logits():
    # Every tensor in the forward and backward graphs, read from their fake values: none is as
    # large as the (N, C) logits; the largest are the classifier and its gradient.
    n, d, c = 64, 8, 512
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, d, generator=generator, requires_grad=True)
    classifier = torch.randn(c, d, generator=generator, requires_grad=True)
    bias = torch.randn(c, generator=generator, requires_grad=True)
    target = torch.randint(0, c, (n,), generator=generator)
    torch._dynamo.reset()
    backend, graphs = _graph_recorder()

    @torch.compile(fullgraph=True, backend=backend)
    def loss(hidden, classifier, bias):
        return focalkit.linear_softmax_focal_loss(
            hidden, classifier, target, bias=bias, label_smoothing=0.1
        )

    loss(hidden, classifier, bias).backward()
    assert len(graphs) == 2  # forward and backward
    sizes = [
        node.meta["val"].numel()
        for graph in graphs
        for node in graph.graph.nodes
        if isinstance(node.meta.get("val"), torch.Tensor)
    ]
    assert max(sizes) == max(n * d, c * d) < n * c
    assert classifier.grad is not None
    assert torch.isfinite(classifier.grad).all()


def test_compiled_softmax_graph_holds_only_the_gradient_beside_the_input():
    # The definition would trace several (N, C) temporaries (log p, log(1 - p), their products);
    # the operator returns one, the gradient, and backward scales it.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 50, generator=generator, requires_grad=True)
    target = torch.randint(0, 50, (32,), generator=generator)
    torch._dynamo.reset()
    backend, graphs = _graph_recorder()
    compiled = torch.compile(
        lambda x: focalkit.softmax_focal_loss(x, target, label_smoothing=0.1),
        fullgraph=True,
        backend=backend,
    )
    compiled(x).backward()
    forward = graphs[0].graph
    input_sized = [
        node.target
        for node in forward.nodes
        if node.op != "placeholder"
        and node.target is not torch.ops.aten.detach.default  # a view, kept for backward
        and isinstance(node.meta.get("val"), torch.Tensor)
        and node.meta["val"].numel() == x.numel()
    ]
    assert input_sized == [operator.getitem]  # the operator's gradient, and nothing else


_COMPILED_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, torch, focalkit
    torch.set_num_threads(1)
    n, d, c, chunk = (int(value) for value in sys.argv[1:5])
    hidden = torch.randn(n, d, requires_grad=True)
    classifier = torch.randn(c, d, requires_grad=True)
    target = torch.randint(0, c, (n,))
    loss = torch.compile(
        lambda h, w: focalkit.linear_softmax_focal_loss(h, w, target, chunk_size=chunk),
        fullgraph=True,
        backend="aot_eager",
    )
    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    def step():
        hidden.grad = classifier.grad = None
        loss(hidden, classifier).backward()
    step()  # compiles, and pays the one-time initialisation
    hidden.grad = classifier.grad = None
    open("/proc/self/clear_refs", "w").write("5")
    before = rss("VmRSS")
    step()
    print(json.dumps({"growth": rss("VmHWM") - before}))
    """
)


def test_compiled_fused_peak_memory_stays_far_below_the_logits():
    # Peak resident growth of one compiled forward+backward in a fresh process: the gradients
    # (twice: aot_eager scales them out of place), two chunks of logits, and a margin; the
    # logits alone would be four times that bound's share of them.
    n, d, c, chunk = 8192, 32, 4096, 512
    logits_bytes = n * c * 4
    gradients_bytes = (n * d + c * d) * 4
    bound = 2 * gradients_bytes + 2 * chunk * c * 4 + 16 * 2**20
    result = subprocess.run(
        [sys.executable, "-c", _COMPILED_MEMORY_PROBE, str(n), str(d), str(c), str(chunk)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
    )
    growth = json.loads(result.stdout)["growth"]
    assert growth < bound < logits_bytes / 3, (growth, bound, logits_bytes)


# ---------------------------------------------------------------- torch.func over compiled losses

_FUNC_X = torch.randn(3, 6, 4, generator=_g, dtype=torch.float64)
_FUNC_T = torch.randint(0, 4, (6,), generator=_g)


def _func_loss(x):
    return focalkit.softmax_focal_loss(x, _FUNC_T, label_smoothing=0.1)


def _reference_grad(fn, x):
    leaf = x.clone().requires_grad_()
    return torch.autograd.grad(fn(leaf), leaf)[0]


@pytest.mark.parametrize(
    "transform",
    ["compile(grad)", "compile(vmap(grad))", "compile(jacrev)", "vmap(grad(compile))"],
)
def test_torch_func_transforms_of_compiled_losses(transform):
    # The operators step aside under a transform, for the definitions it differentiates.
    from torch.func import grad, jacrev, vmap

    torch._dynamo.reset()
    build = {
        "compile(grad)": lambda: torch.compile(grad(_func_loss), fullgraph=True, backend="eager"),
        "compile(vmap(grad))": lambda: torch.compile(
            vmap(grad(_func_loss)), fullgraph=True, backend="eager"
        ),
        "compile(jacrev)": lambda: torch.compile(
            jacrev(_func_loss), fullgraph=True, backend="eager"
        ),
        "vmap(grad(compile))": lambda: vmap(grad(torch.compile(_func_loss, backend="eager"))),
    }[transform]
    fn = build()
    expected = torch.stack([_reference_grad(_func_loss, x) for x in _FUNC_X])
    got = fn(_FUNC_X) if "vmap" in transform else torch.stack([fn(x) for x in _FUNC_X])
    torch.testing.assert_close(got, expected)


def test_compiled_fused_loss_under_func_grad():
    from torch.func import grad

    def fused(classifier):
        return focalkit.linear_softmax_focal_loss(HIDDEN, classifier, TOKENS, chunk_size=4)

    torch._dynamo.reset()
    got = torch.compile(grad(fused), fullgraph=True, backend="eager")(CLASSIFIER)
    torch.testing.assert_close(got, _reference_grad(fused, CLASSIFIER))


# ---------------------------------------------------------------- second derivatives


def test_double_backward_through_a_compiled_kernel_says_so_and_eager_still_differentiates_twice():
    x = X3.clone().requires_grad_()
    torch._dynamo.reset()
    compiled = torch.compile(_loss3, fullgraph=True, backend="eager")
    with pytest.raises(RuntimeError, match="double backward through a loss compiled"):
        torch.autograd.grad(compiled(x), x, create_graph=True)
    # Outside torch.compile the kernel recomputes its definition for double backward.
    (grad,) = torch.autograd.grad(_loss3(x), x, create_graph=True)
    (hessian_row,) = torch.autograd.grad(grad[0, 0, 0], x)
    with _kernels.use_kernels(False):
        (expected_grad,) = torch.autograd.grad(_loss3(x), x, create_graph=True)
        (expected_row,) = torch.autograd.grad(expected_grad[0, 0, 0], x)
    torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(hessian_row, expected_row)


def _loss3(x):
    return focalkit.softmax_focal_loss(x, INDEX3, WEIGHT, label_smoothing=0.1, gamma=0.5)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_a_retained_compiled_graph_gives_the_same_gradient_twice(backend):
    # The operators' backward consumes what forward computed; a second backward recomputes it
    # ("eager"), or never consumed it (AOTAutograd's functional graph).
    x = X3.clone().requires_grad_()
    (expected,) = torch.autograd.grad(_loss3(x), x)
    torch._dynamo.reset()
    value = torch.compile(_loss3, fullgraph=True, backend=backend)(x)
    (first,) = torch.autograd.grad(value, x, retain_graph=True)
    (second,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
