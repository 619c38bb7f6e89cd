"""``focalkit demo`` end to end with small settings, and the long-tailed split it trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_png, assert_usage_error, printed_cells, run_cli
from sklearn.datasets import load_digits

from focalkit.cli.demo import TEST_PER_CLASS, digits_split, long_tailed_counts
from focalkit.cli.report import FIGURES
from focalkit.cli.training import LOSS_NAMES


def test_demo_writes_the_report_and_figures_with_the_printed_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code, stdout, _ = run_cli(capsys, "demo", "--seeds", "2", "--epochs", "2", "--out", str(out))
    assert code == 0
    for name in FIGURES:
        assert_png(out / name)
    report = (out / "report.md").read_text(encoding="utf-8")
    cells = printed_cells(stdout)
    # 5 losses x 5 metrics, then 4 losses x 5 differences from cross-entropy.
    assert len(cells) == 25 + 20, stdout
    assert all(" ± " in cell for cell in cells)
    for name in LOSS_NAMES:
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
        printed = next(line for line in stdout.splitlines() if line.startswith(f"│ {name} "))
        assert [c.strip() for c in row.strip("|").split("|")[1:]] == printed_cells(printed)
    for cell in cells:
        assert cell in report
    assert "Made by `focalkit demo --seeds 2 --epochs 2 --out" in report
    assert "Seeds: 0, 1." in report
    for library in ("torch", "numpy", "scikit-learn", "matplotlib", "focalkit"):
        assert f"- {library} " in report
    for figure in FIGURES:
        assert f"({figure})" in report


def test_one_seed_prints_means_and_claims_no_spread(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, stdout, _ = run_cli(
        capsys, "demo", "--seeds", "1", "--epochs", "1", "--imbalance", "10", "--out", str(tmp_path)
    )
    assert code == 0
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "with one seed there is no spread to judge the gap by" in report
    assert all(cell in report for cell in printed_cells(stdout))
    assert "imbalance factor 10 requested" in report


def test_long_tailed_counts_follow_an_exponential_profile() -> None:
    available = np.array([140, 142, 137, 143, 141, 142, 141, 139, 134, 140])
    counts = long_tailed_counts(available, 50.0)
    assert np.all(counts <= available)
    assert np.all(np.diff(counts) <= 0)
    ratios = counts[:-1] / counts[1:]
    assert counts[0] / counts[-1] == pytest.approx(50, rel=0.15)  # rounding of the smallest
    assert np.median(ratios) == pytest.approx(50 ** (1 / 9), rel=0.05)
    assert long_tailed_counts(available, 1.0).tolist() == [134] * 10


def test_digits_split_has_a_balanced_test_set_and_a_long_tailed_training_set() -> None:
    features, labels = load_digits(return_X_y=True)
    split = digits_split(features, labels.astype(np.int64), 50.0, seed=0)
    assert np.bincount(split.y_test).tolist() == [TEST_PER_CLASS] * 10
    counts = np.bincount(split.y_train, minlength=10)
    assert counts[0] / counts[9] > 40
    assert np.all(np.diff(counts) <= 0)
    assert split.x_train.dtype == np.float32
    np.testing.assert_allclose(split.x_train.mean(0), 0, atol=1e-5)
    other = digits_split(features, labels.astype(np.int64), 50.0, seed=1)
    assert not np.array_equal(split.x_test, other.x_test)  # each seed draws its own split


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--seeds", "0"], "argument --seeds: must be an integer >= 1, got '0'"),
        (["demo", "--seeds", "two"], "argument --seeds: must be an integer >= 1, got 'two'"),
        (["demo", "--epochs", "-3"], "argument --epochs: must be an integer >= 1"),
        (["demo", "--imbalance", "0.5"], "argument --imbalance: must be a number >= 1"),
        (["demo", "--imbalance", "nan"], "argument --imbalance: must be a number >= 1"),
        (["demo", "--beta", "1"], "argument --beta: must be a number in [0, 1), got '1'"),
        (["demo", "--beta", "-0.1"], "argument --beta: must be a number in [0, 1)"),
        (["demo", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        ([], "the following arguments are required: COMMAND"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert_usage_error(capsys, argv, message)


def test_out_that_is_a_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "taken"
    file.write_text("x")
    assert_usage_error(
        capsys, ["demo", "--seeds", "1", "--epochs", "1", "--out", str(file)], "is a file"
    )


def test_findings_name_no_winner_the_seeds_do_not_separate() -> None:
    from focalkit.cli.metrics import Metrics
    from focalkit.cli.report import LossSummary, findings
    from focalkit.cli.training import Comparison, Settings

    def summary(name: str, accuracies: list[float]) -> LossSummary:
        metrics = [Metrics(a, a, a, 0.1, 0.5) for a in accuracies]
        return LossSummary(name, metrics, np.zeros((len(accuracies), 2)))

    comparison = Comparison(["a", "b"], [1], [0, 1, 2], {}, {}, {}, Settings(), [])
    summaries = [summary("first", [0.80, 0.90, 0.70]), summary("second", [0.81, 0.88, 0.72])]
    lines = findings(comparison, summaries)
    assert lines[0] == (
        "**balanced accuracy**: highest mean for second (0.803 ± 0.080), next first "
        "(0.800 ± 0.100); on the same seed second is ahead on 2 of 3 seeds "
        "(difference +0.003 ± 0.021), so these runs do not separate them."
    )
    summaries = [summary("first", [0.80, 0.90, 0.70]), summary("second", [0.85, 0.95, 0.75])]
    assert findings(comparison, summaries)[1] == (
        "**macro-F1**: highest mean for second (0.850 ± 0.100), next first (0.800 ± 0.100); "
        "on the same seed second is ahead on all 3 seeds (difference +0.050 ± 0.000)."
    )
    tied = findings(comparison, [summary("first", [0.5] * 3), summary("second", [0.5] * 3)])
    assert tied[0].startswith("**balanced accuracy**: first (0.500 ± 0.000) and second")
    assert "share the highest mean to three decimals" in tied[0]
    assert "ahead on 0 of 3 seeds" in tied[0]
    assert "share the lowest mean to three decimals" in tied[3]
