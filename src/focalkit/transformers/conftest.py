"""pytest: the doctests of focalkit.transformers need transformers; without it they are skipped."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the examples build their models from configs

try:
    import transformers  # noqa: F401
except ImportError:
    collect_ignore = ["__init__.py", "losses.py", "models.py", "trainer.py"]
