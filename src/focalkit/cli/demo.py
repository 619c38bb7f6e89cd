"""``focalkit demo``: the long-tailed benchmark protocol on scikit-learn's handwritten digits.

The 1,797 8x8 digits of ``sklearn.datasets.load_digits`` (shipped with scikit-learn, no download)
are split per seed into a balanced test set of ``TEST_PER_CLASS`` images per class and a training
pool; the training set takes from the pool an exponential profile of class sizes (Cui et al. 2019),
:math:`n_c = n_{max}\\, \\rho^{-c/(C-1)}` for digit :math:`c` and imbalance factor :math:`\\rho`, so
digit 0 has the most images and digit 9 the fewest.
"""

from __future__ import annotations

import argparse
import shlex

import numpy as np
from numpy.typing import NDArray

from focalkit.cli import arguments, files
from focalkit.cli.arguments import HelpFormatter
from focalkit.cli.training import (
    Settings,
    Split,
    beta_line,
    check_training_counts,
    losses_help,
    rarest,
)

TEST_PER_CLASS = 40

EXAMPLES = """\
examples:
  focalkit demo                              # 3 seeds, imbalance 50, into focalkit-report/
  focalkit demo --imbalance 100 --seeds 5
  focalkit demo --beta 0.99 --out report/
  focalkit demo --seeds 1 --epochs 20        # a quick look
  focalkit demo --losses all --out report-all/
  focalkit demo --losses logit-adjusted,ldam-drw,poly-1
"""


def add_parser(commands: argparse._SubParsersAction[arguments.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="compare the losses on a long-tailed version of scikit-learn's digits",
        description=(
            "Train a small MLP with cross-entropy, inverse-frequency weighted cross-entropy, "
            "focal loss (gamma=2), class-balanced focal loss (effective-number weights) and "
            "FLSD-53 (or the losses --losses names) on a long-tailed training set made from "
            "scikit-learn's 1,797 handwritten digits, test on a balanced test set, and report "
            "balanced accuracy, macro-F1, the recall of the three rarest classes, calibration "
            "error and NLL, per loss, over several seeds."
        ),
        epilog=EXAMPLES + "\n" + losses_help(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--imbalance",
        type=arguments.imbalance,
        default=50.0,
        help="largest class's training count over the smallest's, >= 1 (default: %(default)g)",
    )
    arguments.add_run_options(parser, Settings.epochs)
    parser.set_defaults(run=run)


def long_tailed_counts(available: NDArray[np.int64], imbalance: float) -> NDArray[np.int64]:
    """Training counts per class with an exponential profile and imbalance factor ``imbalance``.

    Class ``c`` gets ``n_max * imbalance ** (-c / (C - 1))`` rounded (at least 1), with ``n_max``
    as large as every class's ``available`` count allows.

    Example:
        >>> long_tailed_counts(np.array([138, 142, 137, 143]), 8.0).tolist()
        [138, 69, 34, 17]
    """
    num_classes = available.shape[0]
    profile = float(imbalance) ** (-np.arange(num_classes) / max(num_classes - 1, 1))
    n_max = np.min(available / profile)
    counts: NDArray[np.int64] = np.maximum(1, np.round(n_max * profile)).astype(np.int64)
    return counts


def digits_split(
    features: NDArray[np.float64], labels: NDArray[np.int64], imbalance: float, seed: int
) -> Split:
    """A balanced test set and a long-tailed training set, standardised on the training set."""
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed)
    num_classes = int(labels.max()) + 1
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    available = np.array([len(rows) - TEST_PER_CLASS for rows in by_class])
    counts = long_tailed_counts(available, imbalance)
    test = np.concatenate([rows[:TEST_PER_CLASS] for rows in by_class])
    train = np.concatenate(
        [
            rows[TEST_PER_CLASS : TEST_PER_CLASS + n]
            for rows, n in zip(by_class, counts, strict=True)
        ]
    )
    scaler = StandardScaler().fit(features[train])
    return Split(
        x_train=scaler.transform(features[train]).astype(np.float32),
        y_train=labels[train].astype(np.int64),
        x_test=scaler.transform(features[test]).astype(np.float32),
        y_test=labels[test].astype(np.int64),
    )


def run(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    from focalkit.cli import report

    files.check_folder(args.out, report.OUTPUTS, args.force)
    features, labels = load_digits(return_X_y=True)
    labels = labels.astype(np.int64)
    splits = {
        seed: digits_split(features, labels, args.imbalance, seed) for seed in range(args.seeds)
    }
    class_names = [str(c) for c in range(10)]
    check_training_counts(args.losses, splits, class_names)
    train_counts = np.bincount(splits[0].y_train, minlength=10)
    rare = rarest(train_counts)
    settings = Settings(epochs=args.epochs)
    comparison = report.run_with_progress(
        splits, class_names, rare, args.beta, settings, args.losses
    )
    summaries = report.summarize(comparison)
    title = f"focalkit demo: long-tailed digits, imbalance {args.imbalance:g}"
    command = shlex.join(["focalkit", *args.argv])
    data = [
        "Data: scikit-learn's handwritten digits (`load_digits`: 1,797 8x8 images, 10 classes), "
        "pixels standardised on the training set.",
        f"Test set: balanced, {TEST_PER_CLASS} images per class ({TEST_PER_CLASS * 10} in all), "
        "drawn per seed.",
        f"Training set: exponential profile, imbalance factor {args.imbalance:g} requested, "
        f"{train_counts.max() / train_counts.min():.1f} after rounding; "
        f"{int(train_counts.sum())} images; per class "
        f"{report.counts_line(class_names, train_counts)} (the same for every seed).",
        f"Rarest classes (for the recall column): {', '.join(map(str, rare))}.",
        *beta_line(args.losses, args.beta),
    ]
    report.print_results(comparison, summaries, title)
    paths = report.write(args.out, comparison, summaries, title, data, command, args.force)
    report.print_saved(paths)
    return 0
