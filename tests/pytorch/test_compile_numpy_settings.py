"""A compiled loss takes the family's NumPy settings as they come.

``logit_adjustment`` and ``ldam_margins`` return NumPy arrays, meant to be passed straight to
``logit_offset=`` and ``margins``; under ``torch.compile(fullgraph=True)`` the argument check read
``ndarray.dtype``, which Dynamo cannot trace, so the graph broke (as it did for a NumPy ``alpha``
or ``weight``); the settings are now read through ``torch.as_tensor``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import focalkit

COUNTS = [500, 120, 40, 7]
X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
T = torch.tensor([0, 3, 2, 1, 1, 0])
OFFSET = focalkit.logit_adjustment(COUNTS)  # NumPy arrays, computed once before training
MARGINS = focalkit.ldam_margins(COUNTS)
CALLS = {
    "logit_offset": lambda v: focalkit.softmax_focal_loss(v, T, logit_offset=OFFSET),
    "margins": lambda v: focalkit.ldam_loss(v, T, MARGINS),
    "alpha": lambda v: focalkit.softmax_focal_loss(v, T, alpha=np.array([0.1, 0.2, 0.3, 0.4])),
    "weight": lambda v: focalkit.softmax_focal_loss(v, T, weight=np.array([0.5, 1.0, 2.0, 1.5])),
}


@pytest.mark.parametrize("name", CALLS)
def test_compiled_with_numpy_settings(name: str) -> None:
    call: Any = CALLS[name]
    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(X), call(X))


def test_bad_numpy_settings_are_still_type_errors() -> None:
    with pytest.raises(TypeError, match="alpha must be a tensor or a sequence of numbers"):
        focalkit.softmax_focal_loss(X, T, alpha=np.array([True, False, True, True]))
    with pytest.raises(TypeError, match="weight must be a tensor or a sequence of numbers"):
        focalkit.softmax_focal_loss(X, T, weight=np.array([1.0, None, 2.0, 1.0], dtype=object))
    with pytest.raises(TypeError, match="weight must be a tensor or a sequence of numbers"):
        focalkit.softmax_focal_loss(X, T, weight=np.ones(4, dtype=np.complex64))
