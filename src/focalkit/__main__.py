"""``python -m focalkit`` runs the ``focalkit`` command; see :mod:`focalkit.cli`."""

from __future__ import annotations

from focalkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
