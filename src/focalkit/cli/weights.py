"""``focalkit weights``: class weights from counts or from a file of labels, as a table or JSON.

The computation is :func:`focalkit.class_weights` (and :func:`focalkit.class_counts` for
``--labels``), with its default normalisation (mean 1 over the classes). Counts of 100,
200, 50 and 10 samples give these inverse-frequency weights, normalised to sum 1:

Example:
    >>> from focalkit.cli import main
    >>> main(["weights", "100", "200", "50", "10", "--normalize", "sum", "--json"])
    {"method": "inverse", "normalize": "sum", "counts": [100, 200, 50, 10],
     "weights": [0.0741, 0.0370, 0.1481, 0.7407]}
    0
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import focalkit
from focalkit.cli import arguments, files
from focalkit.cli.arguments import MAX_CLASSES, HelpFormatter, UsageError

EXAMPLES = """\
examples:
  focalkit weights 100 200 50 10 --method inverse --normalize sum   # 0.0741 0.037 0.1481 0.7407
  focalkit weights 100 200 50 10 --method effective_number --beta 0.99 --normalize mean
  focalkit weights --labels train_labels.txt --method inverse_sqrt --json
  focalkit weights 5 0 7 --zero ignore        # class 1 never occurs: weight 0

--labels reads integer class labels separated by spaces, commas or new lines,
each from 0 to 9999999 (at most 10,000,000 classes).
"""


def add_parser(commands: argparse._SubParsersAction[arguments.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "weights",
        help="print class weights for per-class counts or a file of labels",
        description=(
            "Print per-class weights for the weight= or alpha= argument of focalkit's losses, "
            "computed by focalkit.class_weights from class counts, or from the labels in a file."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "counts", nargs="*", type=arguments.count, metavar="COUNT", help="sample count per class"
    )
    parser.add_argument(
        "--labels",
        type=arguments.input_path,
        metavar="FILE",
        help=f"count the integer labels in FILE instead (each from 0 to {MAX_CLASSES - 1})",
    )
    parser.add_argument(
        "--num-classes",
        type=arguments.class_count,
        metavar="C",
        help="with --labels: the number of classes (default: the largest label + 1)",
    )
    parser.add_argument(
        "--method",
        choices=("inverse", "inverse_sqrt", "effective_number"),
        default="inverse",
        help="inverse: n/n_c; inverse_sqrt: sqrt(n/n_c); effective_number: "
        "(1 - beta)/(1 - beta^n_c), Cui et al. 2019 (default: %(default)s)",
    )
    parser.add_argument(
        "--normalize",
        choices=("mean", "balanced", "sum", "none"),
        default="mean",
        help="mean 1 over the classes; balanced: mean 1 over the samples (scikit-learn's "
        "'balanced' for inverse); sum 1; or none (default: %(default)s)",
    )
    parser.add_argument(
        "--beta",
        type=arguments.beta,
        default=0.999,
        help="for effective_number, in [0, 1) (default: %(default)g)",
    )
    parser.add_argument(
        "--zero",
        choices=("raise", "ignore"),
        default="raise",
        help="a class with count 0: an error, or weight 0 (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def read_labels(path: Path, num_classes: int | None) -> NDArray[np.int64]:
    """Class counts from a text file of integer labels."""
    text = files.read_text(path, "--labels", "a file of labels")
    tokens = [token for token in re.split(r"[\s,]+", text) if token]
    if not tokens:
        raise UsageError(f"--labels: {path} holds no labels")
    labels = []
    for position, token in enumerate(tokens, 1):
        try:
            label = int(token)
        except ValueError:
            raise UsageError(
                f"--labels: {path}: label {position} is {token!r}, not an integer"
            ) from None
        if label < 0:
            raise UsageError(f"--labels: {path}: labels must be >= 0, got {label}")
        if label >= MAX_CLASSES:
            raise UsageError(
                f"--labels: {path}: label {position} is {label}; focalkit weights counts classes "
                f"0 to {MAX_CLASSES - 1}"
            )
        labels.append(label)
    classes = max(labels) + 1 if num_classes is None else num_classes
    if max(labels) >= classes:
        raise UsageError(
            f"--labels: {path}: label {max(labels)} is outside [0, {classes}) for "
            f"--num-classes {classes}"
        )
    return focalkit.class_counts(np.array(labels, dtype=np.int64), classes)


def run(args: argparse.Namespace) -> int:
    if args.labels is not None and args.counts:
        raise UsageError("give counts or --labels FILE, not both")
    if args.labels is None and not args.counts:
        raise UsageError("give the count of each class (e.g. 100 200 50 10) or --labels FILE")
    if args.num_classes is not None and args.labels is None:
        raise UsageError("--num-classes goes with --labels")
    counts = (
        np.array(args.counts) if args.labels is None else read_labels(args.labels, args.num_classes)
    )
    normalize = None if args.normalize == "none" else args.normalize
    try:
        weights = focalkit.class_weights(counts, args.method, normalize, args.beta, zero=args.zero)
    except ValueError as error:  # a class with count 0, or every count 0
        message = str(error).replace("pass zero='ignore'", "pass --zero ignore")
        raise UsageError(message) from None
    if args.json:
        result: dict[str, object] = {"method": args.method, "normalize": normalize}
        if args.method == "effective_number":
            result["beta"] = args.beta
        result |= {"counts": counts.tolist(), "weights": weights.tolist()}
        print(json.dumps(result))
        return 0

    from rich.console import Console
    from rich.table import Table

    title = f"class_weights(method={args.method!r}, normalize={normalize!r}"
    title += f", beta={args.beta:g})" if args.method == "effective_number" else ")"
    table = Table()
    for header in ("class", "count", "weight"):
        table.add_column(header, justify="right")
    for index, (n, weight) in enumerate(zip(counts.tolist(), weights.tolist(), strict=True)):
        table.add_row(str(index), str(n), f"{weight:.6g}")
    console = Console()
    console.print(title, highlight=False)
    console.print(table)
    return 0
