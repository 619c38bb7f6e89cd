"""``focalkit compare DATA.csv --target COLUMN``: the demo's comparison on your own table.

The CSV file has a header row. Every column but the target is a feature: a column whose every
value is a number is standardised (on each training split); any other column is categorical and
one-hot encoded, if it has at most ``--max-categories`` distinct values. The target's distinct
values are the classes. Each seed draws its own stratified split, so the test set has the class
proportions of the file.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from focalkit.cli import arguments, files
from focalkit.cli.arguments import HelpFormatter, UsageError
from focalkit.cli.training import Settings, Split, rarest

EXAMPLES = """\
examples:
  focalkit compare data.csv --target label
  focalkit compare data.csv --target label --seeds 5 --test-size 0.3 --out my-report/
  focalkit compare data.csv --target label --max-categories 100
"""


def add_parser(commands: argparse._SubParsersAction[arguments.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare the losses on your own CSV file",
        description=(
            "Train the demo's MLP with each loss on a CSV file of your own (a header row; numeric "
            "columns standardised, categorical columns one-hot encoded; a stratified train/test "
            "split per seed) and write the same report as focalkit demo."
        ),
        epilog=EXAMPLES,
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
    arguments.add_run_options(parser, Settings.epochs)
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Table:
    """A CSV file's features and classes, checked and ready to split."""

    numeric: NDArray[np.float64]  # (N, numeric columns)
    categorical: NDArray[np.str_]  # (N, categorical columns)
    numeric_names: list[str]
    categorical_names: list[str]
    labels: NDArray[np.int64]
    class_names: list[str]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of ``path``, every row as long as the header."""
    text = files.read_text(path, "", "a CSV file", hint="; save it as UTF-8 CSV")
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise UsageError(f"{path} is not a readable CSV file: {error}") from None
    lines = [line for line in lines if any(cell.strip() for cell in line)]
    if not lines:
        raise UsageError(f"{path} is empty")
    header, rows = [name.strip() for name in lines[0]], lines[1:]
    if not rows:
        raise UsageError(f"{path} has a header but no rows")
    for number, row in enumerate(rows, 2):
        if len(row) != len(header):
            raise UsageError(
                f"{path}: line {number} has {len(row)} fields, the header has {len(header)}"
            )
    return header, rows


def _as_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _class_order(values: list[str]) -> list[str]:
    """Distinct target values, in numeric order if all are numbers, else in text order."""
    distinct = sorted(set(values))
    numbers = [_as_number(value) for value in distinct]
    if all(number is not None for number in numbers):
        return [value for _, value in sorted(zip(numbers, distinct, strict=True))]
    return distinct


def load(path: Path, target: str, max_categories: int) -> Table:
    """Read ``path`` and encode it; every problem is a :class:`UsageError` naming the column."""
    header, rows = read_csv(path)
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise UsageError(f"{path}: the header names {duplicates[0]!r} more than once")
    if target not in header:
        raise UsageError(
            f"no column {target!r} in {path}; its columns are: " + ", ".join(map(repr, header))
        )
    if len(header) < 2:
        raise UsageError(f"{path} has only the target column {target!r}: no features to learn from")
    columns = {name: [row[index].strip() for row in rows] for index, name in enumerate(header)}

    values = columns.pop(target)
    if "" in values:
        line = values.index("") + 2
        raise UsageError(f"target column {target!r} is empty on line {line} of {path}")
    class_names = _class_order(values)
    if len(class_names) < 2:
        raise UsageError(
            f"target column {target!r} has one class ({class_names[0]!r}) in all {len(values)} "
            "rows; a comparison needs at least two"
        )
    index = {name: position for position, name in enumerate(class_names)}
    labels = np.array([index[value] for value in values], dtype=np.int64)

    numeric, categorical, numeric_names, categorical_names = [], [], [], []
    for name, column in columns.items():
        if "" in column:
            line = column.index("") + 2
            raise UsageError(
                f"column {name!r} is empty on line {line} of {path}; focalkit compare does not "
                "fill in missing values: fill or drop them first"
            )
        numbers = [_as_number(value) for value in column]
        if all(number is not None for number in numbers):
            numeric.append(numbers)
            numeric_names.append(name)
            continue
        distinct = sorted(set(column))
        if len(distinct) > max_categories:
            example = next(
                value for value, number in zip(column, numbers, strict=True) if number is None
            )
            raise UsageError(
                f"column {name!r} is not numeric (e.g. {example!r} on line "
                f"{column.index(example) + 2}) and has {len(distinct)} distinct values, more than "
                f"--max-categories {max_categories} to one-hot encode; drop it or encode it first"
            )
        categorical.append(column)
        categorical_names.append(name)
    return Table(
        numeric=np.array(numeric, dtype=np.float64).T.reshape(len(rows), len(numeric)),
        categorical=np.array(categorical, dtype=np.str_).T.reshape(len(rows), len(categorical)),
        numeric_names=numeric_names,
        categorical_names=categorical_names,
        labels=labels,
        class_names=class_names,
    )


def split(table: Table, test_size: float, seed: int) -> Split:
    """A stratified split, numeric columns standardised and categorical ones one-hot encoded."""
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # type: ignore[import-untyped]

    rows = np.arange(table.labels.shape[0])
    try:
        train, test = train_test_split(
            rows, test_size=test_size, random_state=seed, stratify=table.labels
        )
    except ValueError as error:
        raise UsageError(
            f"cannot make a stratified split with --test-size {test_size:g}: {error}"
        ) from None

    def encode(subset: NDArray[np.int64], fitted: list[object]) -> NDArray[np.float32]:
        parts = []
        if table.numeric.shape[1]:
            parts.append(fitted[0].transform(table.numeric[subset]))  # type: ignore[attr-defined]
        if table.categorical.shape[1]:
            parts.append(fitted[1].transform(table.categorical[subset]))  # type: ignore[attr-defined]
        return np.hstack(parts).astype(np.float32)

    scaler = StandardScaler().fit(table.numeric[train]) if table.numeric.shape[1] else None
    encoder = (
        OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(table.categorical[train])
        if table.categorical.shape[1]
        else None
    )
    fitted: list[object] = [scaler, encoder]
    return Split(
        x_train=encode(train, fitted),
        y_train=table.labels[train],
        x_test=encode(test, fitted),
        y_test=table.labels[test],
    )


def run(args: argparse.Namespace) -> int:
    from focalkit.cli import report

    table = load(args.data, args.target, args.max_categories)
    class_counts = np.bincount(table.labels, minlength=len(table.class_names))
    if class_counts.min() < 2:
        lonely = table.class_names[int(np.argmin(class_counts))]
        raise UsageError(
            f"class {lonely!r} of column {args.target!r} has 1 row; a stratified split needs at "
            "least 2 rows per class"
        )
    splits = {seed: split(table, args.test_size, seed) for seed in range(args.seeds)}
    files.check_folder(args.out, report.OUTPUTS, args.force)
    rare = rarest(class_counts)
    settings = Settings(epochs=args.epochs)
    comparison = report.run_with_progress(splits, table.class_names, rare, args.beta, settings)
    summaries = report.summarize(comparison)
    title = f"focalkit compare: {args.data.name}, target {args.target!r}"
    command = shlex.join(["focalkit", *args.argv])
    first = splits[0]
    features = []
    if table.numeric_names:
        features.append(f"{len(table.numeric_names)} numeric (standardised on each training split)")
    if table.categorical_names:
        features.append(
            f"{len(table.categorical_names)} categorical, one-hot encoded "
            f"({', '.join(table.categorical_names)})"
        )
    data = [
        f"Data: `{args.data}`, {table.labels.shape[0]} rows, target column `{args.target}`, "
        f"{len(table.class_names)} classes; features: {'; '.join(features)}, "
        f"{first.x_train.shape[1]} inputs to the model.",
        f"Class counts in the file: {report.counts_line(table.class_names, class_counts)}.",
        f"Split: stratified, {args.test_size:g} of the rows for testing "
        f"({first.y_test.shape[0]} test, {first.y_train.shape[0]} training rows), drawn per seed; "
        "the test set keeps the file's class proportions.",
        "Rarest classes (for the recall column): "
        + ", ".join(table.class_names[c] for c in rare)
        + ".",
        f"Class-balanced focal: beta = {args.beta:g}.",
    ]
    report.print_results(comparison, summaries, title)
    paths = report.write(args.out, comparison, summaries, title, data, command, args.force)
    report.print_saved(paths)
    return 0
