"""The transformers tests: offline (every model is built from a config), one thread, float64."""

from __future__ import annotations

import os
import pathlib
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(pathlib.Path(__file__).parent))  # `import hf_models`
