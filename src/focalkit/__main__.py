"""``python -m focalkit``: a worked example, the Keras blog snippet's table recomputed by focalkit.

The snippet (a Keras multi-class focal loss that weights classes by inverse frequency) prints eight
losses for eight softmax predictions; focalkit reproduces them with ``class_weights`` and
``binary_focal_loss``, then shows what the snippet's probability clip costs on a confident one.
"""

from __future__ import annotations

import sys

import numpy as np

import focalkit

COUNTS = [100, 200, 50, 10]
LABELS = [0, 1, 0, 2, 2, 2, 0, 1]
PROBS = [
    [0.37623284, 0.33230947, 0.0481559, 0.2433018],
    [0.29497108, 0.12360882, 0.20553146, 0.37588864],
    [0.58799838, 0.28331014, 0.07566421, 0.05302727],
    [0.4794889, 0.07500778, 0.41214537, 0.03335796],
    [0.28295068, 0.07871247, 0.16113049, 0.47720636],
    [0.03239087, 0.35946281, 0.28374307, 0.32440325],
    [0.08932401, 0.54083959, 0.23610655, 0.13372985],
    [0.19806993, 0.20598081, 0.29593526, 0.30001401],
]
PRINTED = [
    0.04206767,
    0.11250415,
    0.00784752,
    0.05654315,
    0.30171221,
    0.12844518,
    0.16094631,
    0.06586922,
]


def main() -> int:
    try:
        import torch
    except ModuleNotFoundError:
        print('The worked example needs PyTorch: pip install "focalkit[torch]"', file=sys.stderr)
        return 1

    weights = focalkit.class_weights(COUNTS, method="inverse", normalize="sum")
    print("focalkit worked example: a Keras focal-loss snippet's table, recomputed\n")
    print(f"class counts {COUNTS} -> class_weights(method='inverse', normalize='sum'):")
    print("  " + "  ".join(f"{w:.6f}" for w in weights) + "\n")

    probs = torch.tensor(PROBS, dtype=torch.float64)
    target = torch.nn.functional.one_hot(torch.tensor(LABELS), 4).to(torch.float64)
    losses = focalkit.binary_focal_loss(
        probs, target, weight=weights, gamma=2.0, alpha=None, reduction="none"
    ).sum(1)
    print(" row  label  snippet printed   focalkit    difference")
    for row, (label, printed, loss) in enumerate(
        zip(LABELS, PRINTED, losses.tolist(), strict=True)
    ):
        print(f"{row:4d}  {label:5d}  {printed:15.8f}  {loss:10.8f}  {loss - printed:+.1e}")
    worst = float(np.max(np.abs(losses.numpy() - np.array(PRINTED))))
    print(f"\nlargest difference: {worst:.1e}\n")

    confident = torch.tensor([[1 - 1e-9, 1e-9]], dtype=torch.float64)
    exact = focalkit.binary_focal_loss(
        confident,
        torch.tensor([[0.0, 1.0]], dtype=torch.float64),
        gamma=2.0,
        alpha=None,
        reduction="sum",
    )
    clipped = confident.clamp(1e-7, 1 - 1e-7)
    snippet = -(clipped[0, 0] ** 2 * torch.log(1 - clipped[0, 0])) - (
        (1 - clipped[0, 1]) ** 2 * torch.log(clipped[0, 1])
    )
    print("a confident mistake (p = 1 - 1e-9 on the wrong class):")
    print(f"  focalkit {exact.item():.4f}   snippet with its 1e-7 clip {snippet.item():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
