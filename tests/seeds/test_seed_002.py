"""Seed 002: three PyTorch focal losses from one blog post, against focalkit and the oracles.

Source: /work/shared/seeds/002_2fc8778072696b8f.txt ("seed 002"). The post has three classes,
all named ``FocalLoss``; here they are ``SoftmaxFocalLoss002`` (multi-class, softmax and gather),
``CrossEntropyFocalLoss002`` (multi-class, ``pt = exp(-CE)``) and ``MultiLabelFocalLoss002``
(multi-label, ``pt = exp(-BCE)``). Their bodies are the post's, unchanged: everything still runs
on current PyTorch, so nothing needed fixing.

Findings, each pinned by a test below:

- The softmax class is ``softmax_focal_loss(gamma=g, alpha=a)``; ``size_average`` picks mean/sum.
- The CE-based class stores ``alpha`` and never uses it. Without a class weight it is
  ``softmax_focal_loss(alpha=None)``. With one (its ``pos_weight`` goes to
  ``CrossEntropyLoss(weight=...)``), ``CE = -w_t log p_t`` so ``exp(-CE) = p_t ** w_t``, not
  ``p_t``: the focal factor becomes ``(1 - p_t ** w_t) ** gamma``; and ``torch.mean`` divides by
  N, not by ``sum(w_t)`` as ``cross_entropy`` does. focalkit follows the definition.
- The multi-label class is ``sigmoid_focal_loss(alpha=None)`` (or ``binary_focal_loss`` with
  ``logits=False``) for hard targets without ``pos_weight``. With ``pos_weight`` its ``pt`` for a
  positive is ``p ** pos_weight``; with soft targets ``exp(-BCE)`` is not ``p_t`` either.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from oracles import sigmoid_focal_oracle, softmax_focal_oracle

import focalkit

# ------------------------------------------------------------------ the seed's three classes


class SoftmaxFocalLoss002(nn.Module):
    """Seed 002's first ``FocalLoss`` (multi-class, softmax then gather), verbatim."""

    def __init__(self, alpha=1.0, gamma=2, size_average=True):
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.size_average = size_average

    ### targets 应该是没有one-hot处理过，直接是1，2，3这种形式  (class indices, not one-hot)
    def forward(self, inputs, targets):
        targets = targets.view(-1, 1)

        prob_dist = F.softmax(inputs, dim=1)
        pt = prob_dist.gather(1, targets)

        batch_loss = -self.alpha * (torch.pow((1 - pt), self.gamma)) * torch.log(pt)

        if self.size_average:  # noqa: SIM108 (the seed's spelling)
            loss = batch_loss.mean()
        else:
            loss = batch_loss.sum()
        return loss


class CrossEntropyFocalLoss002(nn.Module):
    """Seed 002's second ``FocalLoss`` (multi-class, ``pt = exp(-CE)``), verbatim."""

    def __init__(self, pos_weight, alpha=1, gamma=2, logits=True, reduce=True):
        super(CrossEntropyFocalLoss002, self).__init__()  # noqa: UP008 (the seed's spelling)
        self.alpha = alpha
        self.gamma = gamma
        self.logits = logits
        self.reduce = reduce

        self.loss = torch.nn.CrossEntropyLoss(weight=pos_weight, reduction="none")

    def forward(self, inputs, targets):
        CE_loss = self.loss(inputs, targets)

        pt = torch.exp(-CE_loss)
        F_loss = (1 - pt) ** self.gamma * CE_loss

        if self.reduce:
            return torch.mean(F_loss)
        else:
            return F_loss


class MultiLabelFocalLoss002(nn.Module):
    """Seed 002's third ``FocalLoss`` (multi-label, ``pt = exp(-BCE)``), verbatim."""

    def __init__(self, pos_weight, alpha=1, gamma=2, logits=True, reduce=True):
        super(MultiLabelFocalLoss002, self).__init__()  # noqa: UP008 (the seed's spelling)
        self.alpha = alpha
        self.gamma = gamma
        self.logits = logits
        self.reduce = reduce

        self.BCELossLogits = torch.nn.BCEWithLogitsLoss(reduction="none", pos_weight=pos_weight)
        self.BCELoss = torch.nn.BCELoss(reduction="none")

    def forward(self, inputs, targets):
        if self.logits:
            BCE_loss = self.BCELossLogits(inputs, targets)
        else:
            BCE_loss = self.BCELoss(inputs, targets)

        pt = torch.exp(-BCE_loss)
        F_loss = (1 - pt) ** self.gamma * BCE_loss

        if self.reduce:
            return torch.mean(F_loss)
        else:
            return F_loss


# ------------------------------------------------------------------ data

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
NUM_CLASSES = 5
CLASS_WEIGHT = torch.tensor([0.2, 1.0, 3.0, 0.5, 2.0], dtype=torch.float64)


