"""The fused linear + focal loss equals the unfused composition, values and all three gradients."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import focalkit
from focalkit.torch import _kernels

N, D, C = 11, 6, 9


def _inputs(dtype=torch.float64, seed=0, with_bias=True):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=generator, dtype=dtype).requires_grad_()
    classifier = torch.randn(C, D, generator=generator, dtype=dtype).requires_grad_()
    bias = torch.randn(C, generator=generator, dtype=dtype).requires_grad_() if with_bias else None
    target = torch.randint(0, C, (N,), generator=generator)
    target[::4] = 3  # ignored when ignore_index=3
    return hidden, classifier, bias, target


def _value_and_grads(fn, hidden, classifier, bias):
    leaves = [t for t in (hidden, classifier, bias) if t is not None]
    out = fn(*leaves) if bias is not None else fn(*leaves, None)
    cotangent = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    return out.detach(), torch.autograd.grad(out, leaves, cotangent)


OPTIONS = {
    "plain": {},
    "weight": {"weight": torch.linspace(0.5, 2.0, C, dtype=torch.float64)},
    "ignore": {"ignore_index": 3},
    "smoothing": {"label_smoothing": 0.1},
    "alpha": {"alpha": torch.linspace(0.1, 1.0, C, dtype=torch.float64)},
    "scalar alpha": {"alpha": 0.25},
    "all": {
        "weight": torch.linspace(0.5, 2.0, C, dtype=torch.float64),
        "ignore_index": 3,
        "label_smoothing": 0.2,
        "alpha": torch.linspace(0.1, 1.0, C, dtype=torch.float64),
    },
}


@pytest.mark.parametrize(
    ("option", "reduction", "chunk_size", "with_bias"),
    list(itertools.product(OPTIONS, ["mean", "sum", "none"], [1, 4, 11, 64], [True, False])),
)
def test_fused_equals_unfused(option, reduction, chunk_size, with_bias):
    hidden, classifier, bias, target = _inputs(with_bias=with_bias)
    kwargs = dict(OPTIONS[option], reduction=reduction, gamma=1.5)
    fused = _value_and_grads(
        lambda h, w, b: focalkit.linear_softmax_focal_loss(
            h, w, target, bias=b, chunk_size=chunk_size, **kwargs
        ),
        hidden,
        classifier,
        bias,
    )
    unfused = _value_and_grads(
        lambda h, w, b: focalkit.softmax_focal_loss(F.linear(h, w, b), target, **kwargs),
        hidden,
        classifier,
        bias,
    )
    torch.testing.assert_close(fused[0], unfused[0], rtol=1e-10, atol=1e-12)
    for got, expected in zip(fused[1], unfused[1], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("option", ["plain", "weight", "ignore", "smoothing"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_gamma0_equals_linear_cross_entropy(option, reduction):
    hidden, classifier, bias, target = _inputs()
    kwargs = {k: v for k, v in OPTIONS[option].items() if k != "alpha"}
    fused = _value_and_grads(
        lambda h, w, b: focalkit.linear_softmax_focal_loss(
            h, w, target, bias=b, gamma=0.0, chunk_size=4, reduction=reduction, **kwargs
        ),
        hidden,
        classifier,
        bias,
    )
    reference = _value_and_grads(
        lambda h, w, b: F.cross_entropy(F.linear(h, w, b), target, reduction=reduction, **kwargs),
        hidden,
        classifier,
        bias,
    )
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-10, atol=1e-12)
    for got, expected in zip(fused[1], reference[1], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_fused_accepts_leading_dimensions_like_a_language_model():
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 5, D, generator=generator, dtype=torch.float64, requires_grad=True)
    classifier = torch.randn(C, D, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, C, (2, 5), generator=generator)
    for reduction in ("mean", "none"):
        fused = focalkit.linear_softmax_focal_loss(hidden, classifier, target, reduction=reduction)
        unfused = focalkit.softmax_focal_loss(
            F.linear(hidden, classifier).flatten(0, 1), target.flatten(), reduction=reduction
        )
        torch.testing.assert_close(fused, unfused.reshape(fused.shape))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_fused_half_precision(dtype):
    hidden, classifier, bias, target = _inputs(dtype=torch.float32)
    low = [t.detach().to(dtype).requires_grad_() for t in (hidden, classifier, bias)]
    fused = focalkit.linear_softmax_focal_loss(low[0], low[1], target, bias=low[2], chunk_size=3)
    fused.backward()
    assert fused.dtype == dtype
    assert all(t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in low)
    copies = [t.detach().requires_grad_() for t in low]
    unfused = focalkit.softmax_focal_loss(F.linear(*copies), target)
    unfused.backward()
    torch.testing.assert_close(fused, unfused, rtol=2e-2, atol=2e-3)
    for got, expected in zip(low, copies, strict=True):
        torch.testing.assert_close(got.grad, expected.grad, rtol=2e-2, atol=2e-3)


def test_fused_double_backward_and_retained_graph():
    hidden, classifier, bias, target = _inputs()
    with torch.no_grad():
        hidden.mul_(0.3)
    assert torch.autograd.gradcheck(
        lambda h, w, b: focalkit.linear_softmax_focal_loss(h, w, target, bias=b, chunk_size=4),
        (hidden, classifier, bias),
    )
    assert torch.autograd.gradgradcheck(
        lambda h, w, b: focalkit.linear_softmax_focal_loss(h, w, target, bias=b, chunk_size=4),
        (hidden, classifier, bias),
    )


def test_fused_errors():
    hidden, classifier, bias, target = _inputs()
    with pytest.raises(
        ValueError, match=r"expected input of shape \(\*, 6\) for classifier of shape \(9, 6\)"
    ):
        focalkit.linear_softmax_focal_loss(hidden[:, :4], classifier, target)
    with pytest.raises(ValueError, match=r"bias must have shape \(9,\)"):
        focalkit.linear_softmax_focal_loss(hidden, classifier, target, bias=bias[:3])
    with pytest.raises(ValueError, match=r"expected target of shape \(11,\)"):
        focalkit.linear_softmax_focal_loss(hidden, classifier, target[:5])
    with pytest.raises(ValueError, match=r"target class indices must be in \[0, 9\)"):
        focalkit.linear_softmax_focal_loss(hidden, classifier, target + 20)
    with pytest.raises(ValueError, match=r"chunk_size must be a positive int"):
        focalkit.linear_softmax_focal_loss(hidden, classifier, target, chunk_size=0)
    with pytest.raises(TypeError, match=r"gamma must be a real number >= 0, got a tensor"):
        focalkit.linear_softmax_focal_loss(hidden, classifier, target, gamma=torch.ones(11))


def test_linear_focal_loss_module():
    hidden, classifier, bias, target = _inputs()
    module = focalkit.LinearFocalLoss(ignore_index=3, gamma=1.0, chunk_size=5)
    assert "gamma=1.0" in repr(module)
    torch.testing.assert_close(
        module(hidden, classifier, target, bias),
        focalkit.softmax_focal_loss(
            F.linear(hidden, classifier, bias), target, ignore_index=3, gamma=1.0
        ),
    )


def test_kernels_off_gives_the_same_numbers():
    hidden, classifier, bias, target = _inputs()
    on = _value_and_grads(
        lambda h, w, b: focalkit.linear_softmax_focal_loss(
            h, w, target, bias=b, label_smoothing=0.1
        ),
        hidden,
        classifier,
        bias,
    )
    with _kernels.use_kernels(False):
        off = _value_and_grads(
            lambda h, w, b: focalkit.linear_softmax_focal_loss(
                h, w, target, bias=b, label_smoothing=0.1
            ),
            hidden,
            classifier,
            bias,
        )
    torch.testing.assert_close(on[0], off[0])
    for got, expected in zip(on[1], off[1], strict=True):
        torch.testing.assert_close(got, expected)


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, torch, focalkit
    torch.set_num_threads(1)
    n, d, c, fused = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    hidden = torch.randn(n, d, requires_grad=True)
    classifier = torch.randn(c, d, requires_grad=True)
    target = torch.randint(0, c, (n,))
    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    def step():
        hidden.grad = classifier.grad = None
        if fused:
            loss = focalkit.linear_softmax_focal_loss(hidden, classifier, target)
        else:
            logits = torch.nn.functional.linear(hidden, classifier)
            loss = focalkit.softmax_focal_loss(logits, target)
        loss.backward()
    step()  # one unmeasured run: one-time initialisation
    hidden.grad = classifier.grad = None
    open("/proc/self/clear_refs", "w").write("5")
    before = rss("VmRSS")
    step()
    print(json.dumps({"growth": rss("VmHWM") - before}))
    """
)


