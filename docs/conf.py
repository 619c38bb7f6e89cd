"""Sphinx configuration: the reference of every public name, from the docstrings.

``make docs`` builds it into docs/_build/html; ``make test`` builds it with warnings as errors.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

os.environ.setdefault("KERAS_BACKEND", "torch")  # focalkit.keras imports keras; torch is here

import focalkit

project = "focalkit"
author = "The focalkit authors"
copyright = "The focalkit authors"
release = focalkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# docs/ also holds the demo's report and figures, which the README shows; they are not pages here.
exclude_patterns = ["_build", "report.md", "*.png"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "Focal losses for PyTorch, Keras 3, XGBoost and LightGBM"}

# The docstrings are Google style ("Args:", "Returns:", "Example:") with RST math.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = ["Shape"]  # the "Shape:" section of torch.nn's docstrings
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": False}
autodoc_preserve_defaults = True

# Modules whose __all__ is the public API; each name must be documented (see _check_coverage).
PUBLIC_MODULES = [
    "focalkit",
    "focalkit.torch",
    "focalkit.keras",
    "focalkit.gbdt",
    "focalkit.xgboost",
    "focalkit.lightgbm",
    "focalkit.jax",
    "focalkit.dask",
    "focalkit.torch.distributed",
    "focalkit.transformers",
]


class CommandHelp(SphinxDirective):
    """``.. focalkit-help:: weights``: the ``--help`` text of a ``focalkit`` command."""

    required_arguments = 0
    optional_arguments = 1  # the command; none for the top-level help

    def run(self) -> list[nodes.Node]:
        from focalkit.cli import main

        argv = [*self.arguments, "--help"]
        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "96"  # argparse wraps the help to this width
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
                main(argv)
        finally:
            if previous is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = previous
        text = output.getvalue().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def _resolve(qualified: str) -> object:
    """The object that a dotted name documented by autodoc stands for."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            value = getattr(value, part, None)
        return value
    return None


def _check_coverage(app: Sphinx, env: Any) -> None:
    """Warn (an error under -W) for every name in a public module's __all__ left out.

    A name counts as documented under any of its public names: ``focalkit.softmax_focal_loss``
    covers ``focalkit.torch.softmax_focal_loss``.
    """
    documented = {id(_resolve(name)) for name in env.domaindata["py"]["objects"]}
    logger = logging.getLogger(__name__)
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if id(getattr(module, name)) not in documented:
                logger.warning(
                    "%s.%s is public (in __all__) but not in the reference (docs/api/)",
                    module_name,
                    name,
                )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("focalkit-help", CommandHelp)
    app.connect("env-updated", _check_coverage)
    return {"parallel_read_safe": True}