def _multiclass(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(12, NUM_CLASSES, generator=generator, dtype=torch.float64) * 2.5
    target = torch.randint(0, NUM_CLASSES, (12,), generator=generator)
    target[:5] = torch.arange(5)  # every class present, so every weight matters
    return logits, target


def _multilabel(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 4, generator=generator, dtype=torch.float64) * 2.5
    target = torch.rand(8, 4, generator=generator, dtype=torch.float64).round()
    return logits, target


def _close(actual: torch.Tensor, expected: object, rtol: float = 1e-10) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), np.asarray(expected), rtol=rtol, atol=1e-12)


# ------------------------------------------------------------------ (a) softmax and gather


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [1.0, 0.25, 2.0])
def test_softmax_class_is_softmax_focal_loss(gamma: float, alpha: float) -> None:
    logits, target = _multiclass()
    seed_mean = SoftmaxFocalLoss002(alpha=alpha, gamma=gamma, size_average=True)(logits, target)
    seed_sum = SoftmaxFocalLoss002(alpha=alpha, gamma=gamma, size_average=False)(logits, target)
    ours_mean = focalkit.softmax_focal_loss(logits, target, gamma=gamma, alpha=alpha)
    ours_sum = focalkit.softmax_focal_loss(
        logits, target, reduction="sum", gamma=gamma, alpha=alpha
    )
    _close(ours_mean, seed_mean.item())
    _close(ours_sum, seed_sum.item())
    # A float alpha scales the loss and stays out of the 'mean' divisor, in both.
    _close(ours_mean, softmax_focal_oracle(logits, target, gamma=gamma, alpha=alpha))


# ------------------------------------------------------------------ (b) pt = exp(-CE)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_ce_class_without_weight_is_softmax_focal_loss(gamma: float) -> None:
    logits, target = _multiclass()
    seed = CrossEntropyFocalLoss002(None, gamma=gamma)
    unreduced = CrossEntropyFocalLoss002(None, gamma=gamma, reduce=False)
    _close(
        focalkit.softmax_focal_loss(logits, target, gamma=gamma, alpha=None), seed(logits, target)
    )
    _close(
        focalkit.softmax_focal_loss(logits, target, reduction="none", gamma=gamma, alpha=None),
        unreduced(logits, target),
    )


def test_ce_class_ignores_its_alpha() -> None:
    # The seed stores alpha and never reads it: alpha=0.25 gives the same loss as alpha=1, which
    # is focalkit's alpha=None, not focalkit's alpha=0.25.
    logits, target = _multiclass()
    quarter = CrossEntropyFocalLoss002(None, alpha=0.25)(logits, target)
    one = CrossEntropyFocalLoss002(None, alpha=1)(logits, target)
    assert torch.equal(quarter, one)
    _close(focalkit.softmax_focal_loss(logits, target, alpha=None), quarter)
    ours_quarter = focalkit.softmax_focal_loss(logits, target, alpha=0.25)
    _close(ours_quarter, 0.25 * quarter)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_ce_class_with_class_weight_is_wrong(gamma: float) -> None:
    logits, target = _multiclass()
    oracle = softmax_focal_oracle(logits, target, gamma=gamma, weight=CLASS_WEIGHT)
    ours = focalkit.softmax_focal_loss(logits, target, weight=CLASS_WEIGHT, gamma=gamma)
    seed = CrossEntropyFocalLoss002(CLASS_WEIGHT, gamma=gamma)(logits, target)

    _close(ours, oracle)

    # What the seed computes instead: pt = exp(-w_t CE) = p_t ** w_t in the focal factor, and
    # the mean over N rather than over sum(w_t).
    p_t = logits.softmax(1).gather(1, target[:, None]).squeeze(1)
    w_t = CLASS_WEIGHT[target]
    explained = ((1 - p_t**w_t) ** gamma * w_t * -p_t.log()).mean()
    _close(seed, explained.item())
    assert abs(seed.item() - float(oracle)) > 1e-3 * float(oracle)


def test_ce_class_with_class_weight_is_wrong_in_each_part() -> None:
    # Each mistake on its own moves the result: the seed's factor with the right divisor, and the
    # right factor with the seed's divisor, both differ from the definition.
    logits, target = _multiclass()
    gamma = 2.0
    p_t = logits.softmax(1).gather(1, target[:, None]).squeeze(1)
    w_t = CLASS_WEIGHT[target]
    ce = -p_t.log()
    right = float(softmax_focal_oracle(logits, target, gamma=gamma, weight=CLASS_WEIGHT))
    seed_factor = ((1 - p_t**w_t) ** gamma * w_t * ce).sum() / w_t.sum()
    seed_divisor = ((1 - p_t) ** gamma * w_t * ce).sum() / len(target)
    _close(((1 - p_t) ** gamma * w_t * ce).sum() / w_t.sum(), right)
    assert abs(seed_factor.item() - right) > 1e-3 * right
    assert abs(seed_divisor.item() - right) > 1e-3 * right


