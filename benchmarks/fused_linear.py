"""linear_softmax_focal_loss against F.linear followed by F.cross_entropy / softmax_focal_loss.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/fused_linear.py [--only NAME] [--rounds 3]

Memory is the peak resident growth of one forward+backward; the returned gradients (of the
hidden states and of the classifier) are part of it, and are also printed on their own.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from harness import Case, main

import focalkit


def linear_step(loss_fn: Any) -> Any:
    """A step: the loss of (hidden, classifier, target), then backward to both."""

    def step(inputs: dict[str, Any]) -> None:
        hidden, classifier = inputs["input"], inputs["classifier"]
        hidden.grad = classifier.grad = None
        loss_fn(hidden, classifier, inputs["target"]).backward()

    return step


def _case(name: str, n: int, d: int, c: int, **options: Any) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        hidden = (torch.randn(n, d, generator=generator) / d**0.5).requires_grad_()
        classifier = torch.randn(c, d, generator=generator).requires_grad_()
        target = torch.randint(0, c, (n,), generator=generator)
        return {"input": hidden, "classifier": classifier, "target": target}

    def fused(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        loss = focalkit.linear_softmax_focal_loss(h, w, t, **options)
        return loss.sum() if options.get("reduction") == "none" else loss

    def linear_ce(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ce_options = {k: v for k, v in options.items() if k != "gamma"}
        loss = F.cross_entropy(F.linear(h, w), t, **ce_options)
        return loss.sum() if options.get("reduction") == "none" else loss

    def linear_focal(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        loss = focalkit.softmax_focal_loss(F.linear(h, w), t, **options)
        return loss.sum() if options.get("reduction") == "none" else loss

    steps = {
        "fused": linear_step(fused),
        "linear+cross_entropy": linear_step(linear_ce),
        "linear+softmax_focal_loss": linear_step(linear_focal),
    }
    pairs = [("fused", "linear+cross_entropy"), ("fused", "linear+softmax_focal_loss")]
    return Case(f"{name} (N={n}, D={d}, C={c})", make, steps, pairs)


CASES = [
    _case("mean", 4096, 1024, 32000),
    _case("mean", 2048, 2048, 128256),
    _case("reduction='none'", 4096, 1024, 32000, reduction="none"),
    _case("label_smoothing=0.1", 4096, 1024, 32000, label_smoothing=0.1),
]

if __name__ == "__main__":
    main(__file__, CASES, rounds=3, repeats=1)  # one step of the 128k case takes seconds
