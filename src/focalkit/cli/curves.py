r"""``focalkit curves``: focal loss and its gradient against :math:`p_t`, one curve per gamma.

The left panel is Lin et al.'s Figure 1, :math:`\mathrm{FL}(p_t) = -(1 - p_t)^\gamma \log p_t`;
the right one is the magnitude of its derivative with respect to the true class's logit,
:math:`|\partial \mathrm{FL} / \partial x|` with :math:`p_t = \sigma(x)` (for two classes, the
softmax of logits :math:`(x, 0)`). Both come from :func:`focalkit.sigmoid_focal_loss` with
``alpha=None`` and autograd, in float64; ``gamma=0`` is cross-entropy.

References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. arXiv:1708.02002
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from focalkit.cli import arguments, files
from focalkit.cli.arguments import HelpFormatter, UsageError

EXAMPLES = """\
examples:
  focalkit curves                                  # gammas 0,0.5,1,2,5 into curves.png
  focalkit curves --gammas 0,0.5,1,2,5 --out curves.png
  focalkit curves --gammas 0,1,3 --out figures/focal.svg
"""

TABLE_POINTS = (0.1, 0.5, 0.9)
# The image formats matplotlib writes with no other program (its pgf needs LaTeX).
FORMATS = ("png", "pdf", "svg", "eps", "jpg", "jpeg", "webp")


def add_parser(commands: argparse._SubParsersAction[arguments.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "curves",
        help="plot focal loss and its gradient against p_t for several gammas",
        description=(
            "Plot focal loss against p_t, the probability of the true class, for each gamma "
            "(Lin et al. 2017, Figure 1), beside the magnitude of its gradient with respect to "
            "the true class's logit, and print the loss at a few p_t. gamma=0 is cross-entropy."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--gammas",
        type=arguments.gammas,
        default=(0.0, 0.5, 1.0, 2.0, 5.0),
        metavar="G1,G2,...",
        help="comma-separated gammas >= 0 (default: 0,0.5,1,2,5)",
    )
    parser.add_argument(
        "--out",
        type=arguments.output_path,
        default=Path("curves.png"),
        help="image file, its folder made if missing; the extension sets the format: "
        + ", ".join(FORMATS)
        + " (default: %(default)s)",
    )
    arguments.add_force_option(parser, "the --out file")
    parser.set_defaults(run=run)


def focal_curves(
    p_t: NDArray[np.float64], gamma: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Focal loss at each ``p_t`` and the magnitude of its gradient with respect to the logit.

    By hand, :math:`\partial \mathrm{FL} / \partial x = \gamma p_t (1 - p_t)^\gamma \log p_t
    - (1 - p_t)^{\gamma + 1}`; at :math:`p_t = 0.5, \gamma = 2` that is
    :math:`-0.25 \log 2 - 0.125 = -0.29829`.

    Example:
        >>> import numpy as np
        >>> loss, gradient = focal_curves(np.array([0.5, 0.9]), gamma=2.0)
        >>> loss.round(5).tolist(), gradient.round(5).tolist()
        ([0.17329, 0.00105], [0.29829, 0.0029])
    """
    import torch

    import focalkit

    logit = torch.tensor(np.log(p_t) - np.log1p(-p_t), dtype=torch.float64, requires_grad=True)
    loss = focalkit.sigmoid_focal_loss(
        logit, torch.ones_like(logit), reduction="none", gamma=gamma, alpha=None
    )
    (gradient,) = torch.autograd.grad(loss.sum(), logit)
    return loss.detach().numpy(), gradient.abs().numpy()


def run(args: argparse.Namespace) -> int:
    extension = args.out.suffix.lstrip(".").lower()
    if extension not in FORMATS:
        problem = "write" if extension else "tell"
        raise UsageError(
            f"--out: cannot {problem} the image format of {str(args.out)!r}; end it with "
            + ", ".join(f".{name}" for name in FORMATS)
        )
    files.check_file(args.out, args.force)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.console import Console
    from rich.table import Table

    p_t = np.linspace(0.0, 1.0, 1001)[1:-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for gamma in args.gammas:
        loss, gradient = focal_curves(p_t, gamma)
        label = f"$\\gamma$ = {gamma:g}" + (" (cross-entropy)" if gamma == 0 else "")
        left.plot(p_t, loss, label=label)
        right.plot(p_t, gradient, label=label)
    left.set(xlabel="probability of the true class $p_t$", ylabel="loss", ylim=(0, 5), xlim=(0, 1))
    left.set_title("Focal loss $-(1 - p_t)^\\gamma \\log p_t$ (Lin et al. 2017, Fig. 1)")
    right.set(
        xlabel="probability of the true class $p_t$",
        ylabel="$|\\partial \\ell / \\partial x|$",
        xlim=(0, 1),
    )
    right.set_ylim(bottom=0)
    right.set_title("Gradient magnitude with respect to the true class's logit")
    left.legend()
    with files.create(args.out, args.force) as file:
        fig.savefig(file, format=extension, dpi=110)
    plt.close(fig)

    table = Table(title="focal loss at p_t (and as a fraction of cross-entropy)")
    table.add_column("gamma", justify="right")
    for point in TABLE_POINTS:
        table.add_column(f"p_t = {point:g}", justify="right")
    cross_entropy, _ = focal_curves(np.array(TABLE_POINTS), 0.0)
    for gamma in args.gammas:
        loss, _ = focal_curves(np.array(TABLE_POINTS), gamma)
        cells = [
            f"{value:.4g} ({value / ce:.3g}x)"
            for value, ce in zip(loss, cross_entropy, strict=True)
        ]
        table.add_row(f"{gamma:g}", *cells)
    console = Console()
    console.print(table)
    console.print(f"wrote {args.out}", highlight=False, markup=False, soft_wrap=True)
    return 0
