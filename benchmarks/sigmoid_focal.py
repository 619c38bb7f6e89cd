"""sigmoid_focal_loss forward+backward against BCE-with-logits and torchvision's formula.

OMP_WAIT_POLICY=PASSIVE python benchmarks/sigmoid_focal.py [--only NAME] [--rounds 7]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from harness import Case, fwd_bwd, main

import focalkit


def torchvision_formula(
    inputs: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """torchvision.ops.sigmoid_focal_loss as published (it does not import beside this torch)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * loss).mean()


_compiled_focalkit = torch.compile(focalkit.sigmoid_focal_loss, fullgraph=True)
_compiled_torchvision = torch.compile(torchvision_formula, fullgraph=True)


def _case(name: str, shape: tuple[int, int], positives: float, compiled: bool = False) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = (torch.randn(shape, generator=generator) * 2 - 3).requires_grad_()
        target = (torch.rand(shape, generator=generator) < positives).float()
        return {"input": input, "target": target}

    if compiled:
        steps = {
            "focalkit compiled": fwd_bwd(lambda x, i: _compiled_focalkit(x, i["target"])),
            "torchvision compiled": fwd_bwd(lambda x, i: _compiled_torchvision(x, i["target"])),
        }
        return Case(name, make, steps, [("focalkit compiled", "torchvision compiled")])
    steps = {
        "focalkit": fwd_bwd(lambda x, i: focalkit.sigmoid_focal_loss(x, i["target"])),
        "torchvision": fwd_bwd(lambda x, i: torchvision_formula(x, i["target"])),
        "bce_with_logits": fwd_bwd(lambda x, i: F.binary_cross_entropy_with_logits(x, i["target"])),
    }
    return Case(name, make, steps, [("focalkit", "torchvision"), ("focalkit", "bce_with_logits")])


CASES = [
    _case("dense detection (200000, 80)", (200000, 80), 0.01),
    _case("multi-label (4096, 1000)", (4096, 1000), 0.05),
    _case("compiled (4096, 1000)", (4096, 1000), 0.05, compiled=True),
]

if __name__ == "__main__":
    main(__file__, CASES)
