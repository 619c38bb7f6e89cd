"""The files the ``focalkit`` commands read and write; every way they can fail is a ``UsageError``.

``demo`` and ``compare`` write ``report.md`` and three figures into their ``--out`` folder,
``curves`` one image. Each command checks its output before it trains or draws: the folder is
made (or found) and a file is created in it and removed, so that an unwritable place fails now,
not after training. A file that is already there is not replaced unless the command is given
``--force``; the files are then created with ``open(..., "xb")``, so a file that appears meanwhile
is not replaced either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from focalkit.cli.arguments import UsageError


def read_text(path: Path, option: str, kind: str, hint: str = "") -> str:
    """The text of the input file ``path`` (UTF-8; a byte-order mark is dropped).

    ``option`` (such as ``"--labels"``, or ``""``) starts each message, ``kind`` says what the file
    should be (``"a CSV file"``), ``hint`` is added to the message for text that is not UTF-8.
    """
    where = f"{option}: " if option else ""
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            return file.read()
    except FileNotFoundError:
        raise UsageError(f"{where}{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{where}{path} is a directory, not {kind}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{where}{path} is not UTF-8 text{hint}") from None
    except OSError as error:
        raise UsageError(f"{where}cannot read {path}: {error.strerror}") from None


def _check_parents(path: Path) -> None:
    """The nearest of ``path``'s parents that exists must be a folder."""
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                what = "a file" if parent.is_file() else "not a folder"
                raise UsageError(f"--out: {parent} is {what}, so {path} cannot be made")
            return


def _make_writable_folder(folder: Path) -> None:
    """Make ``folder`` if it is missing, then create a file in it and remove it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out: cannot make the folder {folder}: {error.strerror}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".focalkit-"):
            pass
    except OSError as error:
        raise UsageError(f"--out: cannot write in {folder}: {error.strerror}") from None


@contextlib.contextmanager
def _as_usage_error(out: Path) -> Iterator[None]:
    """An ``OSError`` while looking at ``out`` (a name too long, a loop of links) as one line."""
    try:
        yield
    except OSError as error:
        raise UsageError(f"--out: {out}: {error.strerror}") from None


def check_folder(out: Path, names: Sequence[str], force: bool) -> None:
    """Before training: ``out`` is, or is made, a writable folder without any of ``names``.

    With ``force``, the files ``names`` that are there must be files that can be replaced.
    """
    with _as_usage_error(out):
        _check_folder(out, names, force)


def _check_folder(out: Path, names: Sequence[str], force: bool) -> None:
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"--out: {out} is a file; give a folder for report.md and the figures")
    _check_parents(out)
    taken = [name for name in names if os.path.lexists(out / name)]
    for name in taken:
        path = out / name
        if path.is_dir():
            raise UsageError(f"--out: {path} is a directory; focalkit writes a file there")
        if force and not os.access(path, os.W_OK):
            raise UsageError(f"--out: cannot replace {path}: it is read-only")
    if taken and not force:
        raise UsageError(
            f"--out: {out} already holds {', '.join(taken)}; pass --force to replace "
            f"{'it' if len(taken) == 1 else 'them'}, or choose another --out"
        )
    _make_writable_folder(out)


def check_file(out: Path, force: bool) -> None:
    """Before drawing: the image ``out`` can be written, in a folder made if missing."""
    with _as_usage_error(out):
        _check_file(out, force)


def _check_file(out: Path, force: bool) -> None:
    if out.is_dir():
        raise UsageError(f"--out: {out} is a directory; give a file name such as curves.png")
    _check_parents(out)
    if os.path.lexists(out):
        if not force:
            raise UsageError(f"--out: {out} already exists; pass --force to replace it")
        if not os.access(out, os.W_OK):
            raise UsageError(f"--out: cannot replace {out}: it is read-only")
    _make_writable_folder(out.parent)


def create(path: Path, force: bool) -> BinaryIO:
    """``path`` opened for writing; without ``force``, only if it is not there yet."""
    try:
        return path.open("wb" if force else "xb")
    except FileExistsError:
        raise UsageError(f"--out: {path} already exists; pass --force to replace it") from None
    except OSError as error:
        raise UsageError(f"--out: cannot write {path}: {error.strerror}") from None
