"""The comparison behind ``focalkit demo`` and ``focalkit compare``: one MLP per loss and seed.

Every loss is a focalkit call (``softmax_focal_loss``, ``poly_softmax_focal_loss`` or
``ldam_loss``, with ``class_weights``, ``sample_dependent_gamma``, ``logit_adjustment`` or
``ldam_margins`` where the loss needs them); nothing here re-implements a loss. For a given seed
every loss starts from the same initial weights and sees the same batches, so the losses differ
only in the loss. PyTorch is imported when training starts, not with this module,
so that ``focalkit --help`` and ``focalkit weights`` start fast.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Literal

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
    """A loss under comparison: its name in the table, the focalkit call, the criterion.

    The test set is scored on ``log_softmax(scale * logits)``: ``scale`` is 1 but for LDAM, which
    trains ``softmax(scale * (logits - margin))`` and so predicts with ``softmax(scale * logits)``.
    ``reweighted``, where given, replaces ``criterion`` from epoch :func:`deferred_epoch` on
    (deferred re-weighting, Cao et al. 2019).
    """

    name: str
    call: str
    criterion: Criterion
    scale: float = 1.0
    reweighted: Criterion | None = None


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


# The losses ``--losses`` offers: the name given on the command line, the name in the table.
LOSSES: dict[str, str] = {
    "cross-entropy": "cross-entropy",
    "weighted-cross-entropy": "weighted cross-entropy",
    "focal": "focal gamma=2",
    "class-balanced-focal": "class-balanced focal gamma=2",
    "flsd-53": "FLSD-53",
    "logit-adjusted": "logit-adjusted tau=1",
    "ldam": "LDAM",
    "ldam-drw": "LDAM-DRW",
    "poly-1": "Poly-1",
}
DEFAULT_LOSSES = (
    "cross-entropy",
    "weighted-cross-entropy",
    "focal",
    "class-balanced-focal",
    "flsd-53",
)
BASELINE = "cross-entropy"  # always trained, first: the differences table compares with it
# What each loss is, for --help (one line each).
_SUMMARIES = {
    "cross-entropy": "the baseline, always trained, first",
    "weighted-cross-entropy": "inverse-frequency class weights",
    "focal": "focal loss, gamma=2 (Lin et al. 2017)",
    "class-balanced-focal": "focal, effective-number class weights (Cui et al. 2019; --beta)",
    "flsd-53": "focal, gamma 5 or 3 by sample (Mukhoti et al. 2020)",
    "logit-adjusted": "cross-entropy on logits + log class frequency (Menon et al. 2021),",
    "ldam": "label-distribution-aware margins, scale 30 (Cao et al. 2019)",
    "ldam-drw": "LDAM, effective-number weights from 80% of the epochs on (--beta)",
    "poly-1": "cross-entropy + (1 - p_t) (Leng et al. 2022)",
}
LOSS_NAMES = tuple(LOSSES[key] for key in DEFAULT_LOSSES)  # the default table's rows

# Names that are not in LOSSES, and why.
_OTHER_NAMES = {
    "balanced-softmax": "balanced softmax is logit-adjusted (Ren et al.'s loss is Menon et "
    "al.'s at tau=1: softmax(x + log n_c) = softmax(x + log(n_c / n))); pass logit-adjusted",
}

LDAM_SCALE = 30.0  # Cao et al.'s s
LDAM_MAX_MARGIN = 0.5  # Cao et al.'s largest margin
DRW_FROM = 0.8  # deferred re-weighting from epoch 160 of 200 in Cao et al.: from 80 % of the epochs


def losses_help() -> str:
    """The epilog's list of the losses ``--losses`` offers, for ``demo --help`` and ``compare``."""
    width = max(map(len, LOSSES)) + 2
    lines = ["losses (--losses NAME,NAME or all; * the default):"]
    for key, summary in _SUMMARIES.items():
        mark = "*" if key in DEFAULT_LOSSES else " "
        lines.append(f"  {key:<{width}}{mark} {summary}")
        if key == "logit-adjusted":
            lines.append(
                f"  {'':<{width}}  tau=1: balanced softmax (Ren et al. 2020), the same loss"
            )
    return "\n".join(lines) + "\n"


def deferred_epoch(epochs: int) -> int:
    """The first epoch (counted from 0) of deferred re-weighting: 80 % of ``epochs`` in.

    Example:
        >>> deferred_epoch(100), deferred_epoch(200), deferred_epoch(3)
        (80, 160, 2)
    """
    return int(DRW_FROM * epochs)


