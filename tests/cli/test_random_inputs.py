"""Random CSV files, output paths and counts: a report, or one line and no traceback.

Each example runs the command in this process, in a fresh folder. What must hold for any input:
the exit code is 0 (and the output is there) or 2 with one line on stderr; nothing that was there
before changes without ``--force``, and nothing is written outside the output.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cli_checks import run_cli, small_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from focalkit.cli.arguments import UsageError
from focalkit.cli.report import FIGURES, OUTPUTS
from focalkit.cli.table import load

# Each example gets its own folder; capsys is read (and so emptied) after every run.
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MISSING_TOKENS = ["", "NA", "nan", "NaN", "N/A", "null", "None", "inf", "-inf", "?", " "]
NAMES = ["a", "b", "x y", "$x$", "[/]", "caf\u00e9", "id", "kind", "1", "a,b", '"q"', "\u00b1"]


def check_outcome(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    if code != 0:
        assert code == 2, err
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("focalkit "), err
        assert ": error: " in lines[0], err


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[list[str], list[list[str]], str]:
    """A header, rows and a delimiter: numbers, categories, missing tokens, odd names."""
    rows = draw(st.integers(4, 24))
    width = draw(st.integers(1, 3))
    header = [*draw(st.lists(st.sampled_from(NAMES), min_size=width, max_size=width)), "kind"]
    columns = []
    for _ in range(width):
        kind = draw(st.sampled_from(["int", "float", "category"]))
        if kind == "int":
            values = [
                str(v) for v in draw(st.lists(st.integers(-5, 20), min_size=rows, max_size=rows))
            ]
        elif kind == "float":
            floats = st.floats(-1e3, 1e3, allow_nan=False)
            values = [f"{v:.3g}" for v in draw(st.lists(floats, min_size=rows, max_size=rows))]
        else:
            values = draw(
                st.lists(st.sampled_from(["red", "blue", "1", "x;y"]), min_size=rows, max_size=rows)
            )
        holes = draw(st.lists(st.integers(0, rows - 1), max_size=3))
        for hole in holes:
            values[hole] = draw(st.sampled_from(MISSING_TOKENS))
        columns.append(values)
    classes = draw(
        st.sampled_from(
            [["x", "y"], ["1", "1.0", "2"], ["0", "1", "2"], ["cat", "NA"], ["$a", "[/]", "\u00b1"]]
        )
    )
    target = [classes[i % len(classes)] for i in range(rows)]
    if draw(st.booleans()):
        target = [f"{draw(st.floats(0, 1)):.4f}" for _ in range(rows)]  # continuous
    table = [[column[i] for column in columns] + [target[i]] for i in range(rows)]
    return header, table, draw(st.sampled_from([",", ";", "\t", "|"]))


@SETTINGS
@given(
    data=csv_files(),
    sep=st.booleans(),
    impute=st.sampled_from([None, "median", "mean"]),
    drop_first=st.booleans(),
)
def test_random_csv_files(
    capsys: pytest.CaptureFixture[str],
    data: tuple[list[str], list[list[str]], str],
    sep: bool,
    impute: str | None,
    drop_first: bool,
) -> None:
    header, rows, delimiter = data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, delimiter=delimiter)
            writer.writerow(header)
            writer.writerows(rows)
        out = Path(folder) / "out"
        argv = ["compare", str(path), "--target", "kind", "--seeds", "1", "--epochs", "1"]
        argv += ["--out", str(out), "--test-size", "0.5"]
        argv += ["--sep", delimiter] if sep else []
        argv += ["--impute", impute] if impute else []
        argv += ["--drop", header[0]] if drop_first and header[0] != "kind" else []
        code, _, err = run_cli(capsys, *argv)
        check_outcome(code, err)
        if code == 0:
            assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
        else:
            assert not out.exists() or not any(out.iterdir())
        assert sorted(p.name for p in Path(folder).iterdir()) in (["data.csv"], ["data.csv", "out"])


PANDAS_MISSING = [
    "",
    "NA",
    "N/A",
    "n/a",
    "nan",
    "NaN",
    "-nan",
    "NULL",
    "null",
    "None",
    "#N/A",
    "<NA>",
]


@settings(SETTINGS, max_examples=50)
@given(
    columns=st.lists(
        st.lists(
            st.one_of(st.integers(0, 16), st.sampled_from(PANDAS_MISSING)), min_size=8, max_size=8
        ),
        min_size=1,
        max_size=4,
    ),
    target=st.lists(
        st.sampled_from(["1", "1.0", "01", "2", "2.00", "3e0"]), min_size=8, max_size=8
    ),
)
def test_random_numeric_columns_with_missing_values_stay_numeric(
    columns: list[list[int | str]], target: list[str]
) -> None:
    """Digits-like columns with pandas' missing markers: numeric, filled, never one-hot encoded."""
    names = [f"p{index}" for index in range(len(columns))]
    lines = [",".join([*names, "kind"])]
    lines += [
        ",".join([*(str(column[row]) for column in columns), target[row]]) for row in range(8)
    ]
    numbers = [[value for value in column if isinstance(value, int)] for column in columns]
    values = sorted({float(value) for value in target})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "digits.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        holes = {name: 8 - len(n) for name, n in zip(names, numbers, strict=True) if len(n) < 8}
        if any(not n for n in numbers) or len(values) < 2:
            with pytest.raises(UsageError):
                load(path, "kind", 50, impute="median")
            return
        table = load(path, "kind", 50, impute="median")
        assert table.numeric_names == names
        assert table.categorical_names == []
        assert table.missing == holes
        assert table.class_names == [str(int(value)) for value in values]
        assert np.count_nonzero(np.isnan(table.numeric)) == sum(holes.values())
        if holes:
            first = next(iter(holes))
            with pytest.raises(UsageError, match=f"column '{first}' has {holes[first]} missing"):
                load(path, "kind", 50)


