"""A CSV file read into features and classes for ``focalkit compare``, the way users expect.

- **Delimiter.** ``--sep``, or the first of ``,`` ``;`` tab ``|`` that splits every row of the
  file's first 64 KB into the same number (more than one) of fields, the most fields winning;
  if none does, ``,``.
- **Missing values.** A cell that is empty, one of pandas' missing-value markers (``NA``, ``N/A``,
  ``nan``, ``NaN``, ``NULL``, ``None``, ``#N/A``, ... : :data:`MISSING`) or any other spelling of
  NaN that ``float`` reads, is missing. A feature with missing values is refused, naming the column
  and the count, unless ``--impute`` is given: numeric columns are then filled with the median (or
  mean) of each training split, categorical ones with its most frequent value. The target is never
  filled in.
- **Columns.** Every column but the target is a feature, unless ``--features`` names the features
  or ``--drop`` leaves some out. A column whose every value that is not missing is a number is
  numeric (standardised on each training split); ``inf`` in it is refused. Any other column is
  categorical and one-hot encoded, if it has at most ``--max-categories`` distinct values.
- **Classes.** The target's distinct values; if every one is a number they are compared as
  numbers, so ``1``, ``1.0`` and ``01`` are one class, named ``1``. A target that looks continuous
  (more than 10 distinct numbers, fractional or more than half of them distinct) gets a hint.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from focalkit.cli import files
from focalkit.cli.arguments import UsageError
from focalkit.cli.training import Split

Impute = Literal["median", "mean"]

# pandas' default missing-value markers (read_csv's na_values).
MISSING = frozenset(
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    }
)  # fmt: skip
DELIMITERS = (",", ";", "\t", "|")
SNIFF_CHARS = 65536


@dataclass(frozen=True)
class Table:
    """A CSV file's features and classes, checked and ready to split.

    Missing values are NaN in ``numeric`` and ``""`` in ``categorical``; they are there only if
    the file was read with ``impute``.
    """

    numeric: NDArray[np.float64]  # (N, numeric columns)
    categorical: NDArray[np.str_]  # (N, categorical columns)
    numeric_names: list[str]
    categorical_names: list[str]
    labels: NDArray[np.int64]
    class_names: list[str]
    delimiter: str = ","
    dropped: list[str] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)  # feature -> missing values in it
    impute: Impute | None = None
    notes: list[str] = field(default_factory=list)  # what the user may want to know, one line each
    target_hint: str = ""  # "target column 'y' looks continuous ...", or ""


def is_missing(value: str) -> bool:
    """Whether a (stripped) cell is a missing value.

    Example:
        >>> [is_missing(value) for value in ["", "NA", "nan", "NAN", "0", "none", "inf"]]
        [True, True, True, True, False, False, False]
    """
    if value in MISSING:
        return True
    number = _number(value)
    return number is not None and math.isnan(number)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def class_name(number: float) -> str:
    """The name of a numeric class: ``1`` for 1, 1.0 and 01; the shortest exact form otherwise.

    Example:
        >>> [class_name(float(text)) for text in ["1.0", "01", "-0", "2.50", "1e3", "inf"]]
        ['1', '1', '0', '2.5', '1000', 'inf']
    """
    return str(int(number)) if number.is_integer() else repr(number)


def detect_delimiter(text: str) -> str:
    """The delimiter of a CSV text: see the module docstring.

    Example:
        >>> detect_delimiter("a;b;kind\\n1,5;2;x\\n"), detect_delimiter("a,b\\n1,2\\n")
        (';', ',')
        >>> detect_delimiter("a\\tb\\n1\\t2\\n"), detect_delimiter("kind\\nx\\n")
        ('\\t', ',')
    """
    sample = text[:SNIFF_CHARS]
    truncated = len(text) > SNIFF_CHARS
    best, most_fields = ",", 1
    for delimiter in DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter))
        except csv.Error:
            continue
        rows = [row for row in rows if any(cell.strip() for cell in row)]
        if truncated:
            rows = rows[:-1]  # may be cut in the middle
        widths = {len(row) for row in rows}
        if len(widths) == 1 and (width := widths.pop()) > most_fields:
            best, most_fields = delimiter, width
    return best


def read_csv(path: Path, sep: str | None = None) -> tuple[list[str], list[list[str]], str]:
    """The header, the rows (every one as long as the header) and the delimiter of ``path``."""
    text = files.read_text(path, "", "a CSV file", hint="; save it as UTF-8 CSV")
    delimiter = detect_delimiter(text) if sep is None else sep
    try:
        lines = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
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
            how = "given by --sep" if sep is not None else "pass --sep if the file uses another"
            raise UsageError(
                f"{path}: line {number} has {len(row)} fields, the header has {len(header)} "
                f"(fields separated by {delimiter!r}; {how})"
            )
    return header, rows, delimiter


def _continuous_hint(target: str, keys: list[float]) -> str:
    distinct = set(keys)
    fractional = any(not number.is_integer() for number in distinct)
    if len(distinct) > 10 and (fractional or len(distinct) > len(keys) / 2):
        return (
            f"target column {target!r} looks continuous ({len(distinct)} distinct numbers in "
            f"{len(keys)} rows): focalkit compare compares classifiers; bin it into classes first"
        )
    return ""


def _check_names(option: str, names: Sequence[str], header: list[str], target: str) -> None:
    for name in names:
        if name == target:
            raise UsageError(f"{option}: {name!r} is the target column")
        if name not in header:
            raise UsageError(
                f"{option}: no column {name!r}; the columns are: " + ", ".join(map(repr, header))
            )


def load(
    path: Path,
    target: str,
    max_categories: int,
    *,
    sep: str | None = None,
    drop: Sequence[str] = (),
    features: Sequence[str] | None = None,
    impute: Impute | None = None,
) -> Table:
    """Read ``path`` and encode it; every problem is a :class:`UsageError` naming the column."""
    header, rows, delimiter = read_csv(path, sep)
    named = []
    for position, name in enumerate(header):
        if name:
            named.append(name)
        elif not all(is_missing(row[position].strip()) for row in rows):
            raise UsageError(f"{path}: column {position + 1} has no name in the header; name it")
        # else: an unnamed empty column, as a delimiter at the end of every line makes
    duplicates = sorted({name for name in named if named.count(name) > 1})
    if duplicates:
        raise UsageError(f"{path}: the header names {duplicates[0]!r} more than once")
    if target not in named:
        raise UsageError(
            f"no column {target!r} in {path}; its columns are: " + ", ".join(map(repr, named))
        )
    columns = {
        name: [row[position].strip() for row in rows]
        for position, name in enumerate(header)
        if name
    }
    _check_names("--drop", drop, named, target)
    _check_names("--features", features or (), named, target)
    chosen = [name for name in named if name != target and name not in drop]
    if features is not None:
        chosen = [name for name in chosen if name in features]
    if not chosen:
        raise UsageError(f"{path} has no column besides the target {target!r} to learn from")

    values = columns[target]
    missing_rows = [line for line, value in enumerate(values, 2) if is_missing(value)]
    if missing_rows:
        raise UsageError(
            f"target column {target!r} is missing on {len(missing_rows)} "
            f"row{'s' if len(missing_rows) > 1 else ''} (first on line "
            f"{missing_rows[0]}: {values[missing_rows[0] - 2]!r}); remove those rows first"
        )
    numbers = [_number(value) for value in values]
    hint = ""
    if all(number is not None for number in numbers):  # numeric classes: 1, 1.0 and 01 are one
        keys: list[float] | list[str] = [n for n in numbers if n is not None]
        distinct_numbers = sorted({n for n in numbers if n is not None})
        class_names = [class_name(number) for number in distinct_numbers]
        index: dict[float | str, int] = {k: c for c, k in enumerate(distinct_numbers)}
        hint = _continuous_hint(target, [n for n in numbers if n is not None])
    else:
        keys = values
        class_names = sorted(set(values))
        index = {k: c for c, k in enumerate(class_names)}
    if len(class_names) < 2:
        raise UsageError(
            f"target column {target!r} has one class ({class_names[0]!r}) in all {len(values)} "
            "rows; a comparison needs at least two"
        )
    labels = np.array([index[key] for key in keys], dtype=np.int64)

    numeric: list[list[float]] = []
    categorical: list[list[str]] = []
    numeric_names: list[str] = []
    categorical_names: list[str] = []
    missing: dict[str, int] = {}
    first_missing: dict[str, tuple[int, str]] = {}
    notes: list[str] = []
    for name in chosen:
        column = columns[name]
        absent = [is_missing(value) for value in column]
        if all(absent):
            raise UsageError(f"column {name!r} has no values, only missing ones; --drop {name}")
        if any(absent):
            missing[name] = sum(absent)
            line = absent.index(True)
            first_missing[name] = (line + 2, column[line])
        parsed = [
            math.nan if gap else _number(value) for value, gap in zip(column, absent, strict=True)
        ]
        if all(number is not None for number in parsed):
            floats = [number for number in parsed if number is not None]
            infinite = [line for line, number in enumerate(floats, 2) if math.isinf(number)]
            if infinite:
                raise UsageError(
                    f"column {name!r} holds {column[infinite[0] - 2]!r} on line {infinite[0]} "
                    f"({len(infinite)} infinite values); replace them, or --drop {name}"
                )
            numeric.append(floats)
            numeric_names.append(name)
            notes += _id_note(name, floats)
            continue
        present = [value for value, gap in zip(column, absent, strict=True) if not gap]
        distinct = sorted(set(present))
        if len(distinct) > max_categories:
            example = next(value for value in present if _number(value) is None)
            raise UsageError(
                f"column {name!r} is not numeric (e.g. {example!r} on line "
                f"{column.index(example) + 2}) and has {len(distinct)} distinct values, more than "
                f"--max-categories {max_categories} to one-hot encode; --drop it or encode it first"
            )
        words = [value for value in present if _number(value) is None]
        if len(words) < len(present) / 2:
            notes.append(
                f"column {name!r} is read as categories: {len(present) - len(words)} of its "
                f"values are numbers, but not {words[0]!r} (line {column.index(words[0]) + 2}); "
                "if that means missing, make it empty"
            )
        categorical.append(
            ["" if gap else value for value, gap in zip(column, absent, strict=True)]
        )
        categorical_names.append(name)
    if missing and impute is None:
        name = next(iter(missing))
        line, value = first_missing[name]
        others = len(missing) - 1
        more = f" (and {others} more column{'s' if others > 1 else ''})" if others else ""
        plural = missing[name] > 1
        raise UsageError(
            f"column {name!r} has {missing[name]} missing value{'s' if plural else ''} (first "
            f"{value!r} on line {line}){more}; pass --impute median to fill "
            f"{'them' if plural else 'it'}, --drop {name}, or fill the file's gaps"
        )
    return Table(
        numeric=np.array(numeric, dtype=np.float64).T.reshape(len(rows), len(numeric)),
        categorical=np.array(categorical, dtype=np.str_).T.reshape(len(rows), len(categorical)),
        numeric_names=numeric_names,
        categorical_names=categorical_names,
        labels=labels,
        class_names=class_names,
        delimiter=delimiter,
        dropped=[name for name in named if name != target and name not in chosen],
        missing=missing,
        impute=impute if missing else None,
        notes=notes,
        target_hint=hint,
    )


def _id_note(name: str, numbers: list[float]) -> list[str]:
    """A note if a numeric column looks like a row number: distinct consecutive integers."""
    if len(numbers) < 10 or not all(number.is_integer() for number in numbers):
        return []
    if len(set(numbers)) == len(numbers) and max(numbers) - min(numbers) == len(numbers) - 1:
        return [
            f"column {name!r} looks like a row number ({len(numbers)} distinct consecutive "
            f"integers); if it is one, pass --drop {name}"
        ]
    return []


def fill_missing_numbers(
    values: NDArray[np.float64], train: NDArray[np.int64], impute: Impute
) -> NDArray[np.float64]:
    """``values`` with each column's NaN replaced by the median or mean of its training rows.

    A column with no value in the training rows takes the statistic of all its rows.

    Example:
        >>> values = np.array([[1.0], [np.nan], [3.0], [10.0]])
        >>> fill_missing_numbers(values, np.array([0, 1, 2]), "median").ravel().tolist()
        [1.0, 2.0, 3.0, 10.0]
    """
    statistic = np.median if impute == "median" else np.mean
    filled: NDArray[np.float64] = values.copy()
    for column in range(values.shape[1]):
        gaps = np.isnan(values[:, column])
        if gaps.any():
            known = values[train, column][~np.isnan(values[train, column])]
            if known.size == 0:
                known = values[~gaps, column]
            filled[gaps, column] = statistic(known)
    return filled


def fill_missing_categories(values: NDArray[np.str_], train: NDArray[np.int64]) -> NDArray[np.str_]:
    """``values`` with each column's ``""`` replaced by its training rows' most frequent value.

    Ties go to the value first in sorted order; a column with no value in the training rows takes
    the most frequent of all its rows.

    Example:
        >>> values = np.array([["b"], [""], ["a"], ["b"], ["a"]])
        >>> fill_missing_categories(values, np.array([0, 1, 2])).ravel().tolist()
        ['b', 'a', 'a', 'b', 'a']
    """
    filled: NDArray[np.str_] = values.copy()
    for column in range(values.shape[1]):
        gaps = values[:, column] == ""
        if gaps.any():
            counts = Counter(value for value in values[train, column].tolist() if value)
            if not counts:
                counts = Counter(value for value in values[:, column].tolist() if value)
            most = max(counts.values())
            filled[gaps, column] = min(value for value, n in counts.items() if n == most)
    return filled


def split(table: Table, test_size: float, seed: int) -> Split:
    """A stratified split: missing values filled, numbers standardised, categories one-hot encoded.

    Every statistic (fill value, mean and scale, categories) comes from the training rows.
    """
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
    numeric, categorical = table.numeric, table.categorical
    if table.impute is not None:
        numeric = fill_missing_numbers(numeric, train, table.impute)
        categorical = fill_missing_categories(categorical, train)

    parts_train, parts_test = [], []
    if numeric.shape[1]:
        scaler = StandardScaler().fit(numeric[train])
        parts_train.append(scaler.transform(numeric[train]))
        parts_test.append(scaler.transform(numeric[test]))
    if categorical.shape[1]:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        encoder.fit(categorical[train])
        parts_train.append(encoder.transform(categorical[train]))
        parts_test.append(encoder.transform(categorical[test]))
    return Split(
        x_train=np.hstack(parts_train).astype(np.float32),
        y_train=table.labels[train],
        x_test=np.hstack(parts_test).astype(np.float32),
        y_test=table.labels[test],
    )
