"""The focal family, forward+backward, against the formulas people use today.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/family.py [--only NAME] [--rounds 7]

References, each as its source publishes it and run eagerly in the same process:
asymmetric_loss against timm's ``AsymmetricLossMultiLabel`` (the sum), varifocal_loss and
quality_focal_loss against mmdetection's ``varifocal_loss`` and ``quality_focal_loss`` (its
``(label, score)`` target; its dense-target form too), distribution_focal_loss against
mmdetection's two ``F.cross_entropy`` calls, and poly_softmax_focal_loss, the logit-adjusted
loss (``softmax_focal_loss(gamma=0, logit_offset=...)``) and ldam_loss against ``F.cross_entropy``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from harness import Case, fwd_bwd, main

import focalkit

# ------------------------------------------------------------------- the peers' formulas


def timm_asymmetric(
    x: torch.Tensor,
    y: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> torch.Tensor:
    """timm's AsymmetricLossMultiLabel.forward as published (it returns the sum)."""
    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt0 = xs_pos * y
        pt1 = xs_neg * (1 - y)
        pt = pt0 + pt1
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        one_sided_w = torch.pow(1 - pt, one_sided_gamma)
        loss *= one_sided_w
    return -loss.sum()


def mmdet_varifocal(
    pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> torch.Tensor:
    """mmdetection's varifocal_loss (iou_weighted=True), 'mean' without a weight."""
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    focal_weight = (
        target * (target > 0.0).float()
        + alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
    )
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return loss.mean()


def mmdet_quality_focal(
    pred: torch.Tensor, label: torch.Tensor, score: torch.Tensor, beta: float = 2.0
) -> torch.Tensor:
    """mmdetection's quality_focal_loss with its (label, score) target, then 'mean'."""
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(
        beta
    )
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction="none"
    ) * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False).mean()


def mmdet_quality_focal_dense(
    pred: torch.Tensor, target: torch.Tensor, beta: float = 2.0
) -> torch.Tensor:
    """mmdetection 3.x's quality_focal_loss_tensor_target (logits), then 'mean'."""
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    target = target.type_as(pred)
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(
        beta
    )
    pos = target != 0
    scale_factor = target[pos] - pred_sigmoid[pos]
    loss[pos] = F.binary_cross_entropy_with_logits(
        pred[pos], target[pos], reduction="none"
    ) * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=True).mean()


