"""softmax_focal_loss forward+backward against F.cross_entropy and the eager focal formula.

OMP_WAIT_POLICY=PASSIVE python benchmarks/softmax_focal.py [--only NAME] [--rounds 7]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from harness import Case, fwd_bwd, main

import focalkit


def eager_focal(input: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """The formula the snippets use: log_softmax, gather, exp, pow, multiply, mean."""
    log_p = F.log_softmax(input, 1)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    return (-((1 - log_pt.exp()) ** gamma) * log_pt).mean()


def _index_case(name: str, shape: tuple[int, ...], **options: Any) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = torch.randn(shape, generator=generator).requires_grad_()
        target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
        if "ignore_index" in options:
            target[torch.rand(target.shape, generator=generator) < 0.1] = options["ignore_index"]
        extra = dict(options)
        if extra.pop("weight", False):
            extra["weight"] = torch.rand(shape[1], generator=generator) + 0.5
        return {"input": input, "target": target, "options": extra}

    steps = {
        "focalkit": fwd_bwd(
            lambda x, i: focalkit.softmax_focal_loss(x, i["target"], **i["options"])
        ),
        "cross_entropy": fwd_bwd(lambda x, i: F.cross_entropy(x, i["target"], **i["options"])),
    }
    pairs = [("focalkit", "cross_entropy")]
    if not options and len(shape) == 2:
        steps["eager_focal"] = fwd_bwd(lambda x, i: eager_focal(x, i["target"]))
        pairs.append(("focalkit", "eager_focal"))
    return Case(name, make, steps, pairs)


def _probability_case(name: str, shape: tuple[int, int]) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = torch.randn(shape, generator=generator).requires_grad_()
        target = torch.rand(shape, generator=generator).softmax(1)
        return {"input": input, "target": target}

    steps = {
        "focalkit": fwd_bwd(lambda x, i: focalkit.softmax_focal_loss(x, i["target"])),
        "cross_entropy": fwd_bwd(lambda x, i: F.cross_entropy(x, i["target"])),
    }
    return Case(name, make, steps, [("focalkit", "cross_entropy")])


CASES = [
    _index_case("index (65536, 100)", (65536, 100)),
    _index_case("index (8192, 1000)", (8192, 1000)),
    _index_case("index (2048, 32000)", (2048, 32000)),
    _index_case("segmentation (8, 21, 128, 128)", (8, 21, 128, 128)),
    _index_case(
        "weight + 10% ignore + smoothing 0.1 (8192, 1000)",
        (8192, 1000),
        weight=True,
        ignore_index=-100,
        label_smoothing=0.1,
    ),
    _probability_case("probability targets (8192, 1000)", (8192, 1000)),
]

if __name__ == "__main__":
    main(__file__, CASES)
