"""Running the ``focalkit`` command in-process, and checking the files and numbers it prints."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from focalkit.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``focalkit ARGV`` in this process: exit code, stdout, stderr (argparse's exits included)."""
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """Exit code 2, and one line on stderr containing ``message``, no traceback."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (argv, out, err)
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("focalkit"), err
    assert message in err, err


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 100
    assert image.shape[1] > 100


# A table cell: "0.877 ± 0.020", "+0.017 ± 0.004 (3/3)" or, with one seed, "0.503".
CELL = re.compile(r"[+-]?\d+\.\d{3}(?: ± \d+\.\d{3})?(?: \(\d+/\d+\))?")


def printed_cells(out: str) -> list[str]:
    """Every table cell printed between rich's vertical rules."""
    cells = []
    for line in out.splitlines():
        if line.startswith("│"):
            cells += [c.strip() for c in line.strip("│").split("│") if CELL.fullmatch(c.strip())]
    return cells


def no_training(*args: object, **kwargs: object) -> None:
    """Stands in for ``report.run_with_progress`` where a command must stop before training."""
    raise AssertionError("trained before refusing the output folder")


def small_csv(path: Path) -> Path:
    """40 rows, two classes (30/10), one numeric feature."""
    rng = np.random.default_rng(1)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["x", "kind"])
        for i in range(40):
            kind = "a" if i < 30 else "b"
            writer.writerow([round(float(rng.normal(2.0 * (kind == "b"))), 3), kind])
    return path


def command(name: str, data: Path, out: str) -> list[str]:
    """``demo`` or ``compare`` on ``data`` (``small_csv``), one seed, one epoch, into ``out``."""
    argv = [name, "--seeds", "1", "--epochs", "1", "--out", out]
    return argv if name == "demo" else [*argv, str(data), "--target", "kind"]
