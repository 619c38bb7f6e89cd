"""Vocabulary-parallel focal loss: real torch.distributed (gloo, spawned processes).

One spawn of four processes holds every group size P = 1, 2, 3, 4: the process groups of the
first P ranks (``group=`` a subgroup for P < 4, the default group for P = 4), so that four
interpreters import torch instead of ten. In each group every rank computes many cases on its
slice of the classes and sends back its loss, its slice's gradient and the collectives it made.
The parent compares them with ``softmax_focal_loss`` on the gathered logits (and, at
``gamma=0``, with ``F.cross_entropy``), in float64.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from process_group import run

from focalkit import linear_softmax_focal_loss, softmax_focal_loss
from focalkit.torch._kernels import use_kernels
from focalkit.torch._vocab_parallel import (
    vocab_parallel_linear_softmax_focal_loss,
    vocab_parallel_softmax_focal_loss,
)

TOL = {"rtol": 1e-10, "atol": 1e-12}
GROUP_SIZES = (1, 2, 3, 4)  # 3: uneven slices of every class count
SPAWN_TIMEOUT = 120.0
COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "broadcast",
    "gather",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "scatter",
)


def shard_sizes(num_classes: int, world_size: int, seed: int) -> list[int]:
    """Uneven contiguous slices (one may be empty), the same in every process."""
    if world_size == 1:
        return [num_classes]
    rng = random.Random(seed)
    cuts = sorted(rng.randint(0, num_classes) for _ in range(world_size - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, num_classes], strict=True)]
    if seed % 3 and num_classes >= world_size:  # mostly non-empty slices
        while 0 in sizes:
            i, j = sizes.index(0), sizes.index(max(sizes))
            sizes[i], sizes[j] = 1, sizes[j] - 1
    return sizes


def random_case(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "seed": seed,
        "classes": rng.choice([2, 5, 11, 13]),
        "spatial": rng.choice([(), (), (3,), (2, 2)]),
        "rows": rng.choice([1, 4, 6]),
        "probabilities": rng.random() < 0.3,
        "weight": rng.random() < 0.5,
        "alpha": rng.choice([None, None, 0.25, "tensor", "class"]),
        "ignore": rng.random() < 0.5,
        "smoothing": rng.choice([0.0, 0.0, 0.1, 0.35]),
        "gamma": rng.choice([0.0, 0.3, 1.0, 2.0, 3.5]),
        "reduction": rng.choice(["mean", "sum", "none"]),
        "divisor": rng.choice([None, None, 2.5, "tensor"]),
        "scale": rng.choice([1.0, 4.0]),
    }


# Every option on its own, then random combinations.
FIXED = [
    {},
    {"gamma": 0.0},
    {"gamma": 0.5},
    {"weight": True},
    {"alpha": "class"},
    {"alpha": 0.25},
    {"ignore": True},
    {"smoothing": 0.2},
    {"smoothing": 0.2, "weight": True, "alpha": "class", "ignore": True},
    {"probabilities": True},
    {"probabilities": True, "smoothing": 0.1, "weight": True, "alpha": "class"},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"reduction": "none", "smoothing": 0.3},
    {"divisor": 3.0},
    {"divisor": "tensor", "weight": True},
    {"spatial": (3,)},
    {"spatial": (2, 2), "probabilities": True},
    {"spatial": (2, 2), "smoothing": 0.1, "ignore": True},
    {"scale": 30.0, "gamma": 0.2},  # confident logits
    {"all_ignored": True},
    {"gamma": 0.0, "smoothing": 0.2, "weight": True, "ignore": True},
    {"gamma": 0.0, "probabilities": True, "smoothing": 0.1, "weight": True},
    {"gamma": 0.0, "spatial": (2, 2), "weight": True, "reduction": "none"},
]
DEFAULTS: dict[str, Any] = {
    "classes": 11,
    "spatial": (),
    "rows": 5,
    "probabilities": False,
    "weight": False,
    "alpha": None,
    "ignore": False,
    "smoothing": 0.0,
    "gamma": 2.0,
    "reduction": "mean",
    "divisor": None,
    "scale": 3.0,
    "all_ignored": False,
}
CASES = [{**DEFAULTS, "seed": 100 + i, **case} for i, case in enumerate(FIXED)] + [
    {**DEFAULTS, **random_case(seed)} for seed in range(36)
]


def build(case: dict[str, Any]) -> dict[str, Any]:
    """The whole problem of a case (the same in every process): full logits and arguments."""
    g = torch.Generator().manual_seed(case["seed"])
    c, shape = case["classes"], (case["rows"], case["classes"], *case["spatial"])
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * case["scale"]
    if case["probabilities"]:
        target: torch.Tensor = torch.softmax(
            torch.randn(shape, generator=g, dtype=torch.float64), 1
        )
    else:
        target = torch.randint(0, c, (shape[0], *shape[2:]), generator=g)
        if case["ignore"]:
            target.view(-1)[:: max(2, target.numel() // 3)] = -7
        if case["all_ignored"]:
            target.fill_(-7)
    kwargs: dict[str, Any] = {
        "gamma": case["gamma"],
        "reduction": case["reduction"],
        "label_smoothing": case["smoothing"],
        "ignore_index": -7,
    }
    if case["weight"]:
        kwargs["weight"] = torch.rand(c, generator=g, dtype=torch.float64) + 0.1
    if case["alpha"] == "class":
        kwargs["alpha"] = torch.rand(c, generator=g, dtype=torch.float64)
    elif case["alpha"] == "tensor":
        kwargs["alpha"] = torch.tensor(0.6, dtype=torch.float64)
    elif case["alpha"] is not None:
        kwargs["alpha"] = case["alpha"]
    if case["divisor"] is not None and case["reduction"] == "mean":
        kwargs["divisor"] = (
            torch.tensor(7.5, dtype=torch.float64) if case["divisor"] == "tensor" else 2.5
        )
    out_shape = (shape[0], *shape[2:]) if case["reduction"] == "none" else ()
    grad_out = torch.rand(out_shape, generator=g, dtype=torch.float64) + 0.5
    return {"logits": logits, "target": target, "kwargs": kwargs, "grad_out": grad_out}


def fused_cases() -> list[dict[str, Any]]:
    rng = random.Random(5)
    cases = []
    for i in range(12):
        cases.append(
            {
                "seed": 500 + i,
                "rows": rng.choice([(7,), (2, 3)]),
                "classes": rng.choice([9, 17]),
                "hidden": 4,
                "bias": i % 2 == 0,
                "weight": i % 3 == 0,
                "alpha": [None, 0.5, "class"][i % 3],
                "smoothing": 0.2 if i % 4 == 1 else 0.0,
                "gamma": [2.0, 0.0, 0.5, 1.5][i % 4],
                "reduction": ["mean", "sum", "none"][i % 3],
                "chunk": rng.choice([None, 2, 3]),
                "divisor": 4.0 if i == 6 else None,
            }
        )
    return cases


def build_fused(case: dict[str, Any]) -> dict[str, Any]:
    g = torch.Generator().manual_seed(case["seed"])
    c, d = case["classes"], case["hidden"]
    hidden = torch.randn(*case["rows"], d, generator=g, dtype=torch.float64)
    classifier = torch.randn(c, d, generator=g, dtype=torch.float64)
    bias = torch.randn(c, generator=g, dtype=torch.float64) if case["bias"] else None
    target = torch.randint(0, c, case["rows"], generator=g)
    target.view(-1)[1] = -100
    kwargs: dict[str, Any] = {
        "gamma": case["gamma"],
        "reduction": case["reduction"],
        "label_smoothing": case["smoothing"],
    }
    if case["weight"]:
        kwargs["weight"] = torch.rand(c, generator=g, dtype=torch.float64) + 0.1
    if case["alpha"] == "class":
        kwargs["alpha"] = torch.rand(c, generator=g, dtype=torch.float64)
    elif case["alpha"] is not None:
        kwargs["alpha"] = case["alpha"]
    if case["divisor"] is not None:
        kwargs["divisor"] = case["divisor"]
    out_shape = case["rows"] if case["reduction"] == "none" else ()
    grad_out = torch.rand(out_shape, generator=g, dtype=torch.float64) + 0.5
    return {
        "hidden": hidden,
        "classifier": classifier,
        "bias": bias,
        "target": target,
        "kwargs": kwargs,
        "grad_out": grad_out,
    }


def _slice(sizes: list[int], rank: int) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


class Counter:
    """Counts the calls of torch.distributed's collectives (wrapped for this process)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        for name in COLLECTIVES:
            original = getattr(dist, name)
            setattr(dist, name, self._counting(name, original))

    def _counting(self, name: str, original: Any) -> Any:
        def collective(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return original(*args, **kwargs)

        return collective

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


def run_unfused(
    rank: int, world_size: int, case: dict[str, Any], counter: Counter, group: Any
) -> Any:
    problem = build(case)
    sizes = shard_sizes(case["classes"], world_size, case["seed"])
    part = _slice(sizes, rank)
    x = problem["logits"][:, part].clone().requires_grad_()
    target = problem["target"]
    if target.is_floating_point():
        target = target[:, part]
    counter.take()
    loss = vocab_parallel_softmax_focal_loss(x, target, group=group, **problem["kwargs"])
    forward = counter.take()
    (loss * problem["grad_out"]).sum().backward()  # (no explicit grad: no sympy import)
    backward = counter.take()
    return loss.detach(), x.grad, sizes, forward, backward


def run_fused(
    rank: int, world_size: int, case: dict[str, Any], counter: Counter, group: Any
) -> Any:
    problem = build_fused(case)
    sizes = shard_sizes(case["classes"], world_size, case["seed"] + 1)
    part = _slice(sizes, rank)
    hidden = problem["hidden"].clone().requires_grad_()
    classifier = problem["classifier"][part].clone().requires_grad_()
    bias = problem["bias"]
    if bias is not None:
        bias = bias[part].clone().requires_grad_()
    counter.take()
    loss = vocab_parallel_linear_softmax_focal_loss(
        hidden,
        classifier,
        problem["target"],
        bias=bias,
        chunk_size=case["chunk"],
        group=group,
        **problem["kwargs"],
    )
    forward = counter.take()
    (loss * problem["grad_out"]).sum().backward()
    backward = counter.take()
    grads = (hidden.grad, classifier.grad, None if bias is None else bias.grad)
    return loss.detach(), grads, sizes, forward, backward


def run_dtensor(rank: int, world_size: int) -> Any:
    """The natural call with a DTensor sharded on the classes (uneven with 11 classes)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world_size,))
    problem = build({**DEFAULTS, "seed": 900, "smoothing": 0.1, "weight": True})
    logits = distribute_tensor(problem["logits"], mesh, [Shard(1)]).requires_grad_()
    target = distribute_tensor(problem["target"], mesh, [Replicate()])
    loss = vocab_parallel_softmax_focal_loss(logits, target, **problem["kwargs"])
    loss.backward()
    assert logits.grad is not None
    return loss.detach(), logits.grad.full_tensor()


def run_errors(rank: int, world_size: int, group: Any) -> list[str]:
    """Errors that need the slices' total, raised alike in every process."""
    messages = []
    x = torch.randn(3, 2 + rank)
    total = sum(2 + r for r in range(world_size))
    for target, weight in (
        (torch.tensor([0, 1, 2]), torch.ones(total + 1)),  # weight of the wrong length
        (torch.tensor([0, total, 1]), None),  # a class index beyond the last class
    ):
        try:
            vocab_parallel_softmax_focal_loss(x, target, weight, group=group)
        except ValueError as error:
            messages.append(str(error))
        else:
            messages.append("no error")
    return messages


def child(rank: int, world_size: int) -> dict[int, dict[str, Any]]:
    """This rank's results in each group of the first P ranks it belongs to, by P."""
    assert world_size == max(GROUP_SIZES)
    counter = Counter()
    # every rank creates every group, in the same order; the whole world is the default group
    groups = {size: dist.new_group(list(range(size))) for size in GROUP_SIZES[:-1]}
    groups[world_size] = None
    results = {}
    for size, group in groups.items():
        if rank >= size:
            continue
        results[size] = {
            "unfused": [run_unfused(rank, size, case, counter, group) for case in CASES],
            "fused": [run_fused(rank, size, case, counter, group) for case in fused_cases()],
            "errors": run_errors(rank, size, group),
        }
    results[world_size]["dtensor"] = run_dtensor(rank, world_size)
    return results


def reference(problem: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    x = problem["logits"].clone().requires_grad_()
    loss = softmax_focal_loss(x, problem["target"], **problem["kwargs"])
    loss.backward(problem["grad_out"])
    assert x.grad is not None
    return loss.detach(), x.grad


def fused_reference(problem: dict[str, Any]) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    tensors = [problem["hidden"], problem["classifier"], problem["bias"]]
    leaves = [None if t is None else t.clone().requires_grad_() for t in tensors]
    hidden, classifier, bias = leaves
    assert hidden is not None
    assert classifier is not None
    logits = F.linear(hidden, classifier, bias)
    loss = softmax_focal_loss(logits.movedim(-1, 1), problem["target"], **problem["kwargs"])
    loss.backward(problem["grad_out"])
    return loss.detach(), [None if t is None else t.grad for t in leaves]


def expected_forward(world_size: int, one_hot: bool) -> list[str]:
    if world_size == 1:
        return []
    return ["all_reduce"] * (2 if one_hot else 3)


@functools.cache
def spawned() -> list[dict[int, dict[str, Any]]]:
    return run(child, max(GROUP_SIZES), timeout=SPAWN_TIMEOUT)


@pytest.fixture(params=GROUP_SIZES, ids=lambda p: f"P={p}")
def results(request: pytest.FixtureRequest) -> tuple[int, list[dict[str, Any]]]:
    """The group of the first P ranks: its size and each member's results in rank order."""
    size = int(request.param)
    return size, [ranks[size] for ranks in spawned()[:size]]


def test_every_option_equals_the_gathered_loss(results: Any) -> None:
    world_size, ranks = results
    for i, case in enumerate(CASES):
        problem = build(case)
        loss, grad = reference(problem)
        parts = [rank["unfused"][i] for rank in ranks]
        sizes = parts[0][2]
        assert sum(sizes) == case["classes"]
        for r, (value, _, _, forward, backward) in enumerate(parts):
            torch.testing.assert_close(value, loss, **TOL, equal_nan=True, msg=f"{case} rank {r}")
            assert torch.equal(value.nan_to_num(), parts[0][0].nan_to_num()), "ranks differ"
            one_hot = not case["probabilities"] and case["smoothing"] == 0
            assert forward == expected_forward(world_size, one_hot), case
            assert backward == [], case
        gathered = torch.cat([part[1] for part in parts], 1)
        torch.testing.assert_close(gathered, grad, **TOL, equal_nan=True, msg=str(case))


def test_gamma_zero_is_cross_entropy(results: Any) -> None:
    """At gamma=0 without alpha, PyTorch's own cross-entropy on the gathered logits."""
    _, ranks = results
    checked = 0
    for i, case in enumerate(CASES):
        problem = build(case)
        kwargs = dict(problem["kwargs"])
        if case["gamma"] != 0 or "alpha" in kwargs or case["all_ignored"]:
            continue
        gamma, divisor = kwargs.pop("gamma"), kwargs.pop("divisor", None)
        assert gamma == 0
        x = problem["logits"].clone().requires_grad_()
        if divisor is not None:
            kwargs["reduction"] = "sum"
        expected = F.cross_entropy(x, problem["target"], **kwargs)
        if divisor is not None:
            expected = expected / divisor
        expected.backward(problem["grad_out"])
        parts = [rank["unfused"][i] for rank in ranks]
        for value, *_ in parts:
            torch.testing.assert_close(value, expected.detach(), **TOL)
        torch.testing.assert_close(torch.cat([part[1] for part in parts], 1), x.grad, **TOL)
        checked += 1
    assert checked >= 5


def test_fused_equals_the_unfused_single_process_loss(results: Any) -> None:
    world_size, ranks = results
    for i, case in enumerate(fused_cases()):
        problem = build_fused(case)
        loss, (grad_hidden, grad_classifier, grad_bias) = fused_reference(problem)
        parts = [rank["fused"][i] for rank in ranks]
        for r, (value, grads, _, forward, backward) in enumerate(parts):
            torch.testing.assert_close(value, loss, **TOL, msg=f"{case} rank {r}")
            torch.testing.assert_close(grads[0], grad_hidden, **TOL, msg=f"{case} rank {r}")
            assert forward == expected_forward(world_size, case["smoothing"] == 0), case
            assert backward == ([] if world_size == 1 else ["all_reduce"]), case
        gathered = torch.cat([part[1][1] for part in parts])
        torch.testing.assert_close(gathered, grad_classifier, **TOL, msg=str(case))
        if grad_bias is not None:
            torch.testing.assert_close(torch.cat([part[1][2] for part in parts]), grad_bias, **TOL)


def test_dtensor_sharded_on_the_classes() -> None:
    """On the whole world's mesh only: DTensor's first use takes seconds in each process."""
    ranks = [by_size[max(GROUP_SIZES)] for by_size in spawned()]
    problem = build({**DEFAULTS, "seed": 900, "smoothing": 0.1, "weight": True})
    problem["grad_out"] = torch.tensor(1.0, dtype=torch.float64)
    loss, grad = reference(problem)
    for value, full_grad in (rank["dtensor"] for rank in ranks):
        torch.testing.assert_close(value, loss, **TOL)
        torch.testing.assert_close(full_grad, grad, **TOL)


def test_errors_that_need_the_slices_total(results: Any) -> None:
    world_size, ranks = results
    total = sum(2 + r for r in range(world_size))
    for messages in (rank["errors"] for rank in ranks):
        assert "weight and alpha must have one value per class over the group" in messages[0]
        assert f"must be in [0, {total})" in messages[1]


# --- one process, no process group ---------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    case=st.builds(
        random_case, st.integers(min_value=0, max_value=10_000).map(lambda s: s + 10_000)
    )
)
def test_without_a_process_group_is_softmax_focal_loss(case: dict[str, Any]) -> None:
    assert not dist.is_initialized()
    problem = build({**DEFAULTS, **case})
    loss, grad = reference(problem)
    x = problem["logits"].clone().requires_grad_()
    value = vocab_parallel_softmax_focal_loss(x, problem["target"], **problem["kwargs"])
    value.backward(problem["grad_out"])
    torch.testing.assert_close(value.detach(), loss, **TOL, equal_nan=True)
    torch.testing.assert_close(x.grad, grad, **TOL, equal_nan=True)


