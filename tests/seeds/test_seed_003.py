"""Seed 003: four PyTorch losses on probabilities, each clamping them to [0.001, 1].

Source: /work/shared/seeds/003_8378c8f394c2c5ff.txt ("seed 003"). The post lost its indentation;
it is reconstructed below, with the bodies otherwise as printed. Two classes are both named
``FocalLoss`` in the post: here ``BinaryFocalLoss003`` (one-vs-rest on every class, alpha on the
positives) and ``MultiClassFocalLoss003`` (the target class only). ``Variable`` and
``inputs.data.new`` are old spellings that still run.

Findings, each pinned by a test below:

- While every probability is inside ``[0.001, 1]``: ``NegtiveLogLoss`` is
  ``nll_focal_loss(log p, gamma=0, alpha=None)``; ``BinaryCrossEntropy(alpha)`` and the binary
  ``FocalLoss(gamma, alpha)`` are ``binary_focal_loss(p, one_hot, gamma, alpha)``, 'mean' over
  ``N * C``; the multi-class ``FocalLoss`` returns the unreduced ``(N, C)`` matrix divided by N,
  shaped like a loss matrix but scaled like a mean: its ``.sum()`` is
  ``nll_focal_loss(log p, gamma=g, alpha=None)``.
- ``if self.alpha:`` reads ``alpha=0.0`` as "no alpha", where focalkit weights positives by 0.
- Below 0.001 the clamp changes the loss (and zeroes its gradient); focalkit does not clamp and
  matches the float64 oracles.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from oracles import binary_focal_oracle, softmax_focal_oracle
from torch.autograd import Variable

import focalkit

# ------------------------------------------------------------------ the seed's four classes
# The seed's comments are kept; the Chinese ones say: "clamp values into a range ... avoids
# errors such as log(0)" and "the mean must not be taken over the whole matrix, which still has
# the input's size: divide by the number of targets in the label".


class NegtiveLogLoss(nn.Module):
    """-log(p) loss"""

    def __init__(self, onehot=False):
        super(NegtiveLogLoss, self).__init__()  # noqa: UP008 (the seed's spelling)
        self.onehot = onehot

    def forward(self, inputs, targets):
        """
        :param input: onehot
        :param target: 默认是onehot以后
        :return:
        """
        inputs = torch.clamp(inputs, min=0.001, max=1.0)  ## 将一个张量中的数值限制在一个范围内
        if not self.onehot:
            N = inputs.size(0)
            C = inputs.size(1)
            class_mask = inputs.data.new(N, C).fill_(0)
            class_mask = Variable(class_mask)
            ids = targets.view(-1, 1)
            class_mask.scatter_(1, ids.data, 1.0)
            targets = class_mask
        loss_matrix = -targets * inputs.log()  ## 对预测的矩阵里面的每个元素做log,
        ## 然后乘以one hot的label,也就是说获得1位置的值了。
        ## 这时候还是个矩阵,还没有计算均值
        ## 默认输出均值
        return loss_matrix.sum() / targets.sum()  ## 这里不能直接求mean,
        # 因为整个矩阵还是原来的输入大小的,
        # 求loss应该是除以label中有目标的总数。


class BinaryCrossEntropy(nn.Module):
    """-(ylog(p)+(1-y)log(1-p) loss"""

    def __init__(self, alpha=None, onehot=False):
        super(BinaryCrossEntropy, self).__init__()  # noqa: UP008
        self.alpha = alpha
        self.onehot = onehot

    def forward(self, inputs, targets):
        """
        :param input: onehot
        :param target: 默认是onehot以后
        :return:
        """
        N = inputs.size(0)
        C = inputs.size(1)
        inputs = torch.clamp(inputs, min=0.001, max=1.0)  ##将一个张量中的数值限制在一个范围内
        if not self.onehot:
            class_mask = inputs.data.new(N, C).fill_(0)
            class_mask = Variable(class_mask)
            ids = targets.view(-1, 1)
            class_mask.scatter_(1, ids.data, 1.0)
            targets = class_mask
        pos_sample_loss_matrix = -targets * inputs.log()  ## 正样本的loss
        # mean_pos_sample_loss = pos_sample_loss_matrix.sum() / targets.sum()
        neg_sample_loss_matrix = -(targets == 0).float() * (1 - inputs).log()  ## 负样本的loss
        # mean_neg_sample_loss = pos_sample_loss_matrix.sum() / targets.sum()
        if self.alpha:
            return (
                self.alpha * pos_sample_loss_matrix + (1 - self.alpha) * neg_sample_loss_matrix
            ).sum() / (N * C)
        else:
            return (pos_sample_loss_matrix + neg_sample_loss_matrix).sum() / (N * C)


class BinaryFocalLoss003(nn.Module):
    """-[alpha*y*(1-p)^gamma*log(p)+(1-alpha)(1-y)*p^gamma*log(1-p)] loss"""

    def __init__(self, gamma, alpha=None, onehot=False):
        super(BinaryFocalLoss003, self).__init__()  # noqa: UP008
        self.alpha = alpha
        self.gamma = gamma
        self.onehot = onehot

    def forward(self, inputs, targets):
        """
        :param input: onehot
        :param target: 默认是onehot以后
        :return:
        """
        N = inputs.size(0)
        C = inputs.size(1)
        inputs = torch.clamp(inputs, min=0.001, max=1.0)  ##将一个张量中的数值限制在一个范围内
        # Kept as printed. On the CPU `inputs.is_cuda` is False and the `and` short-circuits,
        # so `self.alpha.is_cuda` (an AttributeError for a float or None alpha) is never read.
        if inputs.is_cuda and not self.alpha.is_cuda:
            self.alpha = self.alpha.cuda()
        if not self.onehot:
            class_mask = inputs.data.new(N, C).fill_(0)
            class_mask = Variable(class_mask)
            ids = targets.view(-1, 1)
            class_mask.scatter_(1, ids.data, 1.0)
            targets = class_mask
        pos_sample_loss_matrix = (
            -targets * (torch.pow((1 - inputs), self.gamma)) * inputs.log()
        )  ## 正样本的loss
        # mean_pos_sample_loss = pos_sample_loss_matrix.sum() / targets.sum()
        neg_sample_loss_matrix = (
            -(targets == 0).float() * (torch.pow((inputs), self.gamma)) * (1 - inputs).log()
        )  ## 负样本的loss
        # mean_neg_sample_loss = pos_sample_loss_matrix.sum() / targets.sum()
        if self.alpha:
            return (
                self.alpha * pos_sample_loss_matrix + (1 - self.alpha) * neg_sample_loss_matrix
            ).sum() / (N * C)
        else:
            return (pos_sample_loss_matrix + neg_sample_loss_matrix).sum() / (N * C)


class MultiClassFocalLoss003(nn.Module):
    """-[y*(1-p)^gamma*log(p) loss
    softmax激活输入的foacl loss。
    """

    def __init__(self, gamma, onehot=False):
        super(MultiClassFocalLoss003, self).__init__()  # noqa: UP008
        self.gamma = gamma
        self.onehot = onehot

    def forward(self, inputs, targets):
        """
        :param input: onehot
        :param target: 默认是onehot以后
        :return:
        """
        inputs = torch.clamp(inputs, min=0.001, max=1.0)  ##将一个张量中的数值限制在一个范围内
        if not self.onehot:
            N = inputs.size(0)
            C = inputs.size(1)
            class_mask = inputs.data.new(N, C).fill_(0)
            class_mask = Variable(class_mask)
            ids = targets.view(-1, 1)
            class_mask.scatter_(1, ids.data, 1.0)
            targets = class_mask
        pos_sample_loss_matrix = (
            -targets * (torch.pow((1 - inputs), self.gamma)) * inputs.log()
        )  ## 正样本的loss
        # mean_pos_sample_loss = pos_sample_loss_matrix.sum() / targets.sum()
        ## 默认输出均值
        ## 这里不能直接求mean,
        # 因为整个矩阵还是原来的输入大小的,
        # 求loss应该是除以label中有目标的总数。
        return pos_sample_loss_matrix / targets.sum()


# ------------------------------------------------------------------ data

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
CLAMP_MIN = 0.001


def _inside(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, softmax probabilities all inside [0.001, 1], and class-index targets."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(10, 4, generator=generator, dtype=torch.float64) * 1.5
    probs = logits.softmax(1)
    target = torch.randint(0, 4, (10,), generator=generator)
    target[:4] = torch.arange(4)
    if probs.min().item() <= CLAMP_MIN:
        raise RuntimeError("test data: a probability fell below the seed's clamp")
    return logits, probs, target


def _below(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As :func:`_inside`, with row 0's target class and row 1's other classes below 0.001."""
    logits, _, target = _inside(seed)
    logits = logits.clone()
    logits[0] = torch.tensor([-9.0, 2.0, 1.0, 0.0], dtype=torch.float64)  # p_target ~ 1.2e-5
    target[0] = 0
    logits[1] = torch.tensor([12.0, 0.0, -1.0, 3.0], dtype=torch.float64)  # others < 2e-4
    target[1] = 0
    probs = logits.softmax(1)
    if not (probs[0, 0] < CLAMP_MIN and (probs[1, 1:] < CLAMP_MIN).all()):
        raise RuntimeError("test data: expected probabilities below the seed's clamp")
    return logits, probs, target


def _one_hot(target: torch.Tensor) -> torch.Tensor:
    return F.one_hot(target, 4).to(torch.float64)


def _close(actual: torch.Tensor, expected: object, rtol: float = 1e-10) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), np.asarray(expected), rtol=rtol, atol=1e-12)


