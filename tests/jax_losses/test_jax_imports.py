"""`import focalkit` never imports JAX; focalkit.jax loads it on first use or says how to."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# A finder that makes `import jax` fail as it does where JAX is not installed.
_WITHOUT_JAX = """
import sys
class _NoJax:
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith(("jax.", "jaxlib")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoJax())
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def test_import_focalkit_does_not_import_jax():
    result = _run("import sys, focalkit, focalkit.jax; print('jax' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_first_use_imports_jax():
    pytest.importorskip("jax")
    code = "import sys; from focalkit.jax import sigmoid_focal_loss; print('jax' in sys.modules)"
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_without_jax_the_error_says_how_to_install_it():
    code = _WITHOUT_JAX + "from focalkit.jax import softmax_focal_loss"
    result = _run(code)
    assert result.returncode == 1
    assert 'ImportError: focalkit.jax needs JAX: pip install "focalkit[jax]"' in result.stderr


def test_without_jax_pytest_collects_no_jax_doctests():
    code = _WITHOUT_JAX + (
        "import pytest; "
        "raise SystemExit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', "
        "'src/focalkit/jax']))"
    )
    result = _run(code)
    # 5: no tests collected, and no collection error
    assert result.returncode == 5, result.stdout + result.stderr
    assert "error" not in result.stdout.lower(), result.stdout
