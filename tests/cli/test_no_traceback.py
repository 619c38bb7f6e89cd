"""Bad paths and out-of-range numbers end in a one-line message, never a traceback.

Where a command trains, the output is checked first: training is replaced by a stand-in that
fails the test, so a check that came after training would show.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_checks import assert_usage_error, command, no_training, run_cli, small_csv

from focalkit.cli import report
from focalkit.cli.curves import FORMATS

INT64_MAX = 2**63 - 1

# The first bytes of each image format curves offers.
SIGNATURES = {
    "png": b"\x89PNG",
    "pdf": b"%PDF",
    "svg": b"<?xml",
    "eps": b"%!PS",
    "jpg": b"\xff\xd8\xff",
    "jpeg": b"\xff\xd8\xff",
    "webp": b"RIFF",
}


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder in which nothing can be created, even by root (who may write anywhere but sysfs)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    try:
        (folder / "focalkit-probe").mkdir()
    except OSError:
        yield folder
    else:  # pragma: no cover
        (folder / "focalkit-probe").rmdir()
        pytest.skip("no unwritable folder for root here: /sys accepts new folders")


@pytest.fixture
def unreadable_file(tmp_path: Path) -> Path:
    """A file that exists and cannot be read (PermissionError), even by root."""
    if os.geteuid() != 0:
        path = tmp_path / "secret.txt"
        path.write_text("0 1\n")
        path.chmod(0)
        return path
    path = Path("/proc/sys/vm/drop_caches")  # mode 0200: write-only, for root too
    try:
        path.read_bytes()
    except PermissionError:
        return path
    pytest.skip(f"no unreadable file for root here: {path} can be read")  # pragma: no cover


def test_curves_out_under_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "x.png"
    assert_usage_error(capsys, ["curves", "--out", str(out)], f"{tmp_path / 'afile'} is a file")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("name", ["demo", "compare"])
def test_report_folder_under_a_file_is_refused_before_training(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = small_csv(tmp_path / "data.csv")
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub"
    assert_usage_error(capsys, command(name, data, str(out)), f"{tmp_path / 'afile'} is a file")


@pytest.mark.parametrize("name", ["demo", "compare", "curves"])
def test_an_unwritable_out_is_refused_before_training(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    unwritable_folder: Path,
    name: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = small_csv(tmp_path / "data.csv")
    out = unwritable_folder / "focalkit-out"
    argv = (
        ["curves", "--out", str(out / "c.png")]
        if name == "curves"
        else command(name, data, str(out))
    )
    assert_usage_error(capsys, argv, f"--out: cannot make the folder {out}")
    assert not out.exists()


def test_a_non_utf8_file_name_on_an_ascii_terminal(tmp_path: Path) -> None:
    """The program as run from a shell: a file name that is not UTF-8, stdout in ASCII."""
    name = os.fsencode(tmp_path) + b"/donn\xe9es.csv"
    small_csv(Path(os.fsdecode(name)))
    out = os.fsencode(tmp_path) + b"/r\xe9sultats"
    argv = [b"compare", name, b"--target", b"kind", b"--seeds", b"2", b"--epochs", b"1"]
    result = subprocess.run(
        [sys.executable, "-m", "focalkit", *argv, b"--out", out],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        check=False,
    )
    stdout, stderr = result.stdout.decode("ascii"), result.stderr.decode("ascii")
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert " +/- " in stdout  # the table's "±"
    assert "donn\\xe9es.csv" in stdout
    report_text = Path(os.fsdecode(out + b"/report.md")).read_text(encoding="utf-8")
    assert "donn\\xe9es.csv" in report_text
    assert " ± " in report_text


def test_demo_on_an_ascii_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    argv = ["demo", "--seeds", "2", "--epochs", "1", "--out", str(tmp_path / "r")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    stdout.seek(0)
    printed = stdout.read()
    assert "cross-entropy" in printed
    assert " +/- " in printed
    assert "±" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert stdout.errors == "strict"  # the stream is left as it was


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["weights", str(INT64_MAX + 1)], "counts must be at most 9223372036854775807"),
        (["weights", "1", "9" * 40], "counts must be at most 9223372036854775807"),
        (["weights", "--labels", "x", "--num-classes", "99999999999999999"], "at most 10000000"),
        (["curves", "--out", "c.pgf"], "cannot write the image format of 'c.pgf'"),
        (["curves", "--out", "c.raw"], "end it with .png, .pdf, .svg"),
    ],
)
def test_out_of_range_arguments(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_usage_error(capsys, argv, message)
    assert list(tmp_path.iterdir()) == []


def test_weights_accepts_counts_up_to_int64(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "weights", "1", str(INT64_MAX), "--json")
    assert code == 0, err
    assert json.loads(out)["counts"] == [1, INT64_MAX]


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ("0 1 99999999999999999999", "label 3 is 99999999999999999999; focalkit weights counts"),
        ("0 3000000000", "label 2 is 3000000000; focalkit weights counts classes 0 to 9999999"),
    ],
)
def test_labels_beyond_the_largest_class_count(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, contents: str, message: str
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text(contents)
    assert_usage_error(capsys, ["weights", "--labels", str(labels)], message)


@pytest.mark.parametrize("extension", FORMATS)
def test_every_offered_format_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extension: str
) -> None:
    out = tmp_path / f"c.{extension}"
    code, _, err = run_cli(capsys, "curves", "--gammas", "0", "--out", str(out))
    assert code == 0, err
    assert out.read_bytes().startswith(SIGNATURES[extension])


def test_unreadable_input_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, unreadable_file: Path
) -> None:
    assert_usage_error(
        capsys,
        ["weights", "--labels", str(unreadable_file)],
        f"--labels: cannot read {unreadable_file}: Permission denied",
    )
    argv = ["compare", str(unreadable_file), "--target", "kind", "--out", str(tmp_path / "o")]
    assert_usage_error(capsys, argv, f"cannot read {unreadable_file}: Permission denied")
    (tmp_path / "afile").write_text("x")
    under_a_file = str(tmp_path / "afile" / "data.csv")
    assert_usage_error(
        capsys, ["weights", "--labels", under_a_file], f"cannot read {under_a_file}: Not a dir"
    )
    argv = ["compare", under_a_file, "--target", "kind", "--out", str(tmp_path / "o")]
    assert_usage_error(capsys, argv, f"cannot read {under_a_file}: Not a directory")
    assert not (tmp_path / "o").exists()
