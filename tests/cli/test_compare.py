"""``focalkit compare`` end to end on a small CSV file, and each bad input's message."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_png, assert_usage_error, printed_cells, run_cli

from focalkit.cli.compare import load, split
from focalkit.cli.report import FIGURES


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """120 rows, 3 imbalanced classes (80/30/10), two numeric and one categorical feature."""
    rng = np.random.default_rng(0)
    labels = ["common"] * 80 + ["middle"] * 30 + ["rare"] * 10
    centres = {"common": 0.0, "middle": 2.0, "rare": 4.0}
    rows: list[list[object]] = [
        [
            round(float(rng.normal(centres[label])), 4),
            round(float(rng.normal(10.0, 5.0)), 4),
            ["red", "green", "blue"][i % 3],
            label,
        ]
        for i, label in enumerate(labels)
    ]
    return write_csv(tmp_path / "data.csv", ["x", "noise", "colour", "kind"], rows)


def test_compare_writes_the_report_and_figures_with_the_printed_numbers(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        capsys, "compare", str(data), "--target", "kind", "--seeds", "2", "--epochs", "3",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0
    for name in FIGURES:
        assert_png(out / name)
    report = (out / "report.md").read_text(encoding="utf-8")
    cells = printed_cells(stdout)
    assert len(cells) == 45
    assert all(cell in report for cell in cells)
    assert "recall, rarest (middle, rare)" in report
    assert "120 rows" in report
    assert "3 classes" in report
    assert "1 categorical, one-hot encoded (colour)" in report
    assert "common: 80, middle: 30, rare: 10" in report


def test_load_standardises_numbers_and_one_hot_encodes_the_rest(data: Path) -> None:
    table = load(data, "kind", max_categories=50)
    assert table.numeric_names == ["x", "noise"]
    assert table.categorical_names == ["colour"]
    assert table.class_names == ["common", "middle", "rare"]
    assert np.bincount(table.labels).tolist() == [80, 30, 10]
    first = split(table, 0.25, seed=0)
    assert first.x_train.shape == (90, 2 + 3)
    assert first.x_test.shape == (30, 5)
    np.testing.assert_allclose(first.x_train[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(first.x_train[:, 2:].sum(1), 1)  # one-hot
    assert np.bincount(first.y_test).tolist() == [20, 8, 2]  # stratified


def test_numeric_class_names_sort_as_numbers(tmp_path: Path) -> None:
    rows = [[i, str(c)] for i, c in enumerate([10, 2, 2, 10, 1, 1])]
    table = load(write_csv(tmp_path / "n.csv", ["x", "y"], rows), "y", 50)
    assert table.class_names == ["1", "2", "10"]


@pytest.mark.parametrize(
    ("contents", "argv_extra", "message"),
    [
        (None, [], "no such file"),
        ("", [], "is empty"),
        ("a,kind\n", [], "has a header but no rows"),
        ("a,b\n1,x\n2,y\n", [], "no column 'kind' in"),
        ("a,kind\n1,x\n2,x\n3,x\n", [], "has one class ('x') in all 3 rows"),
        ("a,kind\n1,x\n2,x\n3,y\n", [], "class 'y' of column 'kind' has 1 row"),
        ("a,kind\n1,x\n,x\n3,y\n4,y\n", [], "column 'a' has 1 missing value (first '' on line 3)"),
        ("a,kind\n1,x\n2\n", [], "line 3 has 1 fields, the header has 2"),
        ("kind\nx\ny\n", [], "has no column besides the target 'kind' to learn from"),
        ("a,a,kind\n1,2,x\n", [], "names 'a' more than once"),
        (
            "name,kind\n" + "".join(f"id{i},{'xy'[i % 2]}\n" for i in range(8)),
            ["--max-categories", "5"],
            "column 'name' is not numeric (e.g. 'id0' on line 2) and has 8 distinct values",
        ),
        ("a,kind\n1,x\n2,x\n3,y\n4,y\n", ["--test-size", "0.9"], "cannot make a stratified split"),
    ],
)
def test_bad_data_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    contents: str | None,
    argv_extra: list[str],
    message: str,
) -> None:
    path = tmp_path / "bad.csv"
    if contents is not None:
        path.write_text(contents, encoding="utf-8")
    argv = ["compare", str(path), "--target", "kind", "--out", str(tmp_path / "out"), *argv_extra]
    assert_usage_error(capsys, argv, message)
    assert not (tmp_path / "out").exists()


def test_non_utf8_and_directory_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,kind\n1,caf\xe9\n".encode("latin-1"))
    assert_usage_error(capsys, ["compare", str(path), "--target", "kind"], "is not UTF-8 text")
    assert_usage_error(capsys, ["compare", str(tmp_path), "--target", "kind"], "is a directory")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "x.csv"], "the following arguments are required: --target"),
        (["compare", "--target", "y"], "the following arguments are required: DATA.csv"),
        (["compare", "x.csv", "--target", "y", "--test-size", "1"], "must be a number in (0, 1)"),
        (["compare", "x.csv", "--target", "y", "--max-categories", "0"], "must be an integer >= 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert_usage_error(capsys, argv, message)
