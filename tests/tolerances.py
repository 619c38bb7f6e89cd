"""One tolerance table keyed by dtype, for comparing a result with a float64 reference.

A module of its own, not ``conftest.py``: test folders with a ``conftest.py`` of their own would
shadow the name ``conftest`` for ``from conftest import ...``.
"""

from __future__ import annotations

import torch

# (rtol, atol) for comparing a result in this dtype with a float64 reference.
TOLERANCES = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.bfloat16: (1.6e-2, 1e-2),
    torch.float16: (2e-3, 1e-3),
}


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}