# ------------------------------------------------------------------ inside the clamp


def test_negtive_log_loss_is_nll_focal_loss_gamma0() -> None:
    _, probs, target = _inside()
    seed = NegtiveLogLoss()(probs, target)
    ours = focalkit.nll_focal_loss(probs.log(), target, gamma=0, alpha=None)
    _close(ours, seed.item())
    _close(ours, F.nll_loss(probs.log(), target).item())
    # onehot=True takes the one-hot matrix directly and gives the same value.
    _close(NegtiveLogLoss(onehot=True)(probs, _one_hot(target)), seed.item())


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9, None])
def test_binary_cross_entropy_is_binary_focal_loss_gamma0(alpha: float | None) -> None:
    _, probs, target = _inside()
    seed = BinaryCrossEntropy(alpha=alpha)(probs, target)
    ours = focalkit.binary_focal_loss(probs, _one_hot(target), gamma=0, alpha=alpha)
    _close(ours, seed.item())
    if alpha is None:
        _close(ours, F.binary_cross_entropy(probs, _one_hot(target)).item())


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [0.25, 0.75, None])
def test_binary_focal_loss_class_is_binary_focal_loss(gamma: float, alpha: float | None) -> None:
    _, probs, target = _inside()
    seed = BinaryFocalLoss003(gamma, alpha=alpha)(probs, target)
    seed_one_hot = BinaryFocalLoss003(gamma, alpha=alpha, onehot=True)(probs, _one_hot(target))
    ours = focalkit.binary_focal_loss(probs, _one_hot(target), gamma=gamma, alpha=alpha)
    np.testing.assert_allclose(ours.item(), seed.item(), rtol=0, atol=1e-6)
    _close(ours, seed.item())  # in float64 they agree far beyond the 1e-6 asked for
    _close(seed_one_hot, seed.item())


