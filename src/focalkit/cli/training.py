"""The comparison behind ``focalkit demo`` and ``focalkit compare``: one MLP per loss and seed.

Every loss is a focalkit call (``softmax_focal_loss``, with ``class_weights`` and
``sample_dependent_gamma`` where the loss needs them); nothing here re-implements a loss. For a
given seed every loss starts from the same initial weights and sees the same batches, so the
losses differ only in the loss. PyTorch is imported when training starts, not with this module,
so that ``focalkit --help`` and ``focalkit weights`` start fast.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

import focalkit

if TYPE_CHECKING:
    import torch
    from torch import Tensor

Criterion = Callable[["Tensor", "Tensor"], "Tensor"]


@dataclass(frozen=True)
class Split:
    """A train/test split, features already scaled and encoded (float32), labels in [0, C)."""

    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]


@dataclass(frozen=True)
class Loss:
    """A loss under comparison: its name in the table, the focalkit call, the criterion."""

    name: str
    call: str
    criterion: Criterion


@dataclass(frozen=True)
class Settings:
    """Model and optimiser: an MLP with one hidden layer, trained with Adam in minibatches."""

    epochs: int = 100
    batch_size: int = 32
    hidden: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    def describe(self) -> str:
        return (
            f"MLP (one hidden layer of {self.hidden} ReLU units), Adam (learning rate "
            f"{self.learning_rate:g}, weight decay {self.weight_decay:g}), {self.epochs} epochs, "
            f"batches of {self.batch_size}; the table scores the model after the last epoch (the "
            "training curves score the test set after every epoch, for the figure only: nothing "
            "is selected by it)"
        )


LOSS_NAMES = (
    "cross-entropy",
    "weighted cross-entropy",
    "focal gamma=2",
    "class-balanced focal gamma=2",
    "FLSD-53",
)


def losses(train_counts: NDArray[np.int64], beta: float) -> list[Loss]:
    """The five losses compared, in table order, for a training set with these class counts.

    Weighted cross-entropy uses inverse-frequency ``weight`` (which ``'mean'`` divides by, as in
    ``F.cross_entropy``); class-balanced focal uses effective-number weights as ``alpha``, scaled
    to mean 1, as Cui et al. do; FLSD-53 is Mukhoti et al.'s sample-dependent gamma.
    """
    import torch

    inverse = torch.tensor(focalkit.class_weights(train_counts, "inverse", "mean", zero="ignore"))
    effective = torch.tensor(
        focalkit.class_weights(train_counts, "effective_number", "mean", beta, zero="ignore")
    )

    def flsd(input: Tensor, target: Tensor) -> Tensor:
        gamma = focalkit.sample_dependent_gamma(input, target, thresholds=(0.2,), gammas=(5.0, 3.0))
        return focalkit.softmax_focal_loss(input, target, gamma=gamma)

    calls = (
        "softmax_focal_loss(input, target, gamma=0)",
        "softmax_focal_loss(input, target, weight=class_weights(counts, 'inverse', 'mean'), "
        "gamma=0)",
        "softmax_focal_loss(input, target, gamma=2)",
        f"softmax_focal_loss(input, target, gamma=2, alpha=class_weights(counts, "
        f"'effective_number', 'mean', beta={beta:g}))",
        "softmax_focal_loss(input, target, gamma=sample_dependent_gamma(input, target, "
        "thresholds=(0.2,), gammas=(5, 3)))",
    )
    criteria: tuple[Criterion, ...] = (
        partial(focalkit.softmax_focal_loss, gamma=0.0),
        partial(focalkit.softmax_focal_loss, weight=inverse.float(), gamma=0.0),
        partial(focalkit.softmax_focal_loss, gamma=2.0),
        partial(focalkit.softmax_focal_loss, gamma=2.0, alpha=effective.float()),
        flsd,
    )
    return [
        Loss(name, call, criterion)
        for name, call, criterion in zip(LOSS_NAMES, calls, criteria, strict=True)
    ]


@dataclass
class Run:
    """One loss trained with one seed: test log-probabilities and per-epoch curves."""

    loss: str
    seed: int
    y_test: NDArray[np.int64]
    log_probs: NDArray[np.float64] = field(repr=False)
    train_loss: list[float] = field(default_factory=list)
    test_balanced_accuracy: list[float] = field(default_factory=list)
    test_nll: list[float] = field(default_factory=list)


@dataclass
class Comparison:
    """Every run of a comparison, with what the report needs to describe it."""

    class_names: list[str]
    rare_classes: list[int]
    seeds: list[int]
    loss_calls: dict[str, str]
    train_counts: dict[int, NDArray[np.int64]]
    test_counts: dict[int, NDArray[np.int64]]
    settings: Settings
    runs: list[Run]
    beta: float = 0.999
    seconds: float = 0.0


def _model(num_features: int, num_classes: int, hidden: int) -> torch.nn.Module:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(num_features, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, num_classes),
    )


def train(
    split: Split,
    loss: Loss,
    seed: int,
    num_classes: int,
    settings: Settings,
    on_epoch: Callable[[], None] = lambda: None,
) -> Run:
    """Train a fresh MLP on ``split`` with ``loss``; seeded, so a run repeats exactly."""
    import torch
    from sklearn.metrics import balanced_accuracy_score  # type: ignore[import-untyped]

    from focalkit.cli.metrics import negative_log_likelihood

    torch.manual_seed(seed)
    model = _model(split.x_train.shape[1], num_classes, settings.hidden)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    order = torch.Generator().manual_seed(seed)
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    x_test = torch.from_numpy(split.x_test)
    run = Run(loss.name, seed, split.y_test, np.empty((0, num_classes)))
    for _ in range(settings.epochs):
        model.train()
        total = 0.0
        permutation = torch.randperm(len(y_train), generator=order)
        for batch in torch.split(permutation, settings.batch_size):
            optimizer.zero_grad()
            value = loss.criterion(model(x_train[batch]), y_train[batch])
            torch.autograd.backward(value)
            optimizer.step()
            total += value.item() * len(batch)
        run.train_loss.append(total / len(y_train))
        run.log_probs = _log_probs(model, x_test)
        run.test_balanced_accuracy.append(
            float(balanced_accuracy_score(split.y_test, run.log_probs.argmax(1)))
        )
        run.test_nll.append(negative_log_likelihood(split.y_test, run.log_probs))
        on_epoch()
    return run


def _log_probs(model: torch.nn.Module, x: Tensor) -> NDArray[np.float64]:
    import torch

    model.eval()
    with torch.no_grad():
        logits: Tensor = model(x)
        return logits.double().log_softmax(1).numpy()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore the previous setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compare(
    splits: dict[int, Split],
    class_names: list[str],
    rare_classes: list[int],
    beta: float,
    settings: Settings,
    on_step: Callable[[str], None] = lambda description: None,
) -> Comparison:
    """Train every loss on every seed's split; ``on_step`` is called once per epoch.

    Runs on one thread: for a model this small, intra-op parallelism costs more than it saves.
    """
    start = time.perf_counter()
    num_classes = len(class_names)
    seeds = sorted(splits)
    comparison = Comparison(
        class_names=class_names,
        rare_classes=rare_classes,
        seeds=seeds,
        loss_calls={},
        train_counts={},
        test_counts={},
        settings=settings,
        runs=[],
        beta=beta,
    )
    with torch_threads(1):
        for position, seed in enumerate(seeds, 1):
            split = splits[seed]
            counts = focalkit.class_counts(split.y_train, num_classes)
            comparison.train_counts[seed] = counts
            comparison.test_counts[seed] = focalkit.class_counts(split.y_test, num_classes)
            for loss in losses(counts, beta):
                comparison.loss_calls[loss.name] = loss.call
                description = f"seed {position}/{len(seeds)} · {loss.name}"
                run = train(split, loss, seed, num_classes, settings, partial(on_step, description))
                comparison.runs.append(run)
    comparison.seconds = time.perf_counter() - start
    return comparison


def rarest(counts: Sequence[int] | NDArray[np.int64], k: int = 3) -> list[int]:
    """The ``k`` classes with the fewest samples (ties: the lower index first), at most C - 1.

    Example:
        >>> rarest([50, 3, 20, 3, 9])
        [1, 3, 4]
        >>> rarest([40, 10])
        [1]
    """
    order = np.argsort(np.asarray(counts), kind="stable")
    return sorted(int(c) for c in order[: min(k, len(order) - 1)])