def test_ce_class_unreduced_with_class_weight_differs_per_element() -> None:
    # reduction='none' takes the divisor out; the p_t ** w_t factor alone still differs
    # wherever w_t != 1, and agrees where w_t == 1 (class 1).
    logits, target = _multiclass()
    gamma = 2.0
    seed = CrossEntropyFocalLoss002(CLASS_WEIGHT, gamma=gamma, reduce=False)(logits, target)
    ours = focalkit.softmax_focal_loss(logits, target, CLASS_WEIGHT, reduction="none", gamma=gamma)
    oracle = softmax_focal_oracle(
        logits, target, gamma=gamma, weight=CLASS_WEIGHT, reduction="none"
    )
    _close(ours, oracle)
    unit = (target == 1).numpy()
    np.testing.assert_allclose(seed.numpy()[unit], oracle[unit], rtol=1e-12)
    assert not np.allclose(seed.numpy()[~unit], oracle[~unit], rtol=1e-3)


# ------------------------------------------------------------------ (c) pt = exp(-BCE)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_multilabel_class_on_logits_is_sigmoid_focal_loss(gamma: float) -> None:
    logits, target = _multilabel()
    seed = MultiLabelFocalLoss002(None, gamma=gamma, logits=True)
    unreduced = MultiLabelFocalLoss002(None, gamma=gamma, logits=True, reduce=False)
    _close(
        focalkit.sigmoid_focal_loss(logits, target, gamma=gamma, alpha=None), seed(logits, target)
    )
    _close(
        focalkit.sigmoid_focal_loss(logits, target, reduction="none", gamma=gamma, alpha=None),
        unreduced(logits, target),
    )


@pytest.mark.parametrize("gamma", GAMMAS)
def test_multilabel_class_on_probabilities_is_binary_focal_loss(gamma: float) -> None:
    logits, target = _multilabel()
    probs = logits.sigmoid()
    seed = MultiLabelFocalLoss002(None, gamma=gamma, logits=False)
    unreduced = MultiLabelFocalLoss002(None, gamma=gamma, logits=False, reduce=False)
    _close(focalkit.binary_focal_loss(probs, target, gamma=gamma, alpha=None), seed(probs, target))
    _close(
        focalkit.binary_focal_loss(probs, target, reduction="none", gamma=gamma, alpha=None),
        unreduced(probs, target),
    )


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_multilabel_class_with_pos_weight_is_wrong(gamma: float) -> None:
    logits, target = _multilabel()
    pos_weight = torch.tensor([0.5, 2.0, 4.0, 1.0], dtype=torch.float64)
    oracle = sigmoid_focal_oracle(
        logits, target, gamma=gamma, alpha=None, pos_weight=pos_weight, reduction="none"
    )
    ours = focalkit.sigmoid_focal_loss(
        logits, target, reduction="none", pos_weight=pos_weight, gamma=gamma, alpha=None
    )
    seed = MultiLabelFocalLoss002(pos_weight, gamma=gamma, reduce=False)(logits, target)

    _close(ours, oracle)

    # For a positive, BCE = -pos_weight log p, so the seed's pt = exp(-BCE) = p ** pos_weight.
    p = logits.sigmoid()
    pw = pos_weight.expand_as(p)
    positive = target == 1
    explained = torch.where(
        positive,
        (1 - p**pw) ** gamma * pw * -p.log(),
        p**gamma * -(1 - p).log(),  # negatives: p_t = 1 - p and pos_weight does not enter
    )
    _close(seed, explained)

    # Negatives and positives of the pos_weight=1 column agree; other positives do not.
    agree = (~positive | (pw == 1)).numpy()
    np.testing.assert_allclose(seed.numpy()[agree], oracle[agree], rtol=1e-10, atol=1e-12)
    assert agree.sum() < agree.size  # the data has positives with pos_weight != 1
    assert not np.allclose(seed.numpy()[~agree], oracle[~agree], rtol=1e-3)


def test_multilabel_class_with_soft_targets_is_not_p_t() -> None:
    # For a soft target y, exp(-BCE) = p**y (1 - p)**(1 - y), not p_t = p y + (1 - p)(1 - y), so
    # the seed's focal factor leaves the definition; focalkit keeps to it (the oracle).
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]], dtype=torch.float64)
    target = torch.tensor([[0.8, 0.3, 0.5, 0.9]], dtype=torch.float64)
    seed = MultiLabelFocalLoss002(None, gamma=2.0, reduce=False)(logits, target)
    ours = focalkit.sigmoid_focal_loss(logits, target, reduction="none", gamma=2.0, alpha=None)
    oracle = sigmoid_focal_oracle(logits, target, gamma=2.0, alpha=None, reduction="none")
    _close(ours, oracle)
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    _close(seed, (1 - p**target * (1 - p) ** (1 - target)) ** 2 * bce)
    assert not np.allclose(seed.numpy(), oracle, rtol=1e-3)
