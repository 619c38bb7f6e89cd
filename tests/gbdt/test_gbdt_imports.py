"""The gradient-boosting modules import and work where torch cannot be imported."""

from __future__ import annotations

import subprocess
import sys


def test_gbdt_modules_do_not_import_torch():
    script = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import focalkit.gbdt, focalkit.xgboost, focalkit.lightgbm\n"
        "print(focalkit.gbdt.binary_focal_grad_hess([0.0], [1])[0][0])\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
