"""The files the ``focalkit`` commands write: checked before any work, never replaced unasked.

``demo`` and ``compare`` write ``report.md`` and three figures into their ``--out`` folder,
``curves`` one image. Each command checks its output before it trains or draws, and refuses to
replace a file that is already there unless it is given ``--force``; the files are then created
with ``open(..., "xb")``, so a file that appears meanwhile is not replaced either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from focalkit.cli.arguments import UsageError


def check_folder(out: Path, names: Sequence[str], force: bool) -> None:
    """Fail, before training, if ``out`` cannot be a folder or already holds one of ``names``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file; give a folder for report.md and the figures")
    if not force:
        taken = [name for name in names if os.path.lexists(out / name)]
        if taken:
            raise UsageError(
                f"--out: {out} already holds {', '.join(taken)}; pass --force to replace "
                f"{'it' if len(taken) == 1 else 'them'}, or choose another --out"
            )


def check_file(out: Path, force: bool) -> None:
    """Fail, before drawing, if the image ``out`` is a folder or already there."""
    if out.is_dir():
        raise UsageError(f"--out: {out} is a directory; give a file name such as curves.png")
    if not force and os.path.lexists(out):
        raise UsageError(f"--out: {out} already exists; pass --force to replace it")


def create(path: Path, force: bool) -> BinaryIO:
    """``path`` opened for writing; without ``force``, only if it is not there yet."""
    try:
        return path.open("wb" if force else "xb")
    except FileExistsError:
        raise UsageError(f"--out: {path} already exists; pass --force to replace it") from None
