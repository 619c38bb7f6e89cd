"""The lean kernels against the autograd definitions they replace, and torch.compile parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import focalkit
from focalkit.torch import _kernels
from focalkit.torch._kernels import sigmoid, softmax


def _grads(fn, input, cotangent_seed=0):
    input = input.detach().clone().requires_grad_()
    out = fn(input)
    generator = torch.Generator().manual_seed(cotangent_seed)
    cotangent = torch.rand(out.shape, generator=generator, dtype=out.dtype) + 0.5
    (grad,) = torch.autograd.grad(out, input, cotangent)
    return out.detach(), grad


def _both(fn, input):
    lean = _grads(fn, input)
    with _kernels.use_kernels(False):
        definition = _grads(fn, input)
    return lean, definition


def _softmax_cases():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, 3, generator=generator, dtype=torch.float64) * 4
    t = torch.randint(0, 4, (5, 3), generator=generator)
    t[0, 0] = -100
    probs = torch.rand(5, 4, 3, generator=generator, dtype=torch.float64).softmax(1)
    gamma = torch.rand(5, 3, generator=generator, dtype=torch.float64) * 3
    return x, [
        ("index", lambda z, r: focalkit.softmax_focal_loss(z, t, reduction=r, gamma=0.5)),
        (
            "index alpha weight",
            lambda z, r: focalkit.softmax_focal_loss(
                z, t, [1.0, 2.0, 0.5, 1.0], reduction=r, alpha=[0.1, 0.2, 0.3, 0.4]
            ),
        ),
        ("index gamma 1", lambda z, r: focalkit.softmax_focal_loss(z, t, reduction=r, gamma=1.0)),
        (
            "index gamma 3 weight",
            lambda z, r: focalkit.softmax_focal_loss(
                z, t, [1.0, 0.0, 0.5, 1.0], reduction=r, gamma=3.0, alpha=0.25
            ),
        ),
        (
            "smoothing",
            lambda z, r: focalkit.softmax_focal_loss(
                z, t, [1.0, 2.0, 0.5, 1.0], label_smoothing=0.2, reduction=r, alpha=0.5
            ),
        ),
        (
            "probabilities",
            lambda z, r: focalkit.softmax_focal_loss(
                z, probs, reduction=r, label_smoothing=0.1, alpha=[0.1, 0.2, 0.3, 0.4]
            ),
        ),
        (
            "smoothing gamma 1",
            lambda z, r: focalkit.softmax_focal_loss(
                z, t, [1.0, 2.0, 0.5, 1.0], label_smoothing=0.3, reduction=r, gamma=1.0, alpha=0.5
            ),
        ),
        (
            "smoothing gamma 3.5 class alpha",
            lambda z, r: focalkit.softmax_focal_loss(
                z, t, label_smoothing=0.1, reduction=r, gamma=3.5, alpha=[0.1, 0.2, 0.3, 0.4]
            ),
        ),
        (
            "probabilities gamma 1",
            lambda z, r: focalkit.softmax_focal_loss(z, probs, reduction=r, gamma=1.0),
        ),
        (
            "probabilities gamma 1.5 weight",
            lambda z, r: focalkit.softmax_focal_loss(
                z, probs, [1.0, 2.0, 0.5, 1.0], reduction=r, gamma=1.5
            ),
        ),
        ("tensor gamma", lambda z, r: focalkit.softmax_focal_loss(z, t, reduction=r, gamma=gamma)),
        ("gamma 0", lambda z, r: focalkit.softmax_focal_loss(z, probs, reduction=r, gamma=0.0)),
    ]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", range(len(_softmax_cases()[1])))
def test_softmax_kernel_matches_definition(case, reduction):
    x, cases = _softmax_cases()
    _, fn = cases[case]
    (lean_value, lean_grad), (value, grad) = _both(lambda z: fn(z, reduction), x)
    torch.testing.assert_close(lean_value, value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lean_grad, grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_kernel_matches_definition(reduction, soft):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 2, generator=generator, dtype=torch.float64) * 5
    y = torch.rand(6, 5, 2, generator=generator, dtype=torch.float64)
    y = y if soft else y.round()
    pos_weight = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    alpha = torch.tensor([0.1, 0.5, 0.9, 0.25, 0.75], dtype=torch.float64).reshape(5, 1)
    for kwargs in (
        {"gamma": 2.0},
        {"gamma": 2.0, "alpha": alpha, "pos_weight": pos_weight, "weight": y + 0.5},
        {"gamma": 1.0, "alpha": None},
        {"gamma": 1.0, "alpha": None, "weight": y + 0.5},
        {"gamma": 3.0, "alpha": 0.75, "pos_weight": pos_weight},
        {"gamma": 0.5, "alpha": alpha, "pos_weight": pos_weight, "weight": y + 0.5},
        {"gamma": torch.rand(6, 5, 2, generator=generator, dtype=torch.float64), "alpha": None},
    ):
        (lean_value, lean_grad), (value, grad) = _both(
            lambda z, kwargs=kwargs: focalkit.sigmoid_focal_loss(
                z, y, reduction=reduction, **kwargs
            ),
            x,
        )
        torch.testing.assert_close(lean_value, value, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(lean_grad, grad, rtol=1e-9, atol=1e-12)


def test_second_backward_through_a_retained_graph_gives_the_same_gradient():
    x, cases = _softmax_cases()
    for _, fn in cases:
        z = x.clone().requires_grad_()
        loss = fn(z, "mean")
        (first,) = torch.autograd.grad(loss, z, retain_graph=True)
        (second,) = torch.autograd.grad(loss, z)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    z = x.clone().requires_grad_()
    loss = focalkit.sigmoid_focal_loss(z, torch.sigmoid(x))
    (first,) = torch.autograd.grad(loss, z, retain_graph=True)
    (second,) = torch.autograd.grad(loss, z)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_kernels_keep_no_input_sized_tensor_besides_the_gradient():
    # What autograd holds after forward: the input (the caller's) and one gradient buffer.
    x = torch.randn(64, 1000, requires_grad=True)
    t = torch.randint(0, 1000, (64,))
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = focalkit.softmax_focal_loss(x, t)
    assert all(s.data_ptr() == x.data_ptr() or s.numel() < x.numel() for s in saved)
    loss.backward()
    with _kernels.use_kernels(False):
        z = x.detach().clone().requires_grad_()
        focalkit.softmax_focal_loss(z, t).backward()
    torch.testing.assert_close(x.grad, z.grad)


def test_no_grad_forward_allocates_no_gradient():
    x = torch.randn(32, 10)
    t = torch.randint(0, 10, (32,))
    with torch.no_grad():
        value = focalkit.softmax_focal_loss(x.requires_grad_(), t)
    with _kernels.use_kernels(False):
        torch.testing.assert_close(value, focalkit.softmax_focal_loss(x.detach(), t))


class _Model(torch.nn.Module):
    def __init__(self, loss):
        super().__init__()
        self.layer = torch.nn.Linear(8, 5)
        self.loss = loss

    def forward(self, x, target):
        return self.loss(self.layer(x), target)


COMPILED = {
    "softmax": (
        lambda z, t: focalkit.softmax_focal_loss(
            z, t, label_smoothing=0.1, alpha=[0.1, 0.2, 0.3, 0.2, 0.2]
        ),
        "index",
    ),
    "softmax-probabilities": (lambda z, t: focalkit.softmax_focal_loss(z, t, gamma=0.5), "probs"),
    "nll": (lambda z, t: focalkit.nll_focal_loss(F.log_softmax(z, 1), t, gamma=0.5), "index"),
    "sigmoid": (lambda z, t: focalkit.sigmoid_focal_loss(z, t, pos_weight=[2.0] * 5), "probs"),
    "binary": (lambda z, t: focalkit.binary_focal_loss(torch.sigmoid(z), t), "probs"),
    "fused": (None, "index"),
}


@pytest.mark.parametrize("name", COMPILED)
def test_torch_compile_fullgraph_matches_eager(name):
    torch.manual_seed(0)
    loss_fn, kind = COMPILED[name]
    x = torch.randn(16, 8)
    target = torch.randint(0, 5, (16,)) if kind == "index" else torch.rand(16, 5)
    if name == "fused":
        layer = torch.nn.Linear(8, 5)

        def model_fn(x, target):
            return focalkit.linear_softmax_focal_loss(x, layer.weight, target, bias=layer.bias)

        parameters = list(layer.parameters())
    else:
        model = _Model(loss_fn)
        model_fn, parameters = model, list(model.parameters())
    eager = model_fn(x, target)
    eager_grads = torch.autograd.grad(eager, parameters)
    compiled = torch.compile(model_fn, fullgraph=True)
    value = compiled(x, target)
    grads = torch.autograd.grad(value, parameters)
    torch.testing.assert_close(value, eager, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_masked_logits_give_the_gradients_cross_entropy_gives(gamma):
    # A vocabulary mask (-inf) on an ignored element's placeholder class and on a kept target:
    # like F.cross_entropy, the kernels give 0 for the ignored row and, for the masked target,
    # an infinite loss with the finite gradient p - onehot (f'(-inf) = -1 at every gamma).
    x = torch.tensor([[-torch.inf, 1.0, 2.0], [0.5, -torch.inf, 0.0], [1.0, 2.0, -torch.inf]])
    t = torch.tensor([-100, 0, 2])
    z = x.clone().requires_grad_()
    loss = focalkit.softmax_focal_loss(z, t, reduction="none", gamma=gamma)
    loss.sum().backward()
    c = x.clone().requires_grad_()
    ce = F.cross_entropy(c, t, reduction="none")
    ce.sum().backward()
    assert loss[0].item() == 0.0
    assert loss[2].item() == ce[2].item() == torch.inf
    torch.testing.assert_close(z.grad[0], torch.zeros(3))
    torch.testing.assert_close(z.grad[2], c.grad[2])
    with _kernels.use_kernels(False):  # the rows with a finite loss against the definition
        w = x[:2].clone().requires_grad_()
        expected = focalkit.softmax_focal_loss(w, t[:2], reduction="none", gamma=gamma)
        expected.sum().backward()
    torch.testing.assert_close(loss[:2], expected.detach())
    torch.testing.assert_close(z.grad[:2], w.grad)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_ignored_rows_of_nan_logits_give_what_cross_entropy_gives(
    label_smoothing, weighted, reduction
):
    # Row 1 is ignored and all NaN: it contributes 0, as in F.cross_entropy and the definition
    # (a coefficient of 0 alone would leave 0 * NaN there). Rows 3 and 4 are kept with NaN
    # logits: NaN, row 4 also where its target's class weight 0 makes its coefficient 0
    # (F.cross_entropy's 0 * NaN).
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x[1] = x[3] = x[4] = torch.nan
    t = torch.tensor([0, -100, 2, 1, 3])
    w = torch.tensor([1.0, 0.5, 2.0, 0.0], dtype=torch.float64) if weighted else None
    rows = slice(None) if reduction == "none" else slice(0, 3)  # 'sum': the finite rows
    x, t = x[rows], t[rows]
    options = {"reduction": reduction, "label_smoothing": label_smoothing}
    kernel = focalkit.softmax_focal_loss(x, t, w, gamma=0.0, **options)
    eye = torch.eye(4, dtype=torch.float64)
    fused = focalkit.linear_softmax_focal_loss(x, eye, t, weight=w, gamma=0.0, **options)
    with _kernels.use_kernels(False):
        definition = focalkit.softmax_focal_loss(x, t, w, gamma=0.0, **options)
    ce = F.cross_entropy(x, t, w, **options)
    if reduction == "none":
        assert ce[1].item() == 0.0
        assert ce[3:].isnan().all()
    else:
        assert ce.isfinite()
    for loss in (kernel, fused, definition):
        torch.testing.assert_close(loss, ce, equal_nan=True)
        if reduction == "none":
            assert not loss[1].signbit()


@pytest.fixture
def small_chunks(monkeypatch):
    # Chunks of 12 elements: several per input, the last one shorter.
    for module, name in (
        (softmax, "ONE_HOT_CHUNK"),
        (softmax, "DISTRIBUTION_CHUNK"),
        (sigmoid, "SIGMOID_CHUNK"),
        (softmax, "SCRATCH_CHUNK"),
    ):
        monkeypatch.setattr(module, name, 12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", range(len(_softmax_cases()[1])))
def test_softmax_kernel_in_several_chunks_matches_definition(small_chunks, case, reduction):
    x, cases = _softmax_cases()  # (5, 4, 3): a row is 12 elements, so one row per chunk
    _, fn = cases[case]
    (lean_value, lean_grad), (value, grad) = _both(lambda z: fn(z, reduction), x)
    torch.testing.assert_close(lean_value, value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(lean_grad, grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_in_several_chunks_matches_float32(small_chunks, dtype):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(7, 3, generator=generator) * 2  # 4 rows per chunk: chunks of 4 and 3
    t = torch.randint(0, 3, (7,), generator=generator)
    probs = torch.rand(7, 3, generator=generator).softmax(1)
    y = torch.rand(7, 3, generator=generator).round()
    for fn in (
        lambda z: focalkit.softmax_focal_loss(z, t, reduction="none"),
        lambda z: focalkit.softmax_focal_loss(z, t, label_smoothing=0.1),
        lambda z: focalkit.softmax_focal_loss(z, probs.to(z.dtype), gamma=1.5),
        lambda z: focalkit.sigmoid_focal_loss(z, y.to(z.dtype), reduction="sum"),
    ):
        half_value, half_grad = _grads(fn, x.to(dtype))
        value, grad = _grads(fn, x.to(dtype).float())  # the same numbers, in float32
        torch.testing.assert_close(half_value.float(), value, rtol=1e-2, atol=1e-3)
        torch.testing.assert_close(half_grad.float(), grad, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_kernel_in_several_chunks_matches_definition(small_chunks, reduction):
    test_sigmoid_kernel_matches_definition(reduction, soft=True)  # (6, 5, 2): 10 per row


def test_float16_gradients_take_a_loss_scale_above_float16s_range():
    # GradScaler starts at 2^16, above float16's largest number (65504): the incoming gradient
    # must not be cast to float16 before it scales the kernel's gradient.
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(8, 5, generator=generator).half()
    t = torch.randint(0, 5, (8,), generator=generator)
    y = torch.rand(8, 5, generator=generator).round().half()
    for fn in (
        lambda z: focalkit.softmax_focal_loss(z, t),
        lambda z: focalkit.softmax_focal_loss(z, t, reduction="sum", gamma=0.5),
        lambda z: focalkit.sigmoid_focal_loss(z, y, reduction="sum"),
    ):
        grads = []
        for kernels in (True, False):
            z = x.clone().requires_grad_()
            with _kernels.use_kernels(kernels), torch.autocast("cpu", dtype=torch.float16):
                loss = fn(z)
            (loss * 65536.0).backward()
            grads.append(z.grad)
        assert torch.isfinite(grads[1]).all()
        torch.testing.assert_close(grads[0], grads[1], rtol=2e-3, atol=1e-2)


def test_ignored_elements_get_plus_zero_and_zero_weight_targets_a_non_finite_gradient():
    x = torch.tensor([[0.3, -1.2, 0.8], [1.0, 0.2, -0.5]], requires_grad=True)
    loss = focalkit.softmax_focal_loss(x, torch.tensor([0, -100]), reduction="none", gamma=0.5)
    assert not loss[1].signbit()
    # Every kept target of weight 0: the 'mean' divides by 0, and PyTorch's gradient is not
    # finite either (where all targets are ignored instead, both give 0).
    t, w = torch.tensor([0, 1]), torch.tensor([0.0, 0.0, 1.0])
    value = focalkit.softmax_focal_loss(x, t, w, label_smoothing=0.2)
    (grad,) = torch.autograd.grad(value, x)
    (expected,) = torch.autograd.grad(F.cross_entropy(x, t, w, label_smoothing=0.2), x)
    assert not torch.isfinite(expected).any()
    assert not torch.isfinite(grad).any()


def test_binary_focal_loss_keeps_no_alpha_tensor_and_differentiates_weight_and_alpha():
    generator = torch.Generator().manual_seed(8)
    probs = torch.rand(16, 4, generator=generator, dtype=torch.float64).requires_grad_()
    target = torch.rand(16, 4, generator=generator, dtype=torch.float64).round()
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        focalkit.binary_focal_loss(probs, target, alpha=0.25)
    assert {t.data_ptr() for t in saved if t.numel() == probs.numel()} <= {
        probs.data_ptr(),
        target.data_ptr(),
    }
    # weight and alpha that require grad are differentiated, against the formula in float64.
    weight = torch.rand(4, generator=generator, dtype=torch.float64).requires_grad_()
    alpha = torch.rand(4, generator=generator, dtype=torch.float64).requires_grad_()
    loss = focalkit.binary_focal_loss(probs, target, weight, gamma=1.5, alpha=alpha)
    p_t = probs * target + (1 - probs) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    expected = (-alpha_t * weight * (1 - p_t) ** 1.5 * p_t.log()).mean()
    torch.testing.assert_close(loss, expected)
    for got, want in zip(
        torch.autograd.grad(loss, (probs, weight, alpha)),
        torch.autograd.grad(expected, (probs, weight, alpha)),
        strict=True,
    ):
        torch.testing.assert_close(got, want)
