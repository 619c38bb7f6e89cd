"""On a GPU: the kernels (pure PyTorch, so the same code) against the definitions, on CUDA."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import focalkit
from focalkit.torch import _kernels

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_losses_match_cpu_and_definition(dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=generator) * 3
    t = torch.randint(0, 10, (64,), generator=generator)
    y = torch.rand(64, 10, generator=generator).round()
    hidden, head = (
        torch.randn(64, 16, generator=generator),
        torch.randn(10, 16, generator=generator),
    )
    cases = [
        lambda z: focalkit.softmax_focal_loss(z, t.to(z.device), label_smoothing=0.1),
        lambda z: focalkit.softmax_focal_loss(z, t.to(z.device), alpha=[0.1] * 10),
        lambda z: focalkit.softmax_focal_loss(z, torch.softmax(x, 1).to(z), gamma=3.0),
        lambda z: focalkit.sigmoid_focal_loss(z, y.to(z.device)),
        lambda z: focalkit.sigmoid_focal_loss(
            z, y.to(z.device), weight=y.to(z) + 0.5, pos_weight=torch.full((10,), 2.0).to(z)
        ),
        lambda z: (
            focalkit.linear_softmax_focal_loss(hidden.to(z), head.to(z), t.to(z.device))
            + z.sum() * 0
        ),
    ]
    for fn in cases:
        results = []
        for device, kernels in (("cpu", True), ("cuda", True), ("cuda", False)):
            z = x.to(device, dtype).requires_grad_()
            with _kernels.use_kernels(kernels):
                loss = fn(z)
                loss.backward()
            results.append((loss.detach().float().cpu(), z.grad.float().cpu()))
        tolerance = (
            {"rtol": 2e-2, "atol": 2e-3}
            if dtype == torch.bfloat16
            else {"rtol": 1e-5, "atol": 1e-6}
        )
        for value, grad in results[1:]:
            torch.testing.assert_close(value, results[0][0], **tolerance)
            torch.testing.assert_close(grad, results[0][1], **tolerance)


def test_cuda_bad_target_is_a_device_side_assertion():
    # A device-side assertion ends the CUDA context, so it runs in a process of its own.
    script = (
        "import torch, focalkit\n"
        "x = torch.randn(4, 3, device='cuda')\n"
        "focalkit.softmax_focal_loss(x, torch.tensor([0, 1, 7, 1], device='cuda'))\n"
        "torch.cuda.synchronize()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "assert" in result.stderr.lower()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_cuda_sigmoid_keeps_relative_precision_in_the_tails(gamma):
    # Confident predictions (losses of 1e-9 to 1e-30) against float64, relative to each value.
    from oracles import sigmoid_focal_reference

    magnitude = torch.logspace(-3, 1.9, 40)
    x = torch.cat([magnitude, -magnitude]).repeat(2)
    y = torch.cat([torch.ones(80), torch.zeros(80)])
    z = x.cuda().requires_grad_()
    loss = focalkit.sigmoid_focal_loss(z, y.cuda(), gamma=gamma, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    reference_leaf = x.double().requires_grad_()
    expected = sigmoid_focal_reference(reference_leaf, y.double(), gamma=gamma, reduction="none")
    (expected_grad,) = torch.autograd.grad(expected.sum(), reference_leaf)
    rtol = 64 * torch.finfo(torch.float32).eps
    for got, want in ((loss, expected), (grad, expected_grad)):
        error = (got.detach().cpu().double() - want.detach()).abs()
        assert (error <= rtol * want.detach().abs() + 1e-37).all()