def test_alpha_zero_is_read_as_no_alpha_by_the_seed() -> None:
    # `if self.alpha:` is False for alpha=0.0, so the seed drops the weighting altogether;
    # focalkit's alpha=0 gives positives weight 0 and negatives weight 1.
    _, probs, target = _inside()
    one_hot = _one_hot(target)
    seed = BinaryFocalLoss003(2.0, alpha=0.0)(probs, target)
    _close(seed, focalkit.binary_focal_loss(probs, one_hot, gamma=2.0, alpha=None).item())
    ours = focalkit.binary_focal_loss(probs, one_hot, gamma=2.0, alpha=0.0)
    _close(ours, binary_focal_oracle(probs, one_hot, gamma=2.0, alpha=0.0))
    assert ours.item() < seed.item()


@pytest.mark.parametrize("gamma", GAMMAS)
def test_multiclass_focal_loss_is_an_unreduced_matrix_divided_by_n(gamma: float) -> None:
    logits, probs, target = _inside()
    seed = MultiClassFocalLoss003(gamma)(probs, target)
    # Not a scalar: the (N, C) matrix of per-class terms, each already divided by N, as if it
    # were a mean. Only the target column of each row is non-zero.
    assert seed.shape == (10, 4)
    assert torch.equal(seed != 0, _one_hot(target).bool())
    per_sample = focalkit.nll_focal_loss(
        probs.log(), target, reduction="none", gamma=gamma, alpha=None
    )
    _close(seed.sum(1), per_sample / len(target))
    # Its .sum() is the mean focal loss.
    ours = focalkit.nll_focal_loss(probs.log(), target, gamma=gamma, alpha=None)
    _close(ours, seed.sum().item())
    _close(ours, softmax_focal_oracle(logits, target, gamma=gamma))