def parse_losses(text: str) -> tuple[str, ...]:
    """``--losses``: comma-separated names of :data:`LOSSES`, or ``all``; cross-entropy first.

    Cross-entropy is put first, and added when not named: it is the baseline that every other
    loss is compared with on the same seed.

    Example:
        >>> parse_losses("ldam, Poly-1")
        ('cross-entropy', 'ldam', 'poly-1')
        >>> parse_losses("all") == tuple(LOSSES)
        True
    """
    import argparse

    valid = ", ".join(LOSSES)
    keys = [item.strip().lower() for item in text.split(",")]
    if not all(keys):
        raise argparse.ArgumentTypeError(
            f"must be loss names separated by commas, or all; got {text!r} (valid: {valid})"
        )
    if keys == ["all"]:
        return tuple(LOSSES)
    for key in keys:
        if key == "all":
            raise argparse.ArgumentTypeError(f"'all' means every loss; give it alone, got {text!r}")
        if key in _OTHER_NAMES:
            raise argparse.ArgumentTypeError(_OTHER_NAMES[key])
        if key not in LOSSES:
            raise argparse.ArgumentTypeError(
                f"unknown loss {key!r}; valid: {valid}, or all (comma-separated)"
            )
        if keys.count(key) > 1:
            raise argparse.ArgumentTypeError(f"{key!r} is given more than once in {text!r}")
    return (BASELINE, *(key for key in keys if key != BASELINE))


def describe_losses(keys: Sequence[str]) -> str:
    """The table's names of ``keys``, for a help text or a report."""
    return ", ".join(LOSSES[key] for key in keys)


def needs_every_class(keys: Sequence[str]) -> list[str]:
    """The losses in ``keys`` that are undefined for a class with no training sample.

    Logit adjustment adds ``log n_c`` and LDAM's margin grows as ``n_c ** -0.25``: both need
    ``n_c >= 1``. The class-weighted losses give an absent class weight 0 instead.
    """
    return [key for key in keys if key in ("logit-adjusted", "ldam", "ldam-drw")]


def losses(
    train_counts: NDArray[np.int64], beta: float, keys: Sequence[str] = DEFAULT_LOSSES
) -> list[Loss]:
    """The losses ``keys`` (names of :data:`LOSSES`), in that order, for these class counts.

    Weighted cross-entropy uses inverse-frequency ``weight`` (which ``'mean'`` divides by, as in
    ``F.cross_entropy``); class-balanced focal uses effective-number weights as ``alpha``, scaled
    to mean 1, as Cui et al. do; FLSD-53 is Mukhoti et al.'s sample-dependent gamma.
    Logit-adjusted cross-entropy (Menon et al. 2021) adds ``log(n_c / n)`` to the logits in
    training only; at ``tau=1`` it is balanced softmax (Ren et al. 2020). LDAM (Cao et al. 2019)
    subtracts a margin ``proportional to n_c ** -0.25`` (at most 0.5) from the true class's logit
    and scales by 30; LDAM-DRW adds effective-number ``weight`` (``beta``, mean 1) from 80 % of
    the epochs on. Poly-1 (Leng et al. 2022) is cross-entropy plus ``1 - p_t``.
    """
    import torch

    def weights(method: Literal["inverse", "effective_number"]) -> torch.Tensor:
        values = focalkit.class_weights(train_counts, method, "mean", beta, zero="ignore")
        return torch.tensor(values, dtype=torch.float32)

    def flsd(input: Tensor, target: Tensor) -> Tensor:
        gamma = focalkit.sample_dependent_gamma(input, target, thresholds=(0.2,), gammas=(5.0, 3.0))
        return focalkit.softmax_focal_loss(input, target, gamma=gamma)

    def build(key: str) -> Loss:
        name = LOSSES[key]
        if key == "cross-entropy":
            return Loss(
                name,
                "softmax_focal_loss(input, target, gamma=0)",
                partial(focalkit.softmax_focal_loss, gamma=0.0),
            )
        if key == "weighted-cross-entropy":
            return Loss(
                name,
                "softmax_focal_loss(input, target, weight=class_weights(counts, 'inverse', "
                "'mean'), gamma=0)",
                partial(focalkit.softmax_focal_loss, weight=weights("inverse"), gamma=0.0),
            )
        if key == "focal":
            return Loss(
                name,
                "softmax_focal_loss(input, target, gamma=2)",
                partial(focalkit.softmax_focal_loss, gamma=2.0),
            )
        if key == "class-balanced-focal":
            return Loss(
                name,
                f"softmax_focal_loss(input, target, gamma=2, alpha=class_weights(counts, "
                f"'effective_number', 'mean', beta={beta:g}))",
                partial(focalkit.softmax_focal_loss, gamma=2.0, alpha=weights("effective_number")),
            )
        if key == "flsd-53":
            return Loss(
                name,
                "softmax_focal_loss(input, target, gamma=sample_dependent_gamma(input, target, "
                "thresholds=(0.2,), gammas=(5, 3)))",
                flsd,
            )
        if key == "logit-adjusted":
            offset = torch.tensor(focalkit.logit_adjustment(train_counts, tau=1.0))
            return Loss(
                name,
                "softmax_focal_loss(input, target, gamma=0, logit_offset=logit_adjustment(counts, "
                "tau=1)); the test set is scored on the plain logits",
                partial(focalkit.softmax_focal_loss, gamma=0.0, logit_offset=offset.float()),
            )
        if key in ("ldam", "ldam-drw"):
            margins = torch.tensor(focalkit.ldam_margins(train_counts, LDAM_MAX_MARGIN)).float()
            call = (
                f"ldam_loss(input, target, ldam_margins(counts, max_margin={LDAM_MAX_MARGIN:g}), "
                f"scale={LDAM_SCALE:g})"
            )
            plain = partial(focalkit.ldam_loss, margins=margins, scale=LDAM_SCALE)
            reweighted = None
            if key == "ldam-drw":
                call += (
                    f", from 80 % of the epochs on with weight=class_weights(counts, "
                    f"'effective_number', 'mean', beta={beta:g})"
                )
                reweighted = partial(
                    focalkit.ldam_loss,
                    margins=margins,
                    weight=weights("effective_number"),
                    scale=LDAM_SCALE,
                )
            call += f"; the test set is scored on {LDAM_SCALE:g} x the logits, with no margin"
            return Loss(name, call, plain, scale=LDAM_SCALE, reweighted=reweighted)
        if key == "poly-1":
            return Loss(
                name,
                "poly_softmax_focal_loss(input, target, epsilon=1, gamma=0)",
                partial(focalkit.poly_softmax_focal_loss, epsilon=1.0, gamma=0.0),
            )
        raise ValueError(f"unknown loss {key!r}")  # parse_losses lets no other name through

    return [build(key) for key in keys]


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
    loss_keys: list[str] = field(default_factory=lambda: list(DEFAULT_LOSSES))


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
    reweight_from = deferred_epoch(settings.epochs)
    for epoch in range(settings.epochs):
        model.train()
        criterion = loss.criterion
        if loss.reweighted is not None and epoch >= reweight_from:
            criterion = loss.reweighted
        total = 0.0
        permutation = torch.randperm(len(y_train), generator=order)
        for batch in torch.split(permutation, settings.batch_size):
            optimizer.zero_grad()
            value = criterion(model(x_train[batch]), y_train[batch])
            torch.autograd.backward(value)
            optimizer.step()
            total += value.item() * len(batch)
        run.train_loss.append(total / len(y_train))
        run.log_probs = _log_probs(model, x_test, loss.scale)
        run.test_balanced_accuracy.append(
            float(balanced_accuracy_score(split.y_test, run.log_probs.argmax(1)))
        )
        run.test_nll.append(negative_log_likelihood(split.y_test, run.log_probs))
        on_epoch()
    return run


