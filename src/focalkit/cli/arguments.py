"""Argument types and the one-line usage error shared by the ``focalkit`` commands.

A bad argument ends the program with exit code 2 and one line on stderr,
``focalkit demo: error: argument --seeds: must be an integer >= 1, got '0'``, whether argparse
finds it or a command does later (a missing file, a column that is not there).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import NoReturn

INT64_MAX = 2**63 - 1
MAX_CLASSES = 10_000_000  # the most classes ``weights`` counts: 80 MB of int64 counts


class UsageError(Exception):
    """A bad argument found after parsing; ``main`` prints it on one line and returns 2."""


def shown(text: str) -> str:
    r"""``text`` as it can be printed or saved: a byte of a file name that is not UTF-8 as ``\xe9``.

    Example:
        >>> shown("donn\udce9es.csv")
        'donn\\xe9es.csv'
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with its error on one line (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of the examples in each command's epilog."""


def positive_int(text: str) -> int:
    """An integer >= 1 (``--seeds``, ``--epochs``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def count(text: str) -> int:
    """A class count: an integer >= 0 that fits in int64."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"counts must be integers >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"counts must be integers >= 0, got {text!r}")
    if value > INT64_MAX:
        raise argparse.ArgumentTypeError(
            f"counts must be at most {INT64_MAX} (the largest int64), got {text!r}"
        )
    return value


def class_count(text: str) -> int:
    """A number of classes, from 1 to ``MAX_CLASSES`` (``--num-classes``)."""
    expected = f"must be an integer >= 1 and at most {MAX_CLASSES}, got {text!r}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if not 1 <= value <= MAX_CLASSES:
        raise argparse.ArgumentTypeError(expected)
    return value


def _finite(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def imbalance(text: str) -> float:
    """An imbalance factor: the largest class's count over the smallest's, >= 1."""
    value = _finite(text, "a number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a number >= 1, got {text!r}")
    return value


def beta(text: str) -> float:
    """Cui et al.'s beta for effective-number weights, in [0, 1)."""
    value = _finite(text, "a number in [0, 1)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def open_unit_interval(text: str) -> float:
    """A fraction strictly between 0 and 1 (``--test-size``)."""
    value = _finite(text, "a number in (0, 1)")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def separator(text: str) -> str:
    """One character between fields of a CSV file (``--sep``); ``tab`` or ``\\t`` is a tab."""
    value = "\t" if text in ("tab", "\\t") else text
    if len(value) != 1 or value in '\r\n"':
        raise argparse.ArgumentTypeError(f"must be one character such as ';' or tab, got {text!r}")
    return value


def column_names(text: str) -> list[str]:
    """Comma-separated column names (``--drop``, ``--features``)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"must be column names separated by commas, got {text!r}")
    return names


def gammas(text: str) -> tuple[float, ...]:
    """A comma-separated list of gammas >= 0, such as ``0,0.5,1,2,5``."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated numbers >= 0 such as 0,0.5,1,2,5, got {text!r}"
        )
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated numbers such as 0,0.5,1,2,5; {item!r} is not a number"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"each gamma must be a number >= 0, got {item!r}")
        values.append(value)
    return tuple(values)


def input_path(text: str) -> Path:
    """A file to read: a name the file system can take (no NUL character)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty; give a file name")
    return _file_name(text)


def output_path(text: str) -> Path:
    """A file or folder to write (``--out``), not empty: ``""`` would mean the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty; give a file or folder name")
    return _file_name(text)


def _file_name(text: str) -> Path:
    try:
        valid = "\0" not in text and bool(os.fsencode(text))
    except UnicodeEncodeError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"is not a file name the system can take: {text!r}")
    return Path(text)


def add_force_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--force``: without it a command refuses to replace a file that is already there."""
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} if already there (without it, the command stops and changes nothing)",
    )


def add_run_options(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    """The options ``demo`` and ``compare`` share: losses, seeds, beta, epochs, --out, --force."""
    from focalkit.cli.training import BASELINE, DEFAULT_LOSSES, parse_losses

    parser.add_argument(
        "--losses",
        type=parse_losses,
        default=(*DEFAULT_LOSSES,),
        metavar="NAME[,NAME]",
        help=f"the losses to train, comma-separated, or all (default: the five marked * below); "
        f"{BASELINE} always runs, first: every other loss is compared with it on the same seed",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="number of seeds; seed k sets the split, initial weights and batch order "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--beta",
        type=beta,
        default=0.999,
        help="beta of the effective-number weights of class-balanced focal loss (and of "
        "LDAM-DRW's re-weighting), in [0, 1) (default: %(default)g)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=default_epochs,
        help="training epochs per run (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=output_path,
        default=Path("focalkit-report"),
        help="folder for report.md and the figures, made if missing (default: %(default)s/)",
    )
    add_force_option(parser, "report.md and the figures in --out")
