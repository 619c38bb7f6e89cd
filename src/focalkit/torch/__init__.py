"""focalkit's PyTorch front-end: the loss functions and their ``nn.Module`` wrappers."""

from focalkit.torch.functional import (
    binary_focal_loss,
    ldam_loss,
    linear_softmax_focal_loss,
    nll_focal_loss,
    poly_sigmoid_focal_loss,
    poly_softmax_focal_loss,
    sample_dependent_gamma,
    sigmoid_focal_loss,
    softmax_focal_loss,
)
from focalkit.torch.modules import (
    BinaryFocalLoss,
    FocalLoss,
    LDAMLoss,
    LinearFocalLoss,
    NLLFocalLoss,
    PolyFocalLoss,
    PolySigmoidFocalLoss,
    SigmoidFocalLoss,
)

__all__ = [
    "BinaryFocalLoss",
    "FocalLoss",
    "LDAMLoss",
    "LinearFocalLoss",
    "NLLFocalLoss",
    "PolyFocalLoss",
    "PolySigmoidFocalLoss",
    "SigmoidFocalLoss",
    "binary_focal_loss",
    "ldam_loss",
    "linear_softmax_focal_loss",
    "nll_focal_loss",
    "poly_sigmoid_focal_loss",
    "poly_softmax_focal_loss",
    "sample_dependent_gamma",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
]