SEGMENTS = st.sampled_from(
    ["afile", "adir", "empty", "new", "report.md", "curves.png", "x.png", "x.pgf", "a b",
     "\udce9", "n\x00ul", "." , "L" * 300]
)  # fmt: skip


def snapshot(root: Path) -> dict[Path, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@SETTINGS
@given(
    segments=st.lists(SEGMENTS, min_size=0, max_size=3),
    command=st.sampled_from(["curves", "compare"]),
    force=st.booleans(),
)
def test_random_output_paths(
    capsys: pytest.CaptureFixture[str], segments: list[str], command: str, force: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        (root / "adir").mkdir(parents=True)
        (root / "empty").mkdir()
        (root / "afile").write_bytes(b"a file")
        for name in ("report.md", "curves.png", FIGURES[0]):
            (root / "adir" / name).write_bytes(name.encode())
        data = small_csv(Path(folder) / "data.csv")
        out = "/".join([str(root), *segments]) if segments else ""
        before = snapshot(root)
        argv = ["curves", "--gammas", "0"] if command == "curves" else [
            "compare", str(data), "--target", "kind", "--seeds", "1", "--epochs", "1"
        ]  # fmt: skip
        code, _, err = run_cli(capsys, *argv, "--out", out, *(["--force"] if force else []))
        check_outcome(code, err)
        after = snapshot(root)
        outputs = {Path(out)} if command == "curves" else {Path(out) / name for name in OUTPUTS}
        for path, contents in before.items():
            assert path in after, f"{path} was removed"
            if not (force and path in outputs):
                assert after[path] == contents, f"{path} was changed"
        if code == 0:
            assert all(path.is_file() for path in outputs)
        for path in set(after) - set(before):  # only the outputs, and the folders above them
            assert path in outputs or any(path in output.parents for output in outputs), path


@settings(SETTINGS, max_examples=40)
@given(
    counts=st.lists(
        st.one_of(st.integers(-3, 10**4), st.integers(2**62, 2**70), st.sampled_from(["x", "1.5"])),
        max_size=5,
    ),
    options=st.lists(
        st.sampled_from(
            ["--json", "--zero", "ignore", "--normalize", "none", "--method", "effective_number",
             "--beta", "0.9999999999", "--num-classes", "99999999999999999"]
        ),
        max_size=3,
    ),
)  # fmt: skip
def test_random_weights_arguments(
    capsys: pytest.CaptureFixture[str], counts: list[int | str], options: list[str]
) -> None:
    code, out, err = run_cli(capsys, "weights", *map(str, counts), *options)
    check_outcome(code, err)
    if code == 0:
        assert out


@settings(SETTINGS, max_examples=40)
@given(
    labels=st.lists(
        st.one_of(
            st.integers(-2, 30), st.integers(10**7 - 2, 10**7 + 2), st.integers(2**63 - 2, 2**64)
        ),
        max_size=8,
    ),
    separator=st.sampled_from([" ", ",", "\n", "\t"]),
    num_classes=st.sampled_from([[], ["--num-classes", "5"], ["--num-classes", "10000001"]]),
)
def test_random_label_files(
    capsys: pytest.CaptureFixture[str], labels: list[int], separator: str, num_classes: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.txt"
        path.write_text(separator.join(map(str, labels)), encoding="utf-8")
        code, _, err = run_cli(capsys, "weights", "--labels", str(path), "--json", *num_classes)
        check_outcome(code, err)
