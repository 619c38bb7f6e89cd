"""Class-index targets of every integer dtype, against F.cross_entropy and the float64 oracle.

``F.cross_entropy`` takes int64 and uint8 targets; focalkit takes every integer dtype and compares
it with ``ignore_index`` without wrapping around (as uint8, -100 would read 156).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import softmax_focal_oracle

import focalkit

INTEGER_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
UNSIGNED_WIDE = [torch.uint16, torch.uint32, torch.uint64]
SOFTMAX_ENTRY_POINTS = ["softmax", "nll", "fused"]


def _focal(name, logits, target, **kwargs):
    """Each class-index entry point on the same logits (the fused one through an identity head)."""
    if name == "softmax":
        return focalkit.softmax_focal_loss(logits, target, **kwargs)
    if name == "nll":
        kwargs.pop("label_smoothing", None)
        return focalkit.nll_focal_loss(logits.log_softmax(1), target, **kwargs)
    head = torch.eye(logits.shape[1], dtype=logits.dtype)
    return focalkit.linear_softmax_focal_loss(logits, head, target, **kwargs)


def test_uint8_class_156_is_not_read_as_ignore_index_minus_100():
    # As uint8, -100 wraps around to 156.
    logits = torch.randn(4, 200, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([3, 156, 10, 199], dtype=torch.uint8)
    expected = F.cross_entropy(logits, target)  # cross_entropy takes uint8 targets
    torch.testing.assert_close(expected, F.cross_entropy(logits, target.long()))
    for name in SOFTMAX_ENTRY_POINTS:
        torch.testing.assert_close(_focal(name, logits, target, gamma=0.0), expected)
        torch.testing.assert_close(
            _focal(name, logits, target, gamma=0.0, reduction="none"),
            F.cross_entropy(logits, target, reduction="none"),
        )
    gamma = focalkit.sample_dependent_gamma(logits, target, (1e-3,), (5.0, 1.0))
    p_t = logits.softmax(1)[torch.arange(4), target.long()]
    torch.testing.assert_close(gamma, torch.where(p_t >= 1e-3, 1.0, 5.0))


@pytest.mark.parametrize("name", [*SOFTMAX_ENTRY_POINTS, "sample_gamma"])
@pytest.mark.parametrize(
    ("dtype", "bad", "ignore_index"),
    [
        (torch.uint8, 255, -1),  # -1 wraps around to 255 as uint8
        (torch.int8, -1, 255),  # 255 wraps around to -1 as int8
        (torch.int16, -1, 65535),
        (torch.uint8, 10, -246),  # -246 wraps around to 10 as uint8
    ],
)
def test_out_of_range_target_is_not_taken_for_a_wrapped_ignore_index(
    name, dtype, bad, ignore_index
):
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, bad, 2, 3]).to(dtype)
    message = r"target class indices must be in \[0, 10\) or equal ignore_index="
    if name == "sample_gamma":
        with pytest.raises(ValueError, match=message + str(ignore_index)):
            focalkit.sample_dependent_gamma(logits, target, ignore_index=ignore_index)
    else:
        with pytest.raises(ValueError, match=message + str(ignore_index)):
            _focal(name, logits, target, ignore_index=ignore_index)


def test_uint64_targets_from_two_to_the_63_up_are_out_of_range():
    logits = torch.randn(2, 5, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([1, 2**64 - 100], dtype=torch.uint64)  # int64 would read -100
    with pytest.raises(ValueError, match=r"target class indices must be in \[0, 5\)"):
        focalkit.softmax_focal_loss(logits, target)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from(INTEGER_DTYPES + UNSIGNED_WIDE),
    name=st.sampled_from(SOFTMAX_ENTRY_POINTS),
    reduction=st.sampled_from(["none", "mean", "sum"]),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    label_smoothing=st.sampled_from([0.0, 0.1]),
)
def test_every_integer_dtype_gives_the_oracle_and_cross_entropy(
    data, dtype, name, reduction, gamma, label_smoothing
):
    high = min(int(torch.iinfo(dtype).max), 300)
    classes = data.draw(st.integers(2, high), label="classes")
    batch = data.draw(st.integers(1, 6), label="batch")
    values = st.integers(0, classes - 1)
    target_list = data.draw(st.lists(values, min_size=batch, max_size=batch), label="target")
    # ignore_index: a class present in the batch, a value the dtype cannot hold, or the default.
    low, top = int(torch.iinfo(dtype).min), int(torch.iinfo(dtype).max)
    candidates = [target_list[0], -100, low - 1, top + 1, top - classes]
    int64 = torch.iinfo(torch.int64)
    candidates = [value for value in candidates if int64.min <= value <= int64.max]
    ignore_index = data.draw(st.sampled_from(candidates), label="ignore")
    if name == "nll":
        label_smoothing = 0.0
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    logits = torch.randn(batch, classes, dtype=torch.float64, generator=generator) * 3
    target = torch.tensor(target_list).to(dtype)
    kwargs = {"ignore_index": ignore_index, "reduction": reduction, "gamma": gamma}
    got = _focal(name, logits, target, label_smoothing=label_smoothing, **kwargs)
    expected = softmax_focal_oracle(
        logits.numpy(), np.array(target_list), label_smoothing=label_smoothing, **kwargs
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
    if gamma == 0:
        # F.cross_entropy accepts uint8 targets, but with label smoothing it compares them with an
        # ignore_index wrapped into uint8 (256 ignores class 0): its int64 path is the reference.
        reference = target.long()
        ce = F.cross_entropy(
            logits, reference, ignore_index=ignore_index, reduction=reduction,
            label_smoothing=label_smoothing,
        )  # fmt: skip
        torch.testing.assert_close(got, ce, rtol=1e-9, atol=1e-12, equal_nan=True)
