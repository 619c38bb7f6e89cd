"""focalkit.torch.distributed: one optimizer step over micro-batches and processes trains the
whole global batch's 'mean'.

The multi-process tests spawn one real gloo process group of 4 processes
(``process_group.run``): every case runs there on the whole world (the default group), then on
ranks 0 and 1 alone (``group=`` a subgroup of 2, with DDP's and FSDP2's own process group set
to it), and the tests read the results.
Each case trains a small float64 model for a few steps under ``DistributedDataParallel`` (and one
under FSDP2's ``fully_shard``) with gradient accumulation over micro-batches of unequal sizes,
``ignore_index`` shares and class weights, ranks holding different numbers of micro-batches; the
reference is one process (this one) training on the concatenated global batch with one call's
``'mean'``. The per-call ``'mean'`` divided by the number of micro-batches, what a loop without
these helpers computes, is trained beside it and must differ.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import process_group
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from focalkit import linear_softmax_focal_loss, sigmoid_focal_loss, softmax_focal_loss
from focalkit.torch import distributed
from focalkit.torch.distributed import global_divisor, global_mean_loss, mean_divisor

TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}
FEATURES, HIDDEN, CLASSES, POSITIONS = 6, 7, 5, 3
STEPS, LEARNING_RATE = 3, 0.5
IGNORE_INDEX = -1
WEIGHT = (0.5, 2.0, 1.0, 3.0, 0.25)
ALPHA = (0.25, 0.5, 0.75, 1.0, 0.4)  # never enters the divisor
IGNORED_SHARE = (0.0, 0.6, 0.3, 0.8, 0.1)  # unequal padding from one micro-batch to the next
WORLD_SIZES = (2, 4)
SPAWN_TIMEOUT = 120.0


# --- the cases: data, model, loss and its whole-batch reference -------------------------------


class Case(NamedTuple):
    kind: distributed.DivisorKind
    target: str  # "class_index", "probability" or "multi_label"
    model: Callable[[], nn.Module]
    loss: Callable[..., Tensor]  # (output, target, **divisor) -> the call's loss
    reference: Callable[..., Tensor]  # (output, target) -> the whole batch's 'mean'
    weight: tuple[float, ...] | None = None


def _mlp(outputs: int = CLASSES) -> nn.Module:
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"dtype": torch.float64}
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN, **kwargs), nn.Tanh(), nn.Linear(HIDDEN, outputs, **kwargs)
    )


class _Positions(nn.Module):
    """(n, POSITIONS, FEATURES) -> logits (n, CLASSES, POSITIONS): a (N, C, d1) input."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = _mlp()

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x).transpose(1, 2)


