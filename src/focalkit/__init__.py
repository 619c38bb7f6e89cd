"""focalkit: correct, fast focal losses and class-imbalance tools.

``import focalkit`` needs only NumPy. The PyTorch losses load the first time one of their names is
used; without PyTorch installed that raises an ImportError saying how to install it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from focalkit._core.class_weights import class_counts, class_weights
from focalkit._core.long_tail import ldam_margins, logit_adjustment
from focalkit._core.validation import inputs_validated, validate_inputs

__version__ = "0.1.0"

_TORCH_NAMES = frozenset(
    {
        "asymmetric_loss",
        "binary_focal_loss",
        "distribution_focal_loss",
        "ldam_loss",
        "linear_softmax_focal_loss",
        "nll_focal_loss",
        "poly_sigmoid_focal_loss",
        "poly_softmax_focal_loss",
        "quality_focal_loss",
        "sample_dependent_gamma",
        "sigmoid_focal_loss",
        "softmax_focal_loss",
        "varifocal_loss",
        "AsymmetricLoss",
        "BinaryFocalLoss",
        "DistributionFocalLoss",
        "FocalLoss",
        "LDAMLoss",
        "LinearFocalLoss",
        "NLLFocalLoss",
        "PolyFocalLoss",
        "PolySigmoidFocalLoss",
        "QualityFocalLoss",
        "SigmoidFocalLoss",
        "VarifocalLoss",
    }
)

__all__ = [
    "AsymmetricLoss",
    "BinaryFocalLoss",
    "DistributionFocalLoss",
    "FocalLoss",
    "LDAMLoss",
    "LinearFocalLoss",
    "NLLFocalLoss",
    "PolyFocalLoss",
    "PolySigmoidFocalLoss",
    "QualityFocalLoss",
    "SigmoidFocalLoss",
    "VarifocalLoss",
    "asymmetric_loss",
    "binary_focal_loss",
    "class_counts",
    "class_weights",
    "distribution_focal_loss",
    "inputs_validated",
    "ldam_loss",
    "ldam_margins",
    "linear_softmax_focal_loss",
    "logit_adjustment",
    "nll_focal_loss",
    "poly_sigmoid_focal_loss",
    "poly_softmax_focal_loss",
    "quality_focal_loss",
    "sample_dependent_gamma",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "validate_inputs",
    "varifocal_loss",
]

if TYPE_CHECKING:
    from focalkit.torch import (
        AsymmetricLoss,
        BinaryFocalLoss,
        DistributionFocalLoss,
        FocalLoss,
        LDAMLoss,
        LinearFocalLoss,
        NLLFocalLoss,
        PolyFocalLoss,
        PolySigmoidFocalLoss,
        QualityFocalLoss,
        SigmoidFocalLoss,
        VarifocalLoss,
        asymmetric_loss,
        binary_focal_loss,
        distribution_focal_loss,
        ldam_loss,
        linear_softmax_focal_loss,
        nll_focal_loss,
        poly_sigmoid_focal_loss,
        poly_softmax_focal_loss,
        quality_focal_loss,
        sample_dependent_gamma,
        sigmoid_focal_loss,
        softmax_focal_loss,
        varifocal_loss,
    )


def _import_torch_frontend() -> Any:
    try:
        return importlib.import_module("focalkit.torch")
    except ModuleNotFoundError as error:
        if error.name == "torch":
            raise ImportError(
                'focalkit\'s PyTorch losses need PyTorch: pip install "focalkit[torch]"'
            ) from error
        raise


def __getattr__(name: str) -> Any:  # PEP 562: torch loads on first use of a torch name
    if name in _TORCH_NAMES:
        value = getattr(_import_torch_frontend(), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'focalkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _TORCH_NAMES)
