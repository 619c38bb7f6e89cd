"""``focalkit`` and ``python -m focalkit``: one program, with help and examples everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_checks import run_cli

COMMANDS = ["demo", "compare", "curves", "weights"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_has_examples(capsys: pytest.CaptureFixture[str], command: str | None) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    assert "examples:" in stdout
    expected = "focalkit demo" if command is None else f"usage: focalkit {command}"
    assert expected in stdout


def test_python_dash_m_is_the_same_program(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["weights", "100", "200", "50", "10", "--json"]
    module = subprocess.run(
        [sys.executable, "-m", "focalkit", *argv], capture_output=True, text=True, check=False
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout == run_cli(capsys, *argv)[1]
    bad = subprocess.run(
        [sys.executable, "-m", "focalkit", "demo", "--seeds", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "focalkit demo: error: argument --seeds: must be an integer >= 1, got '0' "
        "(see 'focalkit demo --help')\n"
    )
    assert bad.stdout == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import focalkit

    code, stdout, _ = run_cli(capsys, "--version")
    assert code == 0
    assert stdout.strip() == f"focalkit {focalkit.__version__}"


def test_a_missing_extra_says_how_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich now raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "rich.console", None)
    code, _, stderr = run_cli(capsys, "weights", "1", "2")
    assert code == 1
    assert stderr == 'focalkit weights: error: needs rich: pip install "focalkit[cli]"\n'