class _Head(nn.Module):
    """Hidden states and a classifier's weight, for the fused loss: the logits never exist."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(FEATURES, HIDDEN, dtype=torch.float64)
        self.classifier = nn.Parameter(torch.randn(CLASSES, HIDDEN, dtype=torch.float64) / 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.tanh(self.body(x)), self.classifier


def _weight() -> Tensor:
    return torch.tensor(WEIGHT, dtype=torch.float64)


def _softmax(output: Tensor, target: Tensor, **divisor: Tensor) -> Tensor:
    return softmax_focal_loss(
        output, target, _weight(), IGNORE_INDEX, "mean", 0.1, gamma=2.0, alpha=ALPHA, **divisor
    )


def _cross_entropy_as_focal(output: Tensor, target: Tensor, **divisor: Tensor) -> Tensor:
    return softmax_focal_loss(
        output, target, _weight(), IGNORE_INDEX, gamma=0.0, alpha=None, **divisor
    )


def _cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(output, target, _weight(), ignore_index=IGNORE_INDEX)


def _fused(output: tuple[Tensor, Tensor], target: Tensor, **divisor: Tensor) -> Tensor:
    hidden, classifier = output
    return linear_softmax_focal_loss(
        hidden,
        classifier,
        target,
        weight=_weight(),
        ignore_index=IGNORE_INDEX,
        gamma=2.0,
        alpha=ALPHA,
        chunk_size=3,
        **divisor,
    )


def _unfused(output: tuple[Tensor, Tensor], target: Tensor) -> Tensor:
    hidden, classifier = output
    logits = F.linear(hidden, classifier)
    return softmax_focal_loss(logits, target, _weight(), IGNORE_INDEX, gamma=2.0, alpha=ALPHA)


def _probability(output: Tensor, target: Tensor, **divisor: Tensor) -> Tensor:
    return softmax_focal_loss(output, target, gamma=1.5, alpha=0.3, **divisor)


def _sigmoid(output: Tensor, target: Tensor, **divisor: Tensor) -> Tensor:
    return sigmoid_focal_loss(output, target, gamma=2.0, alpha=0.25, **divisor)


CASES = {
    # class weights, ignore_index, label smoothing and per-class alpha
    "softmax": Case("class_index", "class_index", _mlp, _softmax, _softmax, WEIGHT),
    # gamma=0: the reference is PyTorch's own weighted cross-entropy on the whole batch
    "cross_entropy": Case(
        "class_index", "class_index", _mlp, _cross_entropy_as_focal, _cross_entropy, WEIGHT
    ),
    # the fused loss, against the unfused composition on the whole batch
    "fused": Case("class_index", "class_index", _Head, _fused, _unfused, WEIGHT),
    # class-probability targets of shape (n, C, d1): N d1 elements
    "probability": Case("probability", "probability", _Positions, _probability, _probability),
    # multi-label sigmoid: n C elements, n unequal
    "sigmoid": Case("elementwise", "multi_label", _mlp, _sigmoid, _sigmoid),
}
CASE_NAMES = list(CASES)


def micro_batch_count(rank: int, uneven: bool) -> int:
    # Unequal between ranks under DDP, which communicates once per step on each. FSDP gathers
    # the parameters in every forward: every rank must run as many micro-batches.
    return 2 + rank % 2 if uneven else 2


def step_data(
    name: str, world_size: int, step: int, uneven: bool = True
) -> list[list[tuple[Tensor, Tensor]]]:
    """Every rank's micro-batches of one step: ``[rank][micro_batch] = (input, target)``.

    Every draw names its dtype: the spawned ranks default to float64, this process does not.
    """
    case = CASES[name]
    generator = torch.Generator().manual_seed(
        1000 * CASE_NAMES.index(name) + 10 * world_size + step
    )
    data = []
    for rank in range(world_size):
        micro_batches = []
        for k in range(micro_batch_count(rank, uneven)):
            n = int(torch.randint(1, 10, (), generator=generator))
            shape = (n, POSITIONS, FEATURES) if case.target == "probability" else (n, FEATURES)
            x = torch.randn(shape, generator=generator, dtype=torch.float64)
            if case.target == "class_index":
                y = torch.randint(0, CLASSES, (n,), generator=generator)
                share = IGNORED_SHARE[(rank + 2 * k + step) % len(IGNORED_SHARE)]
                ignored = torch.rand(n, generator=generator, dtype=torch.float64) < share
                ignored[0] = False  # the per-call 'mean' needs one kept target
                y[ignored] = IGNORE_INDEX
            elif case.target == "probability":
                shape = (n, CLASSES, POSITIONS)
                y = (2 * torch.randn(shape, generator=generator, dtype=torch.float64)).softmax(1)
            else:
                y = (
                    torch.rand(n, CLASSES, generator=generator, dtype=torch.float64) < 0.3
                ).double()
            micro_batches.append((x, y))
        data.append(micro_batches)
    return data


def expected_divisor(name: str, targets: list[Tensor]) -> float:
    """The whole batch's 'mean' divisor, written out for each kind."""
    case = CASES[name]
    if case.kind == "class_index":
        weight = _weight()
        return sum(float(weight[y[y != IGNORE_INDEX]].sum()) for y in targets)
    if case.kind == "probability":
        return float(sum(y.shape[0] * y.shape[2] for y in targets))
    return float(sum(y.numel() for y in targets))


# --- one rank of a spawned group --------------------------------------------------------------


def _grads(model: nn.Module) -> list[Tensor]:
    grads = []
    for parameter in model.parameters():
        grad = parameter.grad
        assert grad is not None
        full = getattr(grad, "full_tensor", None)  # FSDP2: a DTensor shard
        grads.append((full() if full is not None else grad).detach().clone())
    return grads


