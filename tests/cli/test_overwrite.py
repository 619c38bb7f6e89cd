"""No command replaces a file that is already there unless it is given ``--force``.

``demo`` and ``compare`` check their ``--out`` folder before training; here training is replaced by
a stand-in that fails the test, so a refusal that came after training would show.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_checks import assert_png, assert_usage_error, command, no_training, run_cli, small_csv

from focalkit.cli import report
from focalkit.cli.report import FIGURES

OUTPUTS = ("report.md", *FIGURES)


@pytest.mark.parametrize("name", ["demo", "compare"])
@pytest.mark.parametrize("existing", OUTPUTS)
def test_a_report_folder_is_not_overwritten_without_force(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    existing: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = small_csv(tmp_path / "data.csv")
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_bytes(b"keep me")
    assert_usage_error(
        capsys, command(name, data, str(out)), f"{out} already holds {existing}; pass --force"
    )
    assert (out / existing).read_bytes() == b"keep me"
    assert sorted(path.name for path in out.iterdir()) == [existing]


def test_force_replaces_the_report_and_other_files_stay(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = small_csv(tmp_path / "data.csv")
    out = tmp_path / "out"
    out.mkdir()
    for name in (*OUTPUTS, "notes.txt"):
        (out / name).write_bytes(b"old")
    code, _, err = run_cli(capsys, *command("compare", data, str(out)), "--force")
    assert code == 0, err
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# focalkit compare")
    for name in FIGURES:
        assert_png(out / name)
    assert (out / "notes.txt").read_bytes() == b"old"


def test_an_empty_folder_is_used_without_force(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []

    def stop(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "run_with_progress", stop)
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated.txt").write_text("x")
    code, _, err = run_cli(capsys, *command("demo", tmp_path, str(out)))
    assert (code, calls) == (130, [1]), err


def test_curves_does_not_overwrite_an_image_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "curves.png"
    out.write_bytes(b"keep me")
    assert_usage_error(
        capsys, ["curves", "--out", str(out)], f"--out: {out} already exists; pass --force"
    )
    assert out.read_bytes() == b"keep me"
    code, _, err = run_cli(capsys, "curves", "--gammas", "0,2", "--out", str(out), "--force")
    assert code == 0, err
    assert_png(out)


@pytest.mark.parametrize("name", ["demo", "compare", "curves"])
def test_an_empty_out_is_refused(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    monkeypatch.chdir(tmp_path)
    data = small_csv(tmp_path / "data.csv")
    argv = ["curves", "--out", ""] if name == "curves" else command(name, data, "")
    assert_usage_error(capsys, argv, "argument --out: must not be empty")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.csv"]


def test_a_file_that_appears_after_the_check_is_not_replaced(tmp_path: Path) -> None:
    from focalkit.cli.arguments import UsageError
    from focalkit.cli.files import create

    path = tmp_path / "report.md"
    path.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="already exists; pass --force"):
        create(path, force=False)
    assert path.read_bytes() == b"keep me"
    with create(path, force=True) as file:
        file.write(b"new")
    assert path.read_bytes() == b"new"