def test_fused_peak_memory_stays_below_half_of_the_logits():
    # Peak resident growth in a fresh process, measured as the benchmark measures it.
    n, d, c = 16384, 64, 8192
    logits_bytes = n * c * 4
    gradients_bytes = (n * d + c * d) * 4

    def growth(fused):
        result = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(n), str(d), str(c), "1" if fused else "0"],
            capture_output=True,
            text=True,
            check=True,
            # Large buffers as their own mappings, so freed ones leave the resident set.
            env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},
        )
        return json.loads(result.stdout)["growth"]

    fused, unfused = growth(True), growth(False)
    assert fused - gradients_bytes < logits_bytes / 2, (fused, unfused, logits_bytes)
    assert unfused > 2 * logits_bytes  # the probe does measure: the unfused path holds the logits


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("kernels", [True, False])
def test_fused_with_no_features_gives_the_loss_of_the_bias(reduction, with_bias, kernels):
    # D = 0: the logits are the bias (or zeros), as F.linear makes them.
    generator = torch.Generator().manual_seed(4)
    hidden = torch.empty(2, 3, 0, dtype=torch.float64, requires_grad=True)
    classifier = torch.empty(C, 0, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(C, generator=generator, dtype=torch.float64) if with_bias else None
    leaves = [hidden, classifier] + ([bias.requires_grad_()] if bias is not None else [])
    target = torch.tensor([[0, 4, -100], [8, 1, 1]])
    for gamma in (0.0, 2.0):
        with _kernels.use_kernels(kernels):
            got = focalkit.linear_softmax_focal_loss(
                hidden, classifier, target, bias=bias, reduction=reduction, gamma=gamma
            )
        logits = F.linear(hidden, classifier, bias).movedim(-1, 1)
        if gamma == 0:
            expected = F.cross_entropy(logits, target, reduction=reduction)
        else:
            expected = focalkit.softmax_focal_loss(logits, target, reduction=reduction)
        torch.testing.assert_close(got, expected)
        grads = torch.autograd.grad(got.sum(), leaves)
        expected_grads = torch.autograd.grad(expected.sum(), leaves)
        for value, want in zip(grads, expected_grads, strict=True):
            assert value.shape == want.shape
            torch.testing.assert_close(value, want)


def _largest_allocation(fn):
    with torch.profiler.profile(profile_memory=True) as profile:
        fn()
    return max(event.cpu_memory_usage for event in profile.events())


def test_fused_under_no_grad_computes_no_gradient():
    # Inputs that require grad, but no graph is recorded: the (C, D) gradient of the classifier
    # is never allocated, and the value is the one with gradients.
    generator = torch.Generator().manual_seed(5)
    hidden = torch.randn(64, 256, generator=generator, requires_grad=True)
    classifier = torch.randn(1000, 256, generator=generator, requires_grad=True)
    bias = torch.randn(1000, generator=generator, requires_grad=True)
    target = torch.randint(0, 1000, (64,), generator=generator)

    def loss():
        return focalkit.linear_softmax_focal_loss(
            hidden, classifier, target, bias=bias, chunk_size=16
        )

    with torch.no_grad():
        value = loss()
        largest = _largest_allocation(loss)
    assert largest < classifier.numel() * 4 // 4  # a chunk of logits (16 x 1000), no (C, D)
    assert _largest_allocation(loss) >= classifier.numel() * 4  # with grad mode on, there it is
    torch.testing.assert_close(value, loss().detach())
    assert not value.requires_grad
