"""The wheel that hatchling builds from this tree: what it carries and the metadata it declares.

The wheel is built with the build backend pyproject.toml names (hatchling, one of the test
dependencies), in a subprocess whose working directory is the project root, as pip would build it.
"""

from __future__ import annotations

import email.message
import email.parser
import pathlib
import subprocess
import sys
import zipfile

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatchling depends on tomli before Python 3.11
    import tomli as tomllib

import focalkit

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "focalkit"

_BUILD = """
import sys
import hatchling.build
print(hatchling.build.build_wheel(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-c", _BUILD, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip().splitlines()[-1]
    return zipfile.ZipFile(out / name)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (path,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(path).decode("utf-8"))


def test_wheel_carries_py_typed_and_the_license(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert "focalkit/py.typed" in names
    (license_path,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_path) == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in wheel.read(license_path)


def test_wheel_carries_every_module(wheel: zipfile.ZipFile) -> None:
    in_tree = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    in_wheel = {name for name in wheel.namelist() if name.endswith(".py")}
    assert in_tree == in_wheel


def test_version_is_written_once(wheel: zipfile.ZipFile) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert _metadata(wheel)["Version"] == focalkit.__version__


def test_metadata(wheel: zipfile.ZipFile) -> None:
    metadata = _metadata(wheel)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == project["requires-python"]
    assert set(metadata.get_all("Provides-Extra") or []) == set(project["optional-dependencies"])
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload() == (ROOT / "README.md").read_text(encoding="utf-8")
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression
    for word in ("PyTorch", "Keras 3", "XGBoost", "LightGBM", "command-line"):
        assert word in metadata["Summary"]
    requires = metadata.get_all("Requires-Dist") or []
    assert [line for line in requires if "extra ==" not in line] == ["numpy>=1.23"]  # NumPy only