def _parameters(model: nn.Module) -> list[Tensor]:
    values = []
    for parameter in model.parameters():
        full = getattr(parameter, "full_tensor", None)
        values.append((full() if full is not None else parameter).detach().clone())
    return values


def _train(
    name: str, rank: int, world_size: int, group: Any, *, exact: bool, wrapper: str = "ddp"
) -> dict[str, Any]:
    """``STEPS`` optimizer steps of this rank in ``group`` (of ``world_size`` processes, this
    rank's place in it ``rank``); the gradients of each, and the parameters after."""
    case = CASES[name]
    module = case.model()
    if wrapper == "ddp":
        model: nn.Module = nn.parallel.DistributedDataParallel(module, process_group=group)

        def syncing(sync: bool) -> contextlib.AbstractContextManager[Any]:
            return contextlib.nullcontext() if sync else model.no_sync()
    else:
        from torch.distributed.device_mesh import DeviceMesh
        from torch.distributed.fsdp import fully_shard

        mesh = None if group is None else DeviceMesh.from_group(group, "cpu")
        for layer in module.children():
            if any(True for _ in layer.parameters()):
                fully_shard(layer, mesh=mesh)
        model = fully_shard(module, mesh=mesh)

        def syncing(sync: bool) -> contextlib.AbstractContextManager[Any]:
            model.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()

    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    grads, logged, divisors = [], [], []
    for step in range(STEPS):
        micro_batches = step_data(name, world_size, step, wrapper == "ddp")[rank]
        if exact:
            divisor = global_divisor(
                [y for _, y in micro_batches],
                kind=case.kind,
                weight=case.weight,
                ignore_index=IGNORE_INDEX,
                group=group,
            )
            divisors.append(float(divisor))
        losses = []
        for k, (x, y) in enumerate(micro_batches):
            with syncing(k == len(micro_batches) - 1):
                if exact:
                    loss = case.loss(model(x), y, divisor=divisor)
                else:  # the per-call 'mean', averaged over the micro-batches
                    loss = case.loss(model(x), y) / len(micro_batches)
                loss.backward()
            losses.append(loss.detach())
        if exact:
            logged.append(float(global_mean_loss(losses, group=group)))
        grads.append(_grads(model))
        optimizer.step()
        optimizer.zero_grad()
    return {
        "grads": grads,
        "parameters": _parameters(model),
        "logged": logged,
        "divisors": divisors,
    }


def _collectives(rank: int, world_size: int, group: Any, halves: list[Any]) -> dict[str, Any]:
    """``async_op``, the halves of ``group``, and ``global_mean_loss`` over each."""
    targets = [y for _, y in step_data("softmax", world_size, 0)[rank]]
    kwargs: dict[str, Any] = {"kind": "class_index", "weight": WEIGHT, "ignore_index": IGNORE_INDEX}
    blocking = global_divisor(targets, group=group, **kwargs)
    pending, work = global_divisor(targets, async_op=True, group=group, **kwargs)
    assert work is not None
    work.wait()
    mine, other = halves if rank < world_size // 2 else halves[::-1]
    value = torch.tensor(float(rank + 1))
    try:
        global_divisor(targets, group=other, **kwargs)
        outsider = "no error"
    except ValueError as error:
        outsider = str(error)
    return {
        "outsider": outsider,
        "blocking": float(blocking),
        "async": float(pending),
        "async_dtype": str(pending.dtype),
        "subgroup": float(global_divisor(targets, group=mine, **kwargs)),
        "mean_loss": float(global_mean_loss(value, group=group)),
        "subgroup_mean_loss": float(global_mean_loss([value, value], group=mine)),
    }


def _in_group(rank: int, world_size: int, group: Any, halves: list[Any]) -> dict[str, Any]:
    """Every case on the processes of ``group`` (``None``: the default group)."""
    results: dict[str, Any] = {"collectives": _collectives(rank, world_size, group, halves)}
    for name in CASES:
        results[name] = {
            "exact": _train(name, rank, world_size, group, exact=True),
            "naive": _train(name, rank, world_size, group, exact=False),
        }
    fsdp = _train("softmax", rank, world_size, group, exact=True, wrapper="fsdp")
    results["fsdp"] = {"exact": fsdp}
    return results


