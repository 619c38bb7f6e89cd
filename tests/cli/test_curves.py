"""``focalkit curves``: the figure, the printed values against the closed form, bad arguments."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_png, assert_usage_error, run_cli

from focalkit.cli.curves import focal_curves


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_curves_match_the_closed_form(gamma: float) -> None:
    p = np.linspace(0.001, 0.999, 101)
    loss, gradient = focal_curves(p, gamma)
    np.testing.assert_allclose(loss, -((1 - p) ** gamma) * np.log(p), rtol=1e-12)
    # d/dx of -(1-p)^g log p with p = sigmoid(x): g p (1-p)^g log p - (1-p)^(g+1).
    derivative = gamma * p * (1 - p) ** gamma * np.log(p) - (1 - p) ** (gamma + 1)
    np.testing.assert_allclose(gradient, np.abs(derivative), rtol=1e-10)


def test_curves_writes_the_figure_and_prints_the_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "figures" / "curves.png"
    code, stdout, _ = run_cli(capsys, "curves", "--gammas", "0,2", "--out", str(out))
    assert code == 0
    assert_png(out)
    rows = [line for line in stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2
    # gamma=2 at p_t = 0.9: (0.1)^2 * -log 0.9 = 0.001054, a hundredth of cross-entropy.
    assert f"{0.01 * -math.log(0.9):.4g} (0.01x)" in rows[1]
    assert f"{-math.log(0.5):.4g} (1x)" in rows[0]


def test_curves_writes_svg_by_extension(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "curves.svg"
    assert run_cli(capsys, "curves", "--out", str(out))[0] == 0
    assert out.read_text(encoding="utf-8").lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["curves", "--gammas", "0,-1"], "each gamma must be a number >= 0, got '-1'"),
        (["curves", "--gammas", "0,,2"], "must be comma-separated numbers >= 0"),
        (["curves", "--gammas", ""], "must be comma-separated numbers >= 0"),
        (["curves", "--gammas", "0,two"], "'two' is not a number"),
        (["curves", "--gammas", "inf"], "each gamma must be a number >= 0, got 'inf'"),
        (["curves", "--out", "curves.foo"], "cannot write the image format of 'curves.foo'"),
        (["curves", "--out", "curves"], "cannot tell the image format of 'curves'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert_usage_error(capsys, argv, message)


def test_out_that_is_a_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "a.png"
    folder.mkdir()
    assert_usage_error(capsys, ["curves", "--out", str(folder)], "is a directory")
