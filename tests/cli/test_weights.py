"""``focalkit weights``: the table and JSON against ``focalkit.class_weights``, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_usage_error, run_cli

import focalkit


def test_table_of_seed_001s_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(
        capsys, "weights", "100", "200", "50", "10", "--method", "inverse", "--normalize", "sum"
    )
    assert code == 0
    assert "class_weights(method='inverse', normalize='sum')" in stdout
    rows = [line.strip("│ ").split("│") for line in stdout.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["0", "100", "0.0740741"],
        ["1", "200", "0.037037"],
        ["2", "50", "0.148148"],
        ["3", "10", "0.740741"],
    ]


@pytest.mark.parametrize("method", ["inverse", "inverse_sqrt", "effective_number"])
@pytest.mark.parametrize("normalize", ["sum", "mean", "balanced", "none"])
def test_json_equals_class_weights(
    capsys: pytest.CaptureFixture[str], method: str, normalize: str
) -> None:
    argv = ["weights", "7", "70", "700", "--method", method, "--normalize", normalize]
    code, stdout, _ = run_cli(capsys, *argv, "--beta", "0.99", "--json")
    assert code == 0
    result = json.loads(stdout)
    expected = focalkit.class_weights(
        [7, 70, 700],
        method,
        None if normalize == "none" else normalize,
        0.99,  # type: ignore[arg-type]
    )
    assert result["weights"] == expected.tolist()
    assert result["counts"] == [7, 70, 700]
    assert result["normalize"] == (None if normalize == "none" else normalize)
    assert ("beta" in result) == (method == "effective_number")


def test_labels_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("0 1 1\n2,2,2\n\n3\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "weights", "--labels", str(labels), "--json")
    assert code == 0
    result = json.loads(stdout)
    assert result["counts"] == [1, 2, 3, 1]
    # The command's default normalisation is the library's.
    assert result["weights"] == focalkit.class_weights([1, 2, 3, 1]).tolist()
    code, stdout, _ = run_cli(
        capsys, "weights", "--labels", str(labels), "--num-classes", "5", "--zero", "ignore",
        "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(stdout)["counts"] == [1, 2, 3, 1, 0]
    assert json.loads(stdout)["weights"][4] == 0.0


def test_zero_ignore_gives_weight_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "weights", "5", "0", "7", "--zero", "ignore", "--json")
    assert code == 0
    weights = np.array(json.loads(stdout)["weights"])
    assert weights[1] == 0
    assert weights.mean() == pytest.approx(1)  # the default: mean 1 over the classes


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["weights"], "give the count of each class"),
        (["weights", "5", "-1"], "counts must be integers >= 0, got '-1'"),
        (["weights", "5", "2.5"], "counts must be integers >= 0, got '2.5'"),
        (["weights", "5", "0", "7"], "class 1 has count 0"),
        (["weights", "0", "0"], "class 0 has count 0"),
        (["weights", "0", "0", "--zero", "ignore"], "every count is 0"),
        (["weights", "5", "7", "--method", "log"], "invalid choice: 'log'"),
        (["weights", "5", "7", "--normalize", "max"], "invalid choice: 'max'"),
        (["weights", "5", "7", "--beta", "1.5"], "must be a number in [0, 1), got '1.5'"),
        (["weights", "5", "7", "--num-classes", "3"], "--num-classes goes with --labels"),
        (["weights", "5", "--labels", "x.txt"], "give counts or --labels FILE, not both"),
        (["weights", "--labels", "missing.txt"], "--labels: missing.txt: no such file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert_usage_error(capsys, argv, message)


@pytest.mark.parametrize(
    ("contents", "extra", "message"),
    [
        ("", [], "holds no labels"),
        ("0 1 x 2", [], "label 3 is 'x', not an integer"),
        ("0 1 1.5", [], "label 3 is '1.5', not an integer"),
        ("0 -1", [], "labels must be >= 0, got -1"),
        ("0 1 4", ["--num-classes", "3"], "label 4 is outside [0, 3) for --num-classes 3"),
    ],
)
def test_bad_labels_files(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    contents: str,
    extra: list[str],
    message: str,
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text(contents, encoding="utf-8")
    assert_usage_error(capsys, ["weights", "--labels", str(labels), *extra], message)
