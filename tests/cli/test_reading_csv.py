"""How ``focalkit compare`` reads a CSV file: missing values, delimiters, classes, chosen columns.

The fill values are checked against scikit-learn's ``SimpleImputer`` fitted on the same rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_usage_error, no_training, run_cli
from sklearn.impute import SimpleImputer

from focalkit.cli import report
from focalkit.cli.arguments import separator
from focalkit.cli.table import (
    fill_missing_categories,
    fill_missing_numbers,
    load,
    split,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def digits_like(missing: str, rows: int = 40) -> str:
    """A numeric CSV (pixel values 0-16, as in the digits) with ``missing`` in two cells."""
    rng = np.random.default_rng(2)
    lines = ["p0,p1,p2,kind"]
    for i in range(rows):
        pixels = [str(v) for v in rng.integers(0, 17, 3)]
        if i in (3, 17):
            pixels[1] = missing
        lines.append(",".join([*pixels, "ab"[i % 2]]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("missing", ["", "NA", "nan", "NaN", "N/A", "NULL", "None", "NAN", "#N/A"])
def test_missing_values_in_a_numeric_column_are_refused_by_name(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    missing: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = write(tmp_path / "d.csv", digits_like(missing))
    argv = ["compare", str(data), "--target", "kind", "--out", str(tmp_path / "o")]
    assert_usage_error(
        capsys,
        argv,
        f"column 'p1' has 2 missing values (first {missing!r} on line 5); pass --impute median",
    )


@pytest.mark.parametrize("missing", ["NA", "nan", ""])
def test_imputed_columns_stay_numeric(tmp_path: Path, missing: str) -> None:
    data = write(tmp_path / "d.csv", digits_like(missing))
    table = load(data, "kind", 50, impute="median")
    assert table.numeric_names == ["p0", "p1", "p2"]
    assert table.categorical_names == []
    assert table.missing == {"p1": 2}
    assert np.isnan(table.numeric[[3, 17], 1]).all()
    first = split(table, 0.25, seed=0)
    assert first.x_train.shape == (30, 3)  # three inputs, not a one-hot encoding of p1
    assert np.isfinite(first.x_train).all()
    assert np.isfinite(first.x_test).all()


def test_infinite_values_are_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = write(tmp_path / "d.csv", digits_like("inf"))
    argv = ["compare", str(data), "--target", "kind", "--out", str(tmp_path / "o")]
    assert_usage_error(capsys, argv, "column 'p1' holds 'inf' on line 5 (2 infinite values)")


@pytest.mark.parametrize("strategy", ["median", "mean"])
def test_numbers_are_filled_as_sklearn_fills_them(strategy: str) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(30, 4))
    values[rng.random((30, 4)) < 0.3] = np.nan
    train = rng.permutation(30)[:20]
    values[train, 3] = np.nan  # no training value: the whole column's statistic
    filled = fill_missing_numbers(values, train, strategy)  # type: ignore[arg-type]
    imputer = SimpleImputer(strategy=strategy).fit(values[train, :3])
    np.testing.assert_allclose(filled[:, :3], imputer.transform(values[:, :3]), rtol=1e-12)
    whole = SimpleImputer(strategy=strategy).fit(values[:, 3:])
    np.testing.assert_allclose(filled[:, 3:], whole.transform(values[:, 3:]), rtol=1e-12)
    assert np.array_equal(np.isnan(values), np.isnan(values) & ~np.isnan(filled))


def test_categories_are_filled_as_sklearn_fills_them() -> None:
    rng = np.random.default_rng(4)
    values = rng.choice(np.array(["red", "green", "blue", ""]), size=(40, 3))
    train = rng.permutation(40)[:30]
    filled = fill_missing_categories(values, train)
    imputer = SimpleImputer(strategy="most_frequent", missing_values="")
    expected = imputer.fit(values[train].astype(object)).transform(values.astype(object))
    assert filled.tolist() == expected.tolist()


def test_numeric_classes_are_one_class_however_written(tmp_path: Path) -> None:
    rows = [f"{i},{label}" for i, label in enumerate(["1", "1.0", "01", "2", "2.00", " 2", "10"])]
    table = load(write(tmp_path / "d.csv", "x,y\n" + "\n".join(rows) + "\n"), "y", 50)
    assert table.class_names == ["1", "2", "10"]
    assert table.labels.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert table.target_hint == ""


def test_a_continuous_target_gets_a_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    rows = [f"{x:.3f},{2 * x + 1:.3f}" for x in rng.normal(size=30)]
    data = write(tmp_path / "d.csv", "x,price\n" + "\n".join(rows) + "\n")
    argv = ["compare", str(data), "--target", "price", "--out", str(tmp_path / "o")]
    assert_usage_error(
        capsys, argv, "target column 'price' looks continuous (30 distinct numbers in 30 rows)"
    )


def test_a_few_numeric_classes_get_no_hint(tmp_path: Path) -> None:
    rows = [f"{i},{[0.5, 1.5, 2.5][i % 3]}" for i in range(30)]
    table = load(write(tmp_path / "d.csv", "x,grade\n" + "\n".join(rows) + "\n"), "grade", 50)
    assert table.class_names == ["0.5", "1.5", "2.5"]
    assert table.target_hint == ""


@pytest.mark.parametrize(
    ("delimiter", "sep"), [(";", None), ("\t", None), ("|", None), (";", ";"), ("\t", "\t")]
)
def test_the_delimiter_is_detected_or_given(
    tmp_path: Path, delimiter: str, sep: str | None
) -> None:
    lines = ["a,b;c;kind".replace(",", "_").replace(";", delimiter)]
    lines += [delimiter.join([f"{i}", f"{i % 3}", "xy"[i % 2]]) for i in range(12)]
    data = write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    table = load(data, "kind", 50, sep=sep)
    assert table.numeric_names == ["a_b", "c"]
    assert table.delimiter == delimiter
    assert table.class_names == ["x", "y"]


def test_sep_takes_tab_by_name() -> None:
    assert [separator(text) for text in ["tab", "\\t", "\t", ";", " "]] == ["\t"] * 3 + [";", " "]


def test_decimal_commas_with_semicolons(tmp_path: Path) -> None:
    data = write(tmp_path / "d.csv", "a;kind\n1,5;x\n2,5;y\n3,0;x\n")
    table = load(data, "kind", 50)
    assert table.delimiter == ";"
    assert table.categorical_names == ["a"]  # '1,5' is not a number: read as text, not split


def test_a_wrong_sep_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write(tmp_path / "d.csv", "a;b;kind\n1;2;x\n3,4;5;y\n")
    argv = ["compare", str(data), "--target", "kind", "--sep", ","]
    assert_usage_error(capsys, argv, "line 3 has 2 fields, the header has 1 (fields separated by")


def test_drop_and_features_choose_the_columns(tmp_path: Path) -> None:
    lines = ["id,a,b,colour,kind"]
    lines += [f"{i},{i % 5},{i % 7},{'rgb'[i % 3]},{'xy'[i % 2]}" for i in range(20)]
    data = write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    everything = load(data, "kind", 50)
    assert everything.numeric_names == ["id", "a", "b"]
    assert any("'id' looks like a row number" in note for note in everything.notes)
    dropped = load(data, "kind", 50, drop=["id", "colour"])
    assert dropped.numeric_names == ["a", "b"]
    assert dropped.categorical_names == []
    assert dropped.dropped == ["id", "colour"]
    assert dropped.notes == []
    chosen = load(data, "kind", 50, features=["colour", "a"])
    assert chosen.numeric_names == ["a"]
    assert chosen.categorical_names == ["colour"]
    assert chosen.dropped == ["id", "b"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--drop", "nope"], "--drop: no column 'nope'; the columns are: 'id', 'a', 'kind'"),
        (["--drop", "kind"], "--drop: 'kind' is the target column"),
        (["--features", "a,nope"], "--features: no column 'nope'"),
        (["--drop", "id,a"], "has no column besides the target 'kind' to learn from"),
        (["--drop", "id", "--features", "a"], "not allowed with argument --drop"),
        (["--drop", "a,,b"], "must be column names separated by commas"),
        (["--sep", ";;"], "must be one character such as ';' or tab"),
        (["--impute", "zero"], "invalid choice: 'zero'"),
    ],
)
def test_bad_column_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], message: str
) -> None:
    data = write(tmp_path / "d.csv", "id,a,kind\n1,2,x\n2,3,y\n3,4,x\n4,5,y\n")
    assert_usage_error(capsys, ["compare", str(data), "--target", "kind", *extra], message)


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ("a,kind\n1,x\n2,NA\n3,y\n", "target column 'kind' is missing on 1 row (first on line 3"),
        ("a,b,kind\n1,,x\n2,,y\n", "column 'b' has no values, only missing ones; --drop b"),
        ("a,,kind\n1,2,x\n2,3,y\n", "column 2 has no name in the header"),
    ],
)
def test_bad_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, contents: str, message: str
) -> None:
    data = write(tmp_path / "d.csv", contents)
    assert_usage_error(capsys, ["compare", str(data), "--target", "kind"], message)


def test_a_delimiter_at_the_end_of_every_line(tmp_path: Path) -> None:
    data = write(tmp_path / "d.csv", "a,kind,\n1,x,\n2,y,\n3,x,\n")
    table = load(data, "kind", 50)
    assert table.numeric_names == ["a"]


def test_a_mostly_numeric_column_read_as_categories_gets_a_note(tmp_path: Path) -> None:
    rows = [f"{'?' if i == 4 else i % 9},{'xy'[i % 2]}" for i in range(20)]
    table = load(write(tmp_path / "d.csv", "a,kind\n" + "\n".join(rows) + "\n"), "kind", 50)
    assert table.categorical_names == ["a"]
    assert table.notes == [
        "column 'a' is read as categories: 19 of its values are numbers, but not '?' (line 6); "
        "if that means missing, make it empty"
    ]


def test_compare_imputes_and_reports_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = ["id;a;colour;kind"]
    for i in range(36):
        a = "NA" if i % 9 == 0 else str(i % 5)
        colour = "" if i % 11 == 0 else "rgb"[i % 3]
        lines.append(f"{i};{a};{colour};{'xy'[i % 3 > 0]}")
    data = write(tmp_path / "d.csv", "\n".join(lines) + "\n")
    out = tmp_path / "o"
    argv = ["compare", str(data), "--target", "kind", "--seeds", "1", "--epochs", "1"]
    code, _, err = run_cli(capsys, *argv, "--drop", "id", "--impute", "median", "--out", str(out))
    assert code == 0, err
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "missing values (a 4, colour 4) filled from each training split" in text
    assert "numbers with the median" in text
    assert "left out: id" in text
    assert "fields separated by ';'" in text
    assert "4 inputs to the model" in text  # a, and colour one-hot encoded in 3