def _log_probs(model: torch.nn.Module, x: Tensor, scale: float = 1.0) -> NDArray[np.float64]:
    """``log_softmax(scale * model(x))`` in float64: the model's predicted log-probabilities."""
    import torch

    model.eval()
    with torch.no_grad():
        logits: Tensor = model(x)
        return (scale * logits.double()).log_softmax(1).numpy()


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
    keys: Sequence[str] = DEFAULT_LOSSES,
) -> Comparison:
    """Train the losses ``keys`` on every seed's split; ``on_step`` is called once per epoch.

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
        loss_keys=list(keys),
    )
    with torch_threads(1):
        for position, seed in enumerate(seeds, 1):
            split = splits[seed]
            counts = focalkit.class_counts(split.y_train, num_classes)
            comparison.train_counts[seed] = counts
            comparison.test_counts[seed] = focalkit.class_counts(split.y_test, num_classes)
            for loss in losses(counts, beta, keys):
                comparison.loss_calls[loss.name] = loss.call
                description = f"seed {position}/{len(seeds)} · {loss.name}"
                run = train(split, loss, seed, num_classes, settings, partial(on_step, description))
                comparison.runs.append(run)
    comparison.seconds = time.perf_counter() - start
    return comparison


def check_training_counts(
    keys: Sequence[str], splits: dict[int, Split], class_names: list[str]
) -> None:
    """Refuse, before training, a loss that needs every class in a training split that lacks one."""
    from focalkit.cli.arguments import UsageError

    strict = needs_every_class(keys)
    if not strict:
        return
    for seed in sorted(splits):
        counts = focalkit.class_counts(splits[seed].y_train, len(class_names))
        if counts.min() == 0:
            missing = class_names[int(np.argmin(counts))]
            raise UsageError(
                f"class {missing!r} has no training row in seed {seed}'s split, and "
                f"{', '.join(strict)} need{'s' * (len(strict) == 1)} every class in training "
                "(its log count or margin); give a smaller --test-size or leave "
                f"{'it' if len(strict) == 1 else 'them'} out of --losses"
            )


def beta_line(keys: Sequence[str], beta: float) -> list[str]:
    """The report's line on ``--beta``, where a loss in ``keys`` uses it.

    Example:
        >>> beta_line(["cross-entropy", "class-balanced-focal", "ldam-drw"], 0.999)
        ['Effective-number weights (class-balanced focal gamma=2, LDAM-DRW): beta = 0.999.']
        >>> beta_line(["cross-entropy"], 0.999)
        []
    """
    users = [LOSSES[key] for key in keys if key in ("class-balanced-focal", "ldam-drw")]
    if not users:
        return []
    return [f"Effective-number weights ({', '.join(users)}): beta = {beta:g}."]


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
