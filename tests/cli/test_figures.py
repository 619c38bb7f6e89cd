"""The report's figures show everything they draw, and ``--help`` is plain text.

The figures are made from a comparison with made-up predictions (no training); each figure is
caught as it is saved and measured after drawing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from itertools import pairwise

import matplotlib
import numpy as np
import pytest
from cli_checks import run_cli
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from focalkit.cli import report
from focalkit.cli.metrics import ECE_BINS
from focalkit.cli.training import LOSS_NAMES, LOSSES, Comparison, Run, Settings

matplotlib.use("Agg")


def made_up_comparison(
    class_names: list[str], seeds: int = 2, epochs: int = 3, names: Sequence[str] = LOSS_NAMES
) -> Comparison:
    """Every loss ``names`` and seed with random test predictions (about half right) and curves."""
    rng = np.random.default_rng(6)
    num_classes = len(class_names)
    runs = []
    for seed in range(seeds):
        y_test = np.arange(40) % num_classes
        for name in names:
            logits = rng.normal(size=(40, num_classes))
            logits[np.arange(40), y_test] += rng.uniform(0, 3)
            log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            run = Run(name, seed, y_test, log_probs)
            run.train_loss = list(rng.uniform(0.1, 1, epochs))
            run.test_balanced_accuracy = list(rng.uniform(0, 1, epochs))
            run.test_nll = list(rng.uniform(0.1, 2, epochs))
            runs.append(run)
    counts = np.arange(num_classes, 0, -1) * 10
    return Comparison(
        class_names=class_names,
        rare_classes=[num_classes - 1],
        seeds=list(range(seeds)),
        loss_calls={},
        train_counts=dict.fromkeys(range(seeds), counts),
        test_counts=dict.fromkeys(range(seeds), np.bincount(np.arange(40) % num_classes)),
        settings=Settings(epochs=epochs),
        runs=runs,
    )


def saved_figure(
    monkeypatch: pytest.MonkeyPatch,
    plot: Callable[..., None],
    comparison: Comparison,
) -> Figure:
    """The figure ``plot`` saves, drawn again at its own size."""
    saved: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: object, **kwargs: object) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot(comparison, report.summarize(comparison), io.BytesIO())
    (figure,) = saved
    FigureCanvasAgg(figure).draw()  # pyplot closed it; lay it out again at its own dpi
    return figure


def inside(figure: Figure, artist: object) -> bool:
    box = artist.get_window_extent()  # type: ignore[attr-defined]
    frame = figure.bbox
    return bool(
        box.x0 >= frame.x0 - 1
        and box.y0 >= frame.y0 - 1
        and box.x1 <= frame.x1 + 1
        and box.y1 <= frame.y1 + 1
    )


ALL_NAMES = tuple(LOSSES.values())


@pytest.mark.parametrize("names", [LOSS_NAMES, ALL_NAMES], ids=["default", "all"])
@pytest.mark.parametrize("num_classes", [2, 3, 10, 30])
def test_the_recall_legend_names_every_loss_inside_the_figure(
    monkeypatch: pytest.MonkeyPatch, num_classes: int, names: tuple[str, ...]
) -> None:
    comparison = made_up_comparison([f"class {c}" for c in range(num_classes)], names=names)
    figure = saved_figure(monkeypatch, report.plot_per_class_recall, comparison)
    legends = figure.legends + [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    assert len(legends) == 1
    (legend,) = legends
    assert [text.get_text() for text in legend.get_texts()] == list(names)
    assert inside(figure, legend)
    (ax,) = figure.axes
    texts = [*legend.get_texts(), *figure.texts, ax.title, *ax.get_xticklabels(), ax.xaxis.label]
    for text in texts:  # the legend's entries, the title, the class names
        if text.get_text():
            assert inside(figure, text), text.get_text()
    for title in figure.texts:
        assert not legend.get_window_extent().overlaps(title.get_window_extent())


def test_the_reliability_diagram_counts_the_predictions_in_each_bin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    comparison = made_up_comparison(["a", "b", "c"])
    figure = saved_figure(monkeypatch, report.plot_reliability, comparison)
    count_axes = [ax for ax in figure.axes if ax.get_ylabel() == "predictions"]
    assert len(count_axes) == 1  # the label is on the first panel; the others share it
    below = figure.axes[len(LOSS_NAMES) :]
    assert len(below) == len(LOSS_NAMES)
    for ax, name in zip(below, LOSS_NAMES, strict=True):
        runs = [run for run in comparison.runs if run.loss == name]
        confidence = np.exp(np.concatenate([run.log_probs for run in runs]).max(1))
        # By hand: how many confidences fall in each bin (lo, hi].
        edges = np.linspace(0, 1, ECE_BINS + 1)
        expected = [
            int(np.sum((confidence > lo) & (confidence <= hi))) for lo, hi in pairwise(edges)
        ]
        heights = [round(patch.get_height()) for patch in ax.patches]
        assert heights == expected
        assert sum(heights) == 80


def test_more_than_five_reliability_diagrams_take_a_second_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    comparison = made_up_comparison(["a", "b", "c"], names=ALL_NAMES)
    figure = saved_figure(monkeypatch, report.plot_reliability, comparison)
    assert len(figure.axes) == 2 * len(ALL_NAMES)  # no empty panel left in the last row
    tops = [ax for ax in figure.axes if ax.get_title()]
    bottoms = [ax for ax in figure.axes if not ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in tops] == list(ALL_NAMES)
    columns = sorted({round(ax.get_position().x0, 3) for ax in tops})
    rows = sorted({round(ax.get_position().y0, 3) for ax in tops})
    assert (len(columns), len(rows)) == (5, 2)
    assert [ax.get_ylabel() for ax in bottoms].count("predictions") == 2  # one per row
    for ax, name in zip(bottoms, ALL_NAMES, strict=True):
        runs = [run for run in comparison.runs if run.loss == name]
        confidence = np.exp(np.concatenate([run.log_probs for run in runs]).max(1))
        edges = np.linspace(0, 1, ECE_BINS + 1)  # bins (lo, hi], counted by hand
        counts = [int(np.sum((confidence > lo) & (confidence <= hi))) for lo, hi in pairwise(edges)]
        assert [round(patch.get_height()) for patch in ax.patches] == counts
        assert ax.get_xlabel() == "confidence"
        assert all(label.get_visible() for label in ax.get_xticklabels())
    for ax in figure.axes:
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels()):
            if text.get_text() and text.get_visible():
                assert inside(figure, text), text.get_text()
    for title in figure.texts:
        assert inside(figure, title)


# Double and single backquotes, Sphinx roles, directives at the start of a line.
HELP_MARKUP = re.compile(r"`|:(?:func|mod|math|class|data|meth|attr):|^\s*\.\. ", re.MULTILINE)


@pytest.mark.parametrize("command", [None, "demo", "compare", "curves", "weights"])
def test_help_is_plain_text(capsys: pytest.CaptureFixture[str], command: str | None) -> None:
    code, stdout, _ = run_cli(capsys, *([] if command is None else [command]), "--help")
    assert code == 0
    assert HELP_MARKUP.search(stdout) is None, HELP_MARKUP.findall(stdout)