def test_fused_without_a_process_group_is_linear_softmax_focal_loss() -> None:
    for case in fused_cases():
        problem = build_fused(case)
        kwargs = problem["kwargs"]
        tensors = [problem["hidden"], problem["classifier"], problem["bias"]]
        leaves = [[None if t is None else t.clone().requires_grad_() for t in tensors]]
        leaves.append([None if t is None else t.clone().requires_grad_() for t in tensors])
        ours = vocab_parallel_linear_softmax_focal_loss(
            *leaves[0][:2], problem["target"], bias=leaves[0][2], chunk_size=case["chunk"], **kwargs
        )
        theirs = linear_softmax_focal_loss(
            *leaves[1][:2], problem["target"], bias=leaves[1][2], **kwargs
        )
        ours.backward(problem["grad_out"])
        theirs.backward(problem["grad_out"])
        torch.testing.assert_close(ours.detach(), theirs.detach(), **TOL)
        for a, b in zip(leaves[0], leaves[1], strict=True):
            if b is not None:
                torch.testing.assert_close(a.grad, b.grad, **TOL)


def test_unbatched_and_float32() -> None:
    x = torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(
        vocab_parallel_softmax_focal_loss(x, torch.tensor(3), reduction="none"),
        softmax_focal_loss(x, torch.tensor(3), reduction="none"),
        **TOL,
    )
    x32 = torch.randn(4, 9, 2) * 5
    target = torch.randint(0, 9, (4, 2))
    torch.testing.assert_close(
        vocab_parallel_softmax_focal_loss(x32, target, label_smoothing=0.1, gamma=0.5),
        softmax_focal_loss(x32, target, label_smoothing=0.1, gamma=0.5),
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduction": "sum", "divisor": 2.0}, "divisor"),
        ({"divisor": 0.0}, "divisor"),
        ({"divisor": -1.0}, "divisor"),
        ({"divisor": float("inf")}, "divisor"),
        ({"divisor": float("nan")}, "divisor"),
        ({"gamma": -1.0}, "gamma"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"weight": torch.ones(3), "alpha": torch.ones(4)}, "alpha"),
        ({"weight": torch.ones(2, 2)}, "weight"),
        ({"group": object()}, "group"),
    ],
)
def test_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        vocab_parallel_softmax_focal_loss(torch.randn(2, 3), torch.tensor([0, 1]), **kwargs)


def test_target_errors() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"must be in \[0, 3\)"):
        vocab_parallel_softmax_focal_loss(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"must be in \[0, 3\)"):
        vocab_parallel_softmax_focal_loss(x, torch.tensor([0, 5]), torch.ones(3))
    with pytest.raises(ValueError, match="target"):
        vocab_parallel_softmax_focal_loss(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="classifier"):
        vocab_parallel_linear_softmax_focal_loss(x, torch.randn(3), torch.tensor([0, 1]))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_nan_in_is_nan_out_and_ignored_elements_stay_out(smoothing: float) -> None:
    """NaN logits give a NaN loss where the target is kept, and 0 where it is ignored, as the
    autograd definition of softmax_focal_loss gives."""
    x = torch.randn(3, 5, dtype=torch.float64)
    x[1, 2] = x[2, 0] = float("nan")
    target = torch.tensor([0, -100, 2])
    with use_kernels(False):
        expected = softmax_focal_loss(x, target, reduction="none", label_smoothing=smoothing)
    value = vocab_parallel_softmax_focal_loss(
        x, target, reduction="none", label_smoothing=smoothing
    )
    assert value[1] == 0
    assert value[2].isnan()
    torch.testing.assert_close(value, expected, **TOL, equal_nan=True)
