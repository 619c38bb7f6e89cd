"""The losses under torch.compile(fullgraph=True): against their eager selves, and the fused loss
against PyTorch's chunked F.linear_cross_entropy and against compiled F.linear + F.cross_entropy.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/compiled.py [--only NAME] [--rounds 3]

Each compiled step is compiled once per process (inductor, the default backend), on its first
call: the harness's warm-up call, which is not timed (and, for memory, not measured). Memory is
the peak resident growth of one forward+backward in a fresh process; the returned gradients are
part of it. ``F.linear_cross_entropy`` with ``LinearCrossEntropyOptions()`` runs eager: it does
not compile with ``fullgraph=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from fused_linear import linear_step
from harness import Case, fwd_bwd, main

import focalkit

Loss = Callable[..., torch.Tensor]


def _compiled(loss: Loss) -> Loss:
    return torch.compile(loss, fullgraph=True)


def _fused_case(n: int, d: int, c: int, gamma: float) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        hidden = (torch.randn(n, d, generator=generator) / d**0.5).requires_grad_()
        classifier = torch.randn(c, d, generator=generator).requires_grad_()
        target = torch.randint(0, c, (n,), generator=generator)
        return {"input": hidden, "classifier": classifier, "target": target}

    def fused(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return focalkit.linear_softmax_focal_loss(h, w, t, gamma=gamma)

    def chunked(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        options = torch.nn.LinearCrossEntropyOptions()
        return F.linear_cross_entropy(h, w, t, options=options)

    def linear_cross_entropy(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(F.linear(h, w), t)

    steps = {
        "fused": linear_step(fused),
        "fused compiled": linear_step(_compiled(fused)),
        "linear_cross_entropy chunked": linear_step(chunked),
        "linear+cross_entropy compiled": linear_step(_compiled(linear_cross_entropy)),
    }
    pairs = [
        ("fused", "linear_cross_entropy chunked"),
        ("fused compiled", "linear_cross_entropy chunked"),
        ("fused compiled", "linear+cross_entropy compiled"),
        ("fused compiled", "fused"),
    ]
    return Case(f"fused gamma={gamma:g} (N={n}, D={d}, C={c})", make, steps, pairs)


def _loss_case(name: str, shape: tuple[int, ...], loss: Loss, kind: str) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = torch.randn(shape, generator=generator).requires_grad_()
        if kind == "index":
            target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
        else:  # sparse multi-label targets, as in detection
            target = (torch.rand(shape, generator=generator) < 0.01).float()
        return {"input": input, "target": target}

    def eager(x: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        return loss(x, inputs["target"])

    compiled = _compiled(loss)

    def compiled_step(x: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        return compiled(x, inputs["target"])

    steps = {"eager": fwd_bwd(eager), "compiled": fwd_bwd(compiled_step)}
    return Case(name, make, steps, [("compiled", "eager")])


CASES = [
    _loss_case("softmax index (8192, 1000)", (8192, 1000), focalkit.softmax_focal_loss, "index"),
    _loss_case("softmax index (2048, 32000)", (2048, 32000), focalkit.softmax_focal_loss, "index"),
    _loss_case(
        "softmax segmentation (8, 21, 128, 128)",
        (8, 21, 128, 128),
        focalkit.softmax_focal_loss,
        "index",
    ),
    _loss_case("sigmoid multi-label (4096, 1000)", (4096, 1000), focalkit.sigmoid_focal_loss, "01"),
    _loss_case("sigmoid dense (200000, 80)", (200000, 80), focalkit.sigmoid_focal_loss, "01"),
    _fused_case(4096, 1024, 32000, 0.0),
    _fused_case(4096, 1024, 32000, 2.0),
    _fused_case(2048, 2048, 128256, 0.0),
    _fused_case(2048, 2048, 128256, 2.0),
]

if __name__ == "__main__":
    main(__file__, CASES, rounds=3, repeats=1)  # one step of the 128k case takes seconds