# ------------------------------------------------------------------ below the clamp


def test_below_the_clamp_negtive_log_loss_differs() -> None:
    logits, probs, target = _below()
    seed = NegtiveLogLoss()(probs, target)
    ours = focalkit.nll_focal_loss(probs.log(), target, gamma=0, alpha=None)
    oracle = softmax_focal_oracle(logits, target, gamma=0.0)
    _close(ours, oracle)
    # Row 0 alone: the seed charges -log(0.001) = 6.9 where the loss is -log(1.2e-5) = 11.3.
    assert -math.log(probs[0, 0].item()) - -math.log(CLAMP_MIN) > 4.0
    assert ours.item() - seed.item() > 4.0 / len(target)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_below_the_clamp_binary_losses_differ(gamma: float, alpha: float | None) -> None:
    _, probs, target = _below()
    one_hot = _one_hot(target)
    seed_class = BinaryCrossEntropy(alpha) if gamma == 0 else BinaryFocalLoss003(gamma, alpha)
    seed = seed_class(probs, target)
    ours = focalkit.binary_focal_loss(probs, one_hot, gamma=gamma, alpha=alpha)
    oracle = binary_focal_oracle(probs, one_hot, gamma=gamma, alpha=alpha)
    _close(ours, oracle)
    assert abs(seed.item() - float(oracle)) > 1e-3 * float(oracle)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_below_the_clamp_multiclass_focal_loss_differs(gamma: float) -> None:
    logits, probs, target = _below()
    seed = MultiClassFocalLoss003(gamma)(probs, target).sum()
    ours = focalkit.nll_focal_loss(probs.log(), target, gamma=gamma, alpha=None)
    oracle = softmax_focal_oracle(logits, target, gamma=gamma)
    _close(ours, oracle)
    assert abs(seed.item() - float(oracle)) > 1e-2 * float(oracle)


def test_below_the_clamp_the_seed_has_no_gradient() -> None:
    # The clamp also cuts the gradient: the seed cannot learn from the very sample it gets most
    # wrong, while focalkit's gradient there is the nll gradient, -1 / N with respect to log p_t.
    _, probs, target = _below()
    probs = probs.clone().requires_grad_(True)
    NegtiveLogLoss()(probs, target).backward()
    assert probs.grad is not None
    assert probs.grad[0, 0].item() == 0.0
    log_probs = probs.detach().log().requires_grad_(True)
    focalkit.nll_focal_loss(log_probs, target, gamma=0, alpha=None).backward()
    assert log_probs.grad is not None
    _close(log_probs.grad[0, 0], -1.0 / len(target))
