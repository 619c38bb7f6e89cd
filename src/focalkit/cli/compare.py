"""``focalkit compare DATA.csv --target COLUMN``: the demo's comparison on your own table.

The CSV file has a header row; how it is read (delimiter, missing values, numeric and categorical
columns, classes) is :mod:`focalkit.cli.table`'s docstring. Each seed draws its own stratified
split, so the test set has the class proportions of the file.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

from focalkit.cli import arguments, files
from focalkit.cli.arguments import HelpFormatter, UsageError
from focalkit.cli.table import Table, load, split
from focalkit.cli.training import (
    Settings,
    beta_line,
    check_training_counts,
    losses_help,
    rarest,
)

__all__ = ["Table", "add_parser", "load", "run", "split"]

EXAMPLES = """\
examples:
  focalkit compare data.csv --target label
  focalkit compare data.csv --target label --seeds 5 --test-size 0.3 --out my-report/
  focalkit compare data.csv --target label --max-categories 100
  focalkit compare data.csv --target label --drop id,name --impute median
  focalkit compare data.csv --target label --features age,income,city --sep ';'
  focalkit compare data.csv --target label --losses all

Reading the file: the delimiter is --sep, or the one of , ; tab | that splits every line
into the same number of fields. Empty cells and NA, N/A, nan, NaN, NULL, None, #N/A (pandas'
markers) are missing values: refused unless --impute is given, never filled in the target.
A column of numbers is standardised, any other is one-hot encoded. Numeric classes are read
as numbers, so 1 and 1.0 are one class.
"""


def add_parser(commands: argparse._SubParsersAction[arguments.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare the losses on your own CSV file",
        description=(
            "Train the demo's MLP with each loss on a CSV file of your own (a header row; numeric "
            "columns standardised, categorical columns one-hot encoded; a stratified train/test "
            "split per seed) and write the same report as focalkit demo. Every column but the "
            "target is a feature, unless --features or --drop say otherwise."
        ),
        epilog=EXAMPLES + "\n" + losses_help(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "data", type=arguments.input_path, metavar="DATA.csv", help="CSV file with a header row"
    )
    parser.add_argument(
        "--target", required=True, metavar="COLUMN", help="name of the column holding the class"
    )
    parser.add_argument(
        "--test-size",
        type=arguments.open_unit_interval,
        default=0.25,
        help="fraction of the rows held out for testing, in (0, 1) (default: %(default)g)",
    )
    parser.add_argument(
        "--max-categories",
        type=arguments.positive_int,
        default=50,
        help="most distinct values a non-numeric column may have to be one-hot encoded "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--sep",
        type=arguments.separator,
        metavar="CHAR",
        help="the delimiter between fields, such as ';' or tab (default: detected)",
    )
    columns = parser.add_mutually_exclusive_group()
    columns.add_argument(
        "--drop",
        type=arguments.column_names,
        action="extend",
        default=[],
        metavar="COL[,COL]",
        help="columns to leave out, such as an id column",
    )
    columns.add_argument(
        "--features",
        type=arguments.column_names,
        action="extend",
        metavar="COL[,COL]",
        help="the only columns to learn from (default: every column but the target)",
    )
    parser.add_argument(
        "--impute",
        choices=("median", "mean"),
        help="fill missing values of numeric columns with the median or mean of each training "
        "split, and of categorical columns with its most frequent value (default: refuse a "
        "column with missing values)",
    )
    arguments.add_run_options(parser, Settings.epochs)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from focalkit.cli import report

    table = load(
        args.data,
        args.target,
        args.max_categories,
        sep=args.sep,
        drop=args.drop,
        features=args.features,
        impute=args.impute,
    )
    class_counts = np.bincount(table.labels, minlength=len(table.class_names))
    if class_counts.min() < 2:
        lonely = table.class_names[int(np.argmin(class_counts))]
        hint = f"; {table.target_hint}" if table.target_hint else ""
        raise UsageError(
            f"class {lonely!r} of column {args.target!r} has 1 row; a stratified split needs at "
            f"least 2 rows per class{hint}"
        )
    splits = {seed: split(table, args.test_size, seed) for seed in range(args.seeds)}
    check_training_counts(args.losses, splits, table.class_names)
    files.check_folder(args.out, report.OUTPUTS, args.force)
    for note in [table.target_hint] * bool(table.target_hint) + table.notes:
        print(f"focalkit compare: note: {note}", file=sys.stderr)
    rare = rarest(class_counts)
    settings = Settings(epochs=args.epochs)
    comparison = report.run_with_progress(
        splits, table.class_names, rare, args.beta, settings, args.losses
    )
    summaries = report.summarize(comparison)
    title = f"focalkit compare: {args.data.name}, target {args.target!r}"
    command = shlex.join(["focalkit", *args.argv])
    first = splits[0]
    data = [
        f"Data: `{args.data}`, {table.labels.shape[0]} rows, target column `{args.target}`, "
        f"{len(table.class_names)} classes; features: {describe_features(table)}, "
        f"{first.x_train.shape[1]} inputs to the model.",
        f"Class counts in the file: {report.counts_line(table.class_names, class_counts)}.",
        f"Split: stratified, {args.test_size:g} of the rows for testing "
        f"({first.y_test.shape[0]} test, {first.y_train.shape[0]} training rows), drawn per seed; "
        "the test set keeps the file's class proportions.",
        "Rarest classes (for the recall column): "
        + ", ".join(table.class_names[c] for c in rare)
        + ".",
        *beta_line(args.losses, args.beta),
    ]
    report.print_results(comparison, summaries, title)
    paths = report.write(args.out, comparison, summaries, title, data, command, args.force)
    report.print_saved(paths)
    return 0


def describe_features(table: Table) -> str:
    """The report's account of the features: kinds, missing values, left-out columns."""
    parts = []
    if table.numeric_names:
        parts.append(f"{len(table.numeric_names)} numeric (standardised on each training split)")
    if table.categorical_names:
        parts.append(
            f"{len(table.categorical_names)} categorical, one-hot encoded "
            f"({', '.join(table.categorical_names)})"
        )
    if table.missing:
        counts = ", ".join(f"{name} {count}" for name, count in table.missing.items())
        parts.append(
            f"missing values ({counts}) filled from each training split: numbers with the "
            f"{table.impute}, categories with the most frequent value"
        )
    if table.dropped:
        parts.append(f"left out: {', '.join(table.dropped)}")
    if table.delimiter != ",":
        parts.append(f"fields separated by {table.delimiter!r}")
    return "; ".join(parts)