def run_rank(rank: int, world_size: int) -> dict[int, dict[str, Any]]:
    """This rank's results on the whole world and, for ranks 0 and 1, on their group of 2."""
    assert world_size == 4
    # every rank creates every group, in the same order
    first, last = dist.new_group([0, 1]), dist.new_group([2, 3])
    singles = [dist.new_group([0]), dist.new_group([1])]
    results = {4: _in_group(rank, 4, None, [first, last])}
    if rank < 2:
        results[2] = _in_group(rank, 2, first, singles)
    return results


# --- the reference: one process, the whole global batch --------------------------------------


@functools.cache
def reference(name: str, world_size: int, uneven: bool = True) -> dict[str, Any]:
    case = CASES[name]
    model = case.model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    grads, losses = [], []
    for step in range(STEPS):
        pairs = [pair for rank in step_data(name, world_size, step, uneven) for pair in rank]
        x = torch.cat([x for x, _ in pairs])
        y = torch.cat([y for _, y in pairs])
        loss = case.reference(model(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([p.grad.detach().clone() for p in model.parameters()])
        optimizer.step()
        optimizer.zero_grad()
    return {
        "grads": grads,
        "parameters": [p.detach().clone() for p in model.parameters()],
        "losses": losses,
    }


@functools.cache
def _spawn() -> list[dict[int, dict[str, Any]]]:
    """One spawn for both group sizes: most of a spawn's time is its ranks importing torch."""
    return process_group.run(run_rank, max(WORLD_SIZES), timeout=SPAWN_TIMEOUT)


def spawned(world_size: int) -> list[dict[str, Any]]:
    """The results of the group of the first ``world_size`` ranks, in rank order."""
    return [ranks[world_size] for ranks in _spawn()[:world_size]]


def relative_difference(got: list[Tensor], want: list[Tensor]) -> float:
    """max |got - want| over every parameter's gradient, relative to max |want|."""
    difference = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    return difference / max(float(w.abs().max()) for w in want)


def assert_all_close(got: list[Tensor], want: list[Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOLERANCE)


# --- multi-process tests -------------------------------------------------------------------------
# The naive loop's first-step gradients differ from the global batch's by more than this
# (max |difference| / max |gradient|). Measured (torch 2.13, these seeds): 0.10 to 0.66 over the
# cases and world sizes, 0.18 for "softmax" on 2 processes; the exact loop's, 4e-16 at most.
NAIVE_MARGIN = 0.05


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_ddp_accumulation_trains_the_global_batch(name: str, world_size: int) -> None:
    want = reference(name, world_size)
    for rank, results in enumerate(spawned(world_size)):
        got = results[name]["exact"]
        for step in range(STEPS):
            assert_all_close(got["grads"][step], want["grads"][step])
        assert_all_close(got["parameters"], want["parameters"])
        # The logged loss is the global batch's 'mean' on every rank.
        torch.testing.assert_close(got["logged"], want["losses"], **TOLERANCE)
        for step in range(STEPS):
            targets = [y for r in step_data(name, world_size, step) for _, y in r]
            total = expected_divisor(name, targets)
            assert got["divisors"][step] == pytest.approx(total / world_size, rel=1e-12), rank


@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_naive_mean_differs(name: str, world_size: int) -> None:
    want = reference(name, world_size)
    got = spawned(world_size)[0][name]["naive"]
    difference = relative_difference(got["grads"][0], want["grads"][0])
    assert difference > NAIVE_MARGIN, f"{name}, {world_size} processes: {difference:.4f}"


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_fsdp2_averaging_trains_the_global_batch(world_size: int) -> None:
    want = reference("softmax", world_size, uneven=False)
    for results in spawned(world_size):
        got = results["fsdp"]["exact"]
        for step in range(STEPS):
            assert_all_close(got["grads"][step], want["grads"][step])
        assert_all_close(got["parameters"], want["parameters"])
        torch.testing.assert_close(got["logged"], want["losses"], **TOLERANCE)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_collectives(world_size: int) -> None:
    per_rank = [
        expected_divisor("softmax", [y for _, y in micro_batches])
        for micro_batches in step_data("softmax", world_size, 0)
    ]
    half = world_size // 2
    for rank, results in enumerate(spawned(world_size)):
        got = results["collectives"]
        assert got["blocking"] == pytest.approx(sum(per_rank) / world_size, rel=1e-12)
        assert got["async"] == got["blocking"]
        assert got["async_dtype"] == "torch.float64"
        members = per_rank[:half] if rank < half else per_rank[half:]
        assert got["subgroup"] == pytest.approx(sum(members) / len(members), rel=1e-12)
        ranks = range(half) if rank < half else range(half, world_size)
        assert got["mean_loss"] == pytest.approx(sum(range(1, world_size + 1)) / world_size)
        assert got["subgroup_mean_loss"] == pytest.approx(2 * sum(r + 1 for r in ranks) / half)
        assert got["outsider"] == f"global_divisor(): this process (rank {rank}) is not in group"


# --- one process, no process group ---------------------------------------------------------------


def _ratio(loss: Callable[..., Tensor], *args: Any, **kwargs: Any) -> float:
    """A PyTorch loss's 'sum' over its 'mean': the divisor its 'mean' used."""
    return float(loss(*args, reduction="sum", **kwargs) / loss(*args, reduction="mean", **kwargs))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    classes=st.integers(2, 6),  # one class: a loss of 0, and 0 / 0
    weighted=st.booleans(),
    ignore_index=st.sampled_from([-100, -1, 0, 3]),
    label_smoothing=st.sampled_from([0.0, 0.2]),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8]),
    seed=st.integers(0, 2**16),
)
def test_class_index_divisor_is_cross_entropys(
    shape: list[int],
    classes: int,
    weighted: bool,
    ignore_index: int,
    label_smoothing: float,
    dtype: torch.dtype,
    seed: int,
) -> None:
    assume(dtype != torch.uint8 or ignore_index >= 0)  # uint8 cannot hold a negative one
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < 0.4] = ignore_index
    assume(not bool((target == ignore_index).all()))  # else cross_entropy's 'mean' is nan
    input = torch.randn(shape[0], classes, *shape[1:], generator=generator, dtype=torch.float64)
    weight = (
        torch.rand(classes, generator=generator, dtype=torch.float64) + 0.1 if weighted else None
    )
    want = _ratio(
        F.cross_entropy,
        input,
        target,
        weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    got = mean_divisor(
        target.to(dtype), kind="class_index", weight=weight, ignore_index=ignore_index
    )
    assert got.dtype == torch.float64
    assert got.shape == ()
    assert float(got) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 4, 1), (3,)])
