"""The ``focalkit`` command (``pip install "focalkit[cli]"``): see on real data what each loss does.

``focalkit demo`` compares the losses on a long-tailed version of scikit-learn's digits,
``focalkit compare DATA.csv --target COLUMN`` does the same on your own table, ``focalkit curves``
draws focal loss against p_t (Lin et al., Figure 1), and ``focalkit weights`` prints class weights.
``python -m focalkit`` is the same program. Each command is a module here with ``add_parser`` and
``run``; a bad argument exits with code 2 and one line on stderr.

What is printed survives any terminal: where a character cannot be encoded (the tables' "±" on
an ASCII terminal, a file name that is not UTF-8) an ASCII stand-in or escape is printed instead.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import sys
from collections.abc import Iterator, Sequence

from focalkit.cli import arguments, compare, curves, demo, weights

__all__ = ["main"]

DESCRIPTION = (
    "See on real data what each focal loss does: focalkit demo compares the losses on a "
    "long-tailed version of scikit-learn's digits, focalkit compare on your own CSV file; "
    "focalkit curves draws focal loss against p_t, focalkit weights prints class weights."
)

# Modules of the cli extra, and the package that provides each.
_EXTRA = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "rich": "rich", "torch": "torch"}


def parser() -> arguments.ArgumentParser:
    """The ``focalkit`` argument parser, with one sub-command per module."""
    from focalkit import __version__

    main_parser = arguments.ArgumentParser(
        prog="focalkit",
        description=DESCRIPTION,
        epilog=(
            "examples:\n"
            "  focalkit demo\n"
            "  focalkit compare data.csv --target label\n"
            "  focalkit curves --gammas 0,0.5,1,2,5 --out curves.png\n"
            "  focalkit weights 100 200 50 10 --method inverse --normalize sum\n\n"
            "'focalkit COMMAND --help' describes each command."
        ),
        formatter_class=arguments.HelpFormatter,
    )
    main_parser.add_argument("--version", action="version", version=f"focalkit {__version__}")
    commands = main_parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    for module in (demo, compare, curves, weights):
        module.add_parser(commands)
    return main_parser


# ASCII stand-ins for the characters the tables and the progress bar print (rich's "…" too).
_ASCII = {"±": "+/-", "·": "-", "…": "..."}
_ERRORS = "focalkit.printable"


def _printable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: an ASCII stand-in, ``\\xNN`` for a byte of a non-UTF-8 file name."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    replaced = []
    for char in error.object[error.start : error.end]:
        if char in _ASCII:
            replaced.append(_ASCII[char])
        elif (
            0xDC80 <= ord(char) <= 0xDCFF
        ):  # os.fsdecode's stand-in for the byte ord(char) - 0xDC00
            replaced.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            replaced.append(char.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(replaced), error.end


codecs.register_error(_ERRORS, _printable)


@contextlib.contextmanager
def _printable_streams() -> Iterator[None]:
    """stdout and stderr replace what they cannot encode (:func:`_printable`), then as before."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and not stream.closed and stream.errors != _ERRORS:
            changed.append((stream, stream.errors))
            stream.reconfigure(errors=_ERRORS)
    try:
        yield
    finally:
        for stream, errors in changed:
            if not stream.closed:
                stream.reconfigure(errors=errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``focalkit`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    argparse's own errors (and ``--help``, ``--version``) raise ``SystemExit`` as usual.
    """
    with _printable_streams():
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    args.argv = argv
    prog = f"focalkit {args.command}"
    try:
        return int(args.run(args))
    except arguments.UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file system failure no check could foresee (a full disk)
        where = f": {error.filename}" if error.filename else ""
        print(f"{prog}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        package = _EXTRA.get((error.name or "").partition(".")[0])
        if package is None:
            raise
        print(f'{prog}: error: needs {package}: pip install "focalkit[cli]"', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