def mmdet_distribution_focal(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """mmdetection's distribution_focal_loss: two F.cross_entropy calls, then 'mean'."""
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.float() - label
    weight_right = label - dis_left.float()
    loss = (
        F.cross_entropy(pred, dis_left, reduction="none") * weight_left
        + F.cross_entropy(pred, dis_right, reduction="none") * weight_right
    )
    return loss.mean()


# --------------------------------------------------------------------------------- the cases

ASYMMETRIC = {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05}


def _asymmetric_case(shape: tuple[int, int], positives: float) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = (torch.randn(shape, generator=generator) * 2 - 2).requires_grad_()
        target = (torch.rand(shape, generator=generator) < positives).float()
        return {"input": input, "target": target}

    steps = {
        "focalkit": fwd_bwd(
            lambda x, i: focalkit.asymmetric_loss(x, i["target"], reduction="sum", **ASYMMETRIC)
        ),
        "timm": fwd_bwd(lambda x, i: timm_asymmetric(x, i["target"], **ASYMMETRIC)),
    }
    return Case(f"asymmetric multi-label {shape}", make, steps, [("focalkit", "timm")])


def _detection_target(shape: tuple[int, int], positives: float) -> dict[str, Any]:
    """Logits, one class per positive anchor with its IoU (``label = C`` for background), and
    the same target as a dense ``(N, C)`` score map."""
    generator = torch.Generator().manual_seed(0)
    n, c = shape
    input = (torch.randn(shape, generator=generator) * 2 - 3).requires_grad_()
    positive = torch.rand(n, generator=generator) < positives * c  # of the anchors
    label = torch.where(positive, torch.randint(0, c, (n,), generator=generator), c)
    score = torch.rand(n, generator=generator) * 0.9 + 0.1
    dense = torch.zeros(shape)
    rows = torch.nonzero(positive).squeeze(1)
    dense[rows, label[rows]] = score[rows]
    return {"input": input, "label": label, "score": score, "dense": dense}


def _varifocal_case(shape: tuple[int, int], positives: float) -> Case:
    steps = {
        "focalkit": fwd_bwd(lambda x, i: focalkit.varifocal_loss(x, i["dense"])),
        "mmdetection": fwd_bwd(lambda x, i: mmdet_varifocal(x, i["dense"])),
    }
    return Case(
        f"varifocal {shape}",
        lambda: _detection_target(shape, positives),
        steps,
        [("focalkit", "mmdetection")],
    )


def _quality_focal_case(shape: tuple[int, int], positives: float) -> Case:
    steps = {
        "focalkit": fwd_bwd(lambda x, i: focalkit.quality_focal_loss(x, i["dense"])),
        "mmdetection": fwd_bwd(lambda x, i: mmdet_quality_focal(x, i["label"], i["score"])),
        "mmdetection dense": fwd_bwd(lambda x, i: mmdet_quality_focal_dense(x, i["dense"])),
    }
    return Case(
        f"quality focal {shape}",
        lambda: _detection_target(shape, positives),
        steps,
        [("focalkit", "mmdetection"), ("focalkit", "mmdetection dense")],
    )


def _index_inputs(shape: tuple[int, int]) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    input = torch.randn(shape, generator=generator).requires_grad_()
    target = torch.randint(0, shape[1], (shape[0],), generator=generator)
    # a long tail: counts falling as a power of the class index
    counts = np.round(1000.0 * (1.0 + np.arange(shape[1])) ** -1.2) + 1.0
    return {"input": input, "target": target, "counts": counts}


def _softmax_family_case(name: str, shape: tuple[int, int], loss: Any) -> Case:
    """``loss(input, inputs)`` against ``F.cross_entropy`` on the same class-index targets."""

    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = torch.randn(shape, generator=generator).requires_grad_()
        target = torch.randint(0, shape[1], (shape[0],), generator=generator)
        # a long tail: counts falling as a power of the class index
        counts = np.round(1000.0 * (1.0 + np.arange(shape[1])) ** -1.2) + 1.0
        offset = torch.as_tensor(focalkit.logit_adjustment(counts), dtype=torch.float32)
        margins = torch.as_tensor(focalkit.ldam_margins(counts), dtype=torch.float32)
        return {"input": input, "target": target, "offset": offset, "margins": margins}

    steps = {
        "focalkit": fwd_bwd(loss),
        "cross_entropy": fwd_bwd(lambda x, i: F.cross_entropy(x, i["target"])),
    }
    return Case(f"{name} {shape}", make, steps, [("focalkit", "cross_entropy")])


def _distribution_case(shape: tuple[int, int]) -> Case:
    def make() -> dict[str, Any]:
        generator = torch.Generator().manual_seed(0)
        input = torch.randn(shape, generator=generator).requires_grad_()
        # mmdetection's labels stay below n (a label of n would ask for bin n + 1)
        target = torch.rand(shape[0], generator=generator) * (shape[1] - 1 - 0.01)
        return {"input": input, "target": target}

    steps = {
        "focalkit": fwd_bwd(lambda x, i: focalkit.distribution_focal_loss(x, i["target"])),
        "two cross_entropy": fwd_bwd(lambda x, i: mmdet_distribution_focal(x, i["target"])),
    }
    return Case(f"distribution focal {shape}", make, steps, [("focalkit", "two cross_entropy")])


CASES = [
    _asymmetric_case((4096, 1000), 0.05),
    _varifocal_case((200000, 80), 0.01),
    _quality_focal_case((200000, 80), 0.01),
    _softmax_family_case(
        "poly softmax focal",
        (8192, 1000),
        lambda x, i: focalkit.poly_softmax_focal_loss(x, i["target"]),
    ),
    _softmax_family_case(
        "logit-adjusted",
        (8192, 1000),
        lambda x, i: focalkit.softmax_focal_loss(
            x, i["target"], gamma=0.0, logit_offset=i["offset"]
        ),
    ),
    _softmax_family_case(
        "LDAM",
        (8192, 1000),
        lambda x, i: focalkit.ldam_loss(x, i["target"], i["margins"]),
    ),
    _distribution_case((65536, 17)),
]

if __name__ == "__main__":
    main(__file__, CASES)