def test_probability_divisor_is_cross_entropys(shape: tuple[int, ...]) -> None:
    input = torch.randn(shape, dtype=torch.float64)
    target = torch.randn(shape, dtype=torch.float64).softmax(1 if len(shape) > 1 else 0)
    want = _ratio(F.cross_entropy, input, target)
    assert float(mean_divisor(target, kind="probability")) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("shape", [(7,), (4, 3), (2, 3, 5)])
def test_elementwise_divisor_is_binary_cross_entropys(shape: tuple[int, ...]) -> None:
    input = torch.randn(shape, dtype=torch.float64)
    target = torch.rand(shape, dtype=torch.float64)
    want = _ratio(F.binary_cross_entropy_with_logits, input, target)
    assert float(mean_divisor(target, kind="elementwise")) == pytest.approx(want, rel=1e-12)
    assert float(mean_divisor(target > 0.5, kind="elementwise")) == pytest.approx(want, rel=1e-12)


def test_single_process_accumulation_trains_the_whole_batch() -> None:
    """No process group: the divisor of every micro-batch together, and their sum logged."""
    assert not dist.is_initialized()
    micro_batches = step_data("cross_entropy", 3, 0)  # three 'ranks' as micro-batches of one
    pairs = [pair for rank in micro_batches for pair in rank]
    exact, naive = _mlp(), _mlp()
    divisor = global_divisor(
        [y for _, y in pairs], kind="class_index", weight=WEIGHT, ignore_index=IGNORE_INDEX
    )
    assert float(divisor) == pytest.approx(expected_divisor("cross_entropy", [y for _, y in pairs]))
    losses = []
    for x, y in pairs:
        loss = _cross_entropy_as_focal(exact(x), y, divisor=divisor)
        loss.backward()
        losses.append(loss.detach())
        (_cross_entropy_as_focal(naive(x), y) / len(pairs)).backward()
    whole = _mlp()
    want = _cross_entropy(whole(torch.cat([x for x, _ in pairs])), torch.cat([y for _, y in pairs]))
    want.backward()
    want_grads = [p.grad for p in whole.parameters()]
    assert_all_close([p.grad for p in exact.parameters()], want_grads)
    torch.testing.assert_close(global_mean_loss(losses), want.detach(), **TOLERANCE)
    naive_grads = [p.grad for p in naive.parameters()]
    assert relative_difference(naive_grads, want_grads) > NAIVE_MARGIN


