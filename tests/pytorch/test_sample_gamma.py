"""Per-element gamma (a tensor) and FLSD's sample-dependent gamma, against float64 oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import focalkit


def _flsd_oracle(logits, target, thresholds=(0.2,), gammas=(5.0, 3.0)):
    """One element at a time: gamma is gammas[i], i = number of thresholds <= p_t."""
    logits = np.asarray(logits, np.float64)
    out = np.zeros(target.shape)
    for index in np.ndindex(target.shape):
        z = logits[(index[0], slice(None), *index[1:])]
        c = int(target[index])
        p_t = math.exp(z[c] - z.max()) / np.exp(z - z.max()).sum()
        out[index] = gammas[sum(p_t >= t for t in thresholds)]
    return out


def _softmax_oracle_per_gamma(logits, target, gamma):
    logits = np.asarray(logits, np.float64)
    out = np.zeros(target.shape)
    for index in np.ndindex(target.shape):
        z = logits[(index[0], slice(None), *index[1:])]
        c = int(target[index])
        log_p = z[c] - z.max() - math.log(np.exp(z - z.max()).sum())
        out[index] = -((1 - math.exp(log_p)) ** gamma[index]) * log_p
    return out


def test_sample_dependent_gamma_matches_oracle():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 4, 3, generator=generator, dtype=torch.float64) * 2
    target = torch.randint(0, 4, (16, 3), generator=generator)
    gamma = focalkit.sample_dependent_gamma(logits, target)
    expected = _flsd_oracle(logits.numpy(), target.numpy())
    np.testing.assert_array_equal(gamma.numpy(), expected)
    assert set(expected.ravel()) == {3.0, 5.0}  # both regimes exercised
    three = focalkit.sample_dependent_gamma(
        logits, target, thresholds=(0.2, 0.5), gammas=(5.0, 3.0, 1.0)
    )
    np.testing.assert_array_equal(
        three.numpy(), _flsd_oracle(logits.numpy(), target.numpy(), (0.2, 0.5), (5.0, 3.0, 1.0))
    )


def test_sample_dependent_gamma_threshold_goes_to_the_upper_bucket():
    # p_t exactly 0.5 with two classes of equal logits: a threshold of 0.5 gives the upper gamma.
    logits = torch.zeros(1, 2, dtype=torch.float64)
    gamma = focalkit.sample_dependent_gamma(logits, torch.tensor([0]), (0.5,), (5.0, 3.0))
    assert gamma.tolist() == [3.0]


def test_sample_dependent_gamma_has_no_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    gamma = focalkit.sample_dependent_gamma(logits, torch.tensor([0, 1, 2, -100]))
    assert not gamma.requires_grad
    assert gamma.shape == (4,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gammas": (5.0,)}, r"gammas must have len\(thresholds\) \+ 1 = 2 values, got 1"),
        ({"thresholds": (0.5, 0.2), "gammas": (1, 2, 3)}, r"thresholds must increase inside"),
        ({"thresholds": (1.5,)}, r"thresholds must increase inside \(0, 1\)"),
        ({"gammas": (5.0, -3.0)}, r"gammas must be >= 0, got -3.0"),
        ({"gammas": (-1, 2)}, r"gammas must be >= 0, got -1"),
        ({"thresholds": 1.5}, r"thresholds must increase inside \(0, 1\), got \(1.5,\)"),
    ],
)
def test_sample_dependent_gamma_errors(kwargs, message):
    with pytest.raises(ValueError, match=r"^sample_dependent_gamma\(\): " + message):
        focalkit.sample_dependent_gamma(torch.randn(2, 3), torch.tensor([0, 1]), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thresholds": "0.2"}, r"thresholds must be a number or a sequence of numbers, got '0.2'"),
        ({"thresholds": (0.2, None), "gammas": (1, 2, 3)}, r"thresholds must be a number or a"),
        ({"thresholds": True}, r"thresholds must be a number or a sequence of numbers, got True"),
        ({"gammas": 5.0}, r"gammas must have len\(thresholds\) \+ 1 = 2 values, got 1"),
        ({"gammas": (5.0, False)}, r"gammas must be a number or a sequence of numbers"),
        ({"ignore_index": 0.5}, r"ignore_index must be an int, got 0.5"),
    ],
)
def test_sample_dependent_gamma_type_errors(kwargs, message):
    error = ValueError if "len" in message else TypeError
    with pytest.raises(error, match=r"^sample_dependent_gamma\(\): " + message):
        focalkit.sample_dependent_gamma(torch.randn(2, 3), torch.tensor([0, 1]), **kwargs)


def test_sample_dependent_gamma_takes_one_threshold_as_a_number():
    logits = torch.randn(32, 4, generator=torch.Generator().manual_seed(2)) * 2
    target = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(3))
    expected = _flsd_oracle(logits.numpy(), target.numpy(), (0.3,), (4.0, 1.0))
    for thresholds in (0.3, [0.3], np.array([0.3])):
        gamma = focalkit.sample_dependent_gamma(logits, target, thresholds, (4.0, 1.0))
        np.testing.assert_array_equal(gamma.numpy(), expected)
    assert set(expected.ravel()) == {4.0, 1.0}


def test_tensor_gamma_in_softmax_matches_oracle_and_gradient_is_through_logits_only():
    generator = torch.Generator().manual_seed(1)
    logits = (torch.randn(8, 5, 2, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    target = torch.randint(0, 5, (8, 2), generator=generator)
    gamma = torch.rand(8, 2, generator=generator, dtype=torch.float64) * 5
    gamma.requires_grad_()
    loss = focalkit.softmax_focal_loss(logits, target, gamma=gamma, reduction="none")
    expected = _softmax_oracle_per_gamma(
        logits.detach().numpy(), target.numpy(), gamma.detach().numpy()
    )
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12)
    loss.sum().backward()
    assert gamma.grad is None  # a constant for autograd
    # The gradient equals that of the loss with each element's gamma as a number.
    for n, d in [(0, 0), (3, 1), (7, 1)]:
        x = logits.detach()[n : n + 1, :, d].clone().requires_grad_()
        focalkit.softmax_focal_loss(x, target[n : n + 1, d], gamma=gamma[n, d].item()).backward()
        torch.testing.assert_close(logits.grad[n, :, d], x.grad[0])


def test_tensor_gamma_broadcasts_and_matches_scalar_gamma():
    logits = torch.randn(6, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (6,))
    probs = torch.softmax(torch.randn(6, 4, dtype=torch.float64), 1)
    for t in (target, probs):
        torch.testing.assert_close(
            focalkit.softmax_focal_loss(logits, t, gamma=torch.tensor(2.0), label_smoothing=0.1),
            focalkit.softmax_focal_loss(logits, t, gamma=2.0, label_smoothing=0.1),
        )
    y = (torch.rand(6, 4) > 0.5).double()
    torch.testing.assert_close(
        focalkit.sigmoid_focal_loss(logits, y, gamma=torch.tensor([0.0, 1.0, 2.0, 3.0])),
        focalkit.sigmoid_focal_loss(
            logits, y, gamma=torch.tensor([0.0, 1.0, 2.0, 3.0]).expand(6, 4)
        ),
    )
    per_class = torch.stack(
        [
            focalkit.sigmoid_focal_loss(logits[:, c], y[:, c], gamma=float(c), reduction="none")
            for c in range(4)
        ],
        1,
    )
    torch.testing.assert_close(
        focalkit.sigmoid_focal_loss(logits, y, gamma=torch.arange(4.0), reduction="none"), per_class
    )


def test_tensor_gamma_errors():
    logits, target = torch.randn(6, 4), torch.randint(0, 4, (6,))
    with pytest.raises(
        ValueError,
        match=r"gamma of shape \(5,\) does not broadcast to the unreduced loss of shape \(6,\)",
    ):
        focalkit.softmax_focal_loss(logits, target, gamma=torch.ones(5))
    with pytest.raises(ValueError, match=r"gamma values must be >= 0"):
        focalkit.softmax_focal_loss(logits, target, gamma=-torch.ones(6))
    with pytest.raises(
        TypeError, match=r"nll_focal_loss\(\): gamma must be a real number >= 0, got a tensor"
    ):
        focalkit.nll_focal_loss(logits.log_softmax(1), target, gamma=torch.ones(6))
