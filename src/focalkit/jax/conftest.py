"""pytest: the doctests of focalkit.jax need JAX; where it cannot be imported they are skipped."""

from __future__ import annotations

try:
    import jax  # noqa: F401
except ImportError:
    collect_ignore = ["losses.py"]