def test_single_process_returns() -> None:
    targets = [torch.tensor([0, -100, 2]), torch.tensor([[1, 1], [-100, -100]])]
    divisor, work = global_divisor(targets, kind="class_index", async_op=True)
    assert work is None
    assert float(divisor) == 4.0
    assert float(global_divisor(targets[1], kind="class_index")) == 2.0
    assert float(global_divisor(targets, kind="elementwise")) == 7.0
    loss = global_mean_loss([torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.25)])
    assert loss.dtype == torch.float64
    assert float(loss) == 0.75
    # a bfloat16 value first does not round the float64 ones to bfloat16
    third = torch.tensor(1 / 3, dtype=torch.float64)
    loss = global_mean_loss([torch.tensor(0.25, dtype=torch.bfloat16), third, third])
    assert loss.dtype == torch.float64
    assert float(loss) == 0.25 + 1 / 3 + 1 / 3


ERRORS = [
    (lambda: mean_divisor(torch.tensor([0]), kind="classes"), ValueError, "kind must be one of"),
    (lambda: mean_divisor(torch.tensor([0.0]), kind="class_index"), TypeError, "floating dtype"),
    (
        lambda: mean_divisor(torch.tensor([0.0]), kind="class_index", weight=[1.0]),
        TypeError,
        "floating dtype",
    ),
    (lambda: mean_divisor(torch.tensor([True]), kind="class_index"), TypeError, "integer tensor"),
    (
        lambda: mean_divisor(torch.tensor([0, 1]), kind="probability"),
        TypeError,
        "kind='probability'",
    ),
    (lambda: mean_divisor(torch.tensor(0.5), kind="probability"), ValueError, "got \\(\\)"),
    (
        lambda: mean_divisor(torch.rand(2, 3), kind="elementwise", weight=[1.0]),
        ValueError,
        "weight only enters",
    ),
    (
        lambda: mean_divisor(torch.tensor([0]), kind="class_index", weight=[[1.0]]),
        ValueError,
        "weight must be a 1-D sequence",
    ),
    (
        lambda: mean_divisor(torch.tensor([0, 3]), kind="class_index", weight=[1.0, 2.0]),
        ValueError,
        "must be in \\[0, 2\\) or equal ignore_index=-100",
    ),
    (
        lambda: mean_divisor(torch.tensor([0]), kind="class_index", ignore_index=0.5),
        TypeError,
        "ignore_index",
    ),
    (lambda: mean_divisor([0, 1], kind="elementwise"), TypeError, "target must be a torch.Tensor"),
    (lambda: global_divisor([], kind="elementwise"), ValueError, "at least one tensor"),
    (lambda: global_divisor([[0, 1]], kind="elementwise"), TypeError, "holding list"),
    (lambda: global_divisor(3, kind="elementwise"), TypeError, "got int"),
    (
        lambda: global_divisor(torch.ones(2), kind="elementwise", group=object()),
        ValueError,
        "no process group is initialized",
    ),
    (lambda: global_mean_loss(torch.ones(2)), ValueError, "0-dim tensors"),
    (lambda: global_mean_loss([]), ValueError, "losses must hold at least one tensor"),
    (
        lambda: global_mean_loss([torch.tensor(1), torch.tensor(2.5)]),
        TypeError,
        "losses must be floating-point tensors .* got dtype torch.int64",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), ERRORS)
def test_errors(call: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()
