"""What ``demo`` and ``compare`` show: the terminal table, ``report.md`` and three figures.

The table's cells are formatted once (:func:`cell`) and the same strings go to the terminal and to
``report.md``. The report states the numbers and what the spread over seeds allows to say about
them; it names no winner that the numbers do not separate.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from numpy.typing import NDArray

from focalkit.cli import files
from focalkit.cli.arguments import shown
from focalkit.cli.metrics import (
    COLUMNS,
    ECE_BINS,
    Metrics,
    evaluate,
    per_class_recall,
    reliability_bins,
)
from focalkit.cli.training import (
    DEFAULT_LOSSES,
    LDAM_MAX_MARGIN,
    Comparison,
    Settings,
    Split,
    compare,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

FIGURES = ("per_class_recall.png", "reliability.png", "training_curves.png")
OUTPUTS = ("report.md", *FIGURES)  # what write() puts into the --out folder
LIBRARIES = ("focalkit", "torch", "numpy", "scikit-learn", "matplotlib", "rich")


@dataclass(frozen=True)
class LossSummary:
    """One loss's scores over the seeds."""

    name: str
    metrics: list[Metrics]  # one per seed
    recall: NDArray[np.float64]  # (seeds, C)

    def values(self, attribute: str) -> NDArray[np.float64]:
        return np.array([getattr(m, attribute) for m in self.metrics])


def summarize(comparison: Comparison) -> list[LossSummary]:
    """Metrics per loss and seed, in the order the losses were trained."""
    names = list(dict.fromkeys(run.loss for run in comparison.runs))
    summaries = []
    for name in names:
        runs = [run for run in comparison.runs if run.loss == name]
        summaries.append(
            LossSummary(
                name=name,
                metrics=[
                    evaluate(run.y_test, run.log_probs, comparison.rare_classes) for run in runs
                ],
                recall=np.stack([per_class_recall(run.y_test, run.log_probs) for run in runs]),
            )
        )
    return summaries


def spread(values: NDArray[np.float64]) -> float:
    """The sample standard deviation (``ddof=1``) over seeds; 0 for a single seed."""
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0


def cell(values: NDArray[np.float64]) -> str:
    """``mean ± sd`` over seeds with three decimals; the mean alone for one seed.

    Example:
        >>> cell(np.array([0.90, 0.92, 0.94]))
        '0.920 ± 0.020'
        >>> cell(np.array([0.5]))
        '0.500'
    """
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {spread(values):.3f}"


def headers(comparison: Comparison) -> list[str]:
    rare = ", ".join(comparison.class_names[c] for c in comparison.rare_classes)
    names = [header for _, header, _ in COLUMNS]
    names[2] = f"recall, rarest ({rare})"
    return ["loss", *names]


def rows(summaries: list[LossSummary]) -> list[list[str]]:
    """The table's cells, as printed and as written to ``report.md``."""
    return [
        [summary.name, *(cell(summary.values(attribute)) for attribute, _, _ in COLUMNS)]
        for summary in summaries
    ]


def terminal_tables(
    comparison: Comparison, summaries: list[LossSummary], title: str
) -> list[Table]:
    """The results table and the table of differences from cross-entropy, for rich."""
    from rich.table import Table
    from rich.text import Text

    # Text, not str: a class or file name such as "[/]" is not rich markup.
    results = Table(title=Text(title), caption=_spread_note(len(comparison.seeds)))
    differences = Table(title=DIFFERENCE_TITLE, caption=DIFFERENCE_NOTE)
    for table, table_rows in (
        (results, rows(summaries)),
        (differences, difference_rows(summaries)),
    ):
        for index, header in enumerate(headers(comparison)):
            table.add_column(Text(header), justify="left" if index == 0 else "right")
        for row in table_rows:
            table.add_row(*row)
    return [results, differences]


DIFFERENCE_TITLE = "Difference from cross-entropy on the same seed"
DIFFERENCE_NOTE = (
    "loss minus cross-entropy, mean ± standard deviation over seeds; "
    "in brackets, on how many seeds the loss did better"
)


def _spread_note(seeds: int) -> str:
    if seeds == 1:
        return "one seed: no spread over seeds"
    return f"mean ± standard deviation over {seeds} seeds"


def _paired(
    first: LossSummary, second: LossSummary, attribute: str, higher_is_better: bool
) -> tuple[NDArray[np.float64], int]:
    """Per-seed differences ``first - second`` and on how many seeds ``first`` did better."""
    difference = first.values(attribute) - second.values(attribute)
    better = difference > 0 if higher_is_better else difference < 0
    return difference, int(np.sum(better))


def findings(comparison: Comparison, summaries: list[LossSummary]) -> list[str]:
    """One sentence per metric: the best mean, the next, and how the two compare seed by seed.

    Every seed has its own split, so the spread over seeds is mostly the split's; the two losses
    are compared on the same seed. No winner is named: the sentence says on how many seeds the
    first was ahead, and that these runs do not separate the two unless it was ahead on every one.
    """
    lines = []
    seeds = len(comparison.seeds)
    for attribute, header, higher_is_better in COLUMNS:
        means = np.array([np.mean(s.values(attribute)) for s in summaries])
        order = np.argsort(-means if higher_is_better else means, kind="stable")
        best, second = summaries[order[0]], summaries[order[1]]
        word = "highest" if higher_is_better else "lowest"
        if f"{means[order[0]]:.3f}" == f"{means[order[1]]:.3f}":
            text = (
                f"**{header}**: {best.name} ({cell(best.values(attribute))}) and {second.name} "
                f"({cell(second.values(attribute))}) share the {word} mean to three decimals"
            )
        else:
            text = (
                f"**{header}**: {word} mean for {best.name} ({cell(best.values(attribute))}), "
                f"next {second.name} ({cell(second.values(attribute))})"
            )
        difference, ahead = _paired(best, second, attribute, higher_is_better)
        if seeds == 1:
            text += "; with one seed there is no spread to judge the gap by."
        elif ahead == seeds:
            text += (
                f"; on the same seed {best.name} is ahead on all {seeds} seeds "
                f"(difference {signed_cell(difference)})."
            )
        else:
            text += (
                f"; on the same seed {best.name} is ahead on {ahead} of {seeds} seeds "
                f"(difference {signed_cell(difference)}), so these runs do not separate them."
            )
        lines.append(text)
    return lines


def signed_cell(values: NDArray[np.float64]) -> str:
    """Like :func:`cell`, with the mean's sign.

    Example:
        >>> signed_cell(np.array([0.01, 0.03]))
        '+0.020 ± 0.014'
    """
    text = cell(values)
    return text if text.startswith("-") else "+" + text


def difference_rows(summaries: list[LossSummary]) -> list[list[str]]:
    """Each loss against the first (cross-entropy) on the same seed: ``+0.017 (3/3)``."""
    baseline = summaries[0]
    table = []
    for summary in summaries[1:]:
        row = [summary.name]
        for attribute, _, higher_is_better in COLUMNS:
            difference, better = _paired(summary, baseline, attribute, higher_is_better)
            row.append(f"{signed_cell(difference)} ({better}/{difference.size})")
        table.append(row)
    return table


def versions() -> dict[str, str]:
    """Python and the versions of the libraries the comparison ran with."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def markdown(
    comparison: Comparison,
    summaries: list[LossSummary],
    title: str,
    data: list[str],
    command: str,
) -> str:
    """``report.md``: the table, what it means, the settings, the seeds and the versions."""
    table_headers = headers(comparison)
    lines = [f"# {title}", "", f"Made by `{command}`.", ""]
    lines += ["| " + " | ".join(table_headers) + " |"]
    lines += ["| " + " | ".join(["---"] + ["---:"] * (len(table_headers) - 1)) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(summaries)]
    lines += [
        "",
        f"{_spread_note(len(comparison.seeds)).capitalize()}. Balanced accuracy, macro-F1 and "
        "the recall of the rarest classes: higher is better. Expected calibration error "
        f"({ECE_BINS} equal-width bins of top-label confidence) and negative log-likelihood: "
        "lower is better. All are measured on the test set after the last epoch. Each seed "
        "draws its own split, so the spread over seeds is mostly the split's; below, the losses "
        "are also compared seed by seed.",
        "",
        "## What the numbers show",
        "",
    ]
    lines += [f"- {line}" for line in findings(comparison, summaries)]
    lines += ["", f"{DIFFERENCE_TITLE} ({DIFFERENCE_NOTE}):", ""]
    lines += ["| " + " | ".join(table_headers) + " |"]
    lines += ["| " + " | ".join(["---"] + ["---:"] * (len(table_headers) - 1)) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in difference_rows(summaries)]
    lines += [
        "",
        "![recall of each class, per loss](per_class_recall.png)",
        "",
        "![reliability diagrams](reliability.png)",
        "",
        "![training curves](training_curves.png)",
        "",
        "## Settings",
        "",
        *[f"- {line}" for line in data],
        f"- Model: {comparison.settings.describe()}.",
        f"- Seeds: {', '.join(map(str, comparison.seeds))}. A seed sets the split, the initial "
        "weights and the batch order; within a seed every loss starts from the same weights and "
        "sees the same batches.",
        f"- Training time: {comparison.seconds:.1f} s on "
        f"{len(comparison.runs)} runs (one thread each).",
        "",
        "Losses (every one a focalkit call; `counts` are the training set's class counts):",
        "",
        *[f"- {name}: `{call}`" for name, call in comparison.loss_calls.items()],
        "",
        *_weights_lines(comparison),
        "## Versions",
        "",
        *[f"- {name} {version}" for name, version in versions().items()],
        f"- platform: {platform.platform()}",
        "",
    ]
    return "\n".join(lines)


def _weights_lines(comparison: Comparison) -> list[str]:
    """The first seed's class weights (and offsets, margins), for the reader to compare."""
    import focalkit

    seed = comparison.seeds[0]
    counts = comparison.train_counts[seed]
    inverse = focalkit.class_weights(counts, "inverse", "mean", zero="ignore")
    beta = comparison.beta
    effective = focalkit.class_weights(counts, "effective_number", "mean", beta, zero="ignore")

    def listed(weights: NDArray[np.float64]) -> str:
        pairs = zip(comparison.class_names, weights, strict=True)
        return ", ".join(f"{name}: {weight:.3f}" for name, weight in pairs)

    lines = [
        f"Class weights from seed {seed}'s training counts, scaled to mean 1:",
        "",
        f"- inverse frequency: {listed(inverse)}",
        f"- effective number (beta {beta:g}): {listed(effective)}",
        "",
    ]
    others = []
    if "logit-adjusted" in comparison.loss_keys:
        offset = focalkit.logit_adjustment(counts, tau=1.0)
        others.append(f"- logit offsets (tau 1: log of the class frequency): {listed(offset)}")
    if {"ldam", "ldam-drw"} & set(comparison.loss_keys):
        margins = focalkit.ldam_margins(counts, LDAM_MAX_MARGIN)
        others.append(f"- LDAM margins (the largest {LDAM_MAX_MARGIN:g}): {listed(margins)}")
    if others:
        lines += [
            "From the same counts, used in training only (the test set is scored without them):",
            "",
            *others,
            "",
        ]
    return lines


def counts_line(names: list[str], counts: NDArray[np.int64]) -> str:
    """``0: 134, 1: 87, ...``."""
    return ", ".join(f"{name}: {int(n)}" for name, n in zip(names, counts, strict=True))


def write(
    out: Path,
    comparison: Comparison,
    summaries: list[LossSummary],
    title: str,
    data: list[str],
    command: str,
    force: bool = False,
) -> list[Path]:
    """Write ``report.md`` and the three figures into ``out``; return their paths.

    Without ``force`` a file that is already there is not replaced (see :mod:`focalkit.cli.files`).
    """
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    with files.create(report, force) as file:
        text = markdown(comparison, summaries, title, data, command)
        file.write(shown(text).encode("utf-8"))
    paths = [report, *(out / name for name in FIGURES)]
    for path, plot in zip(
        paths[1:], (plot_per_class_recall, plot_reliability, plot_training_curves), strict=True
    ):
        with files.create(path, force) as file:
            plot(comparison, summaries, file)
    return paths


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class_recall(
    comparison: Comparison, summaries: list[LossSummary], file: BinaryIO
) -> None:
    """Grouped bars: one group per class (its training count below), one colour per loss."""
    plt = _pyplot()
    num_classes = len(comparison.class_names)
    counts = np.mean([comparison.train_counts[s] for s in comparison.seeds], axis=0)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * num_classes + 2), 4.5), layout="constrained")
    width = 0.8 / len(summaries)
    x = np.arange(num_classes)
    for index, summary in enumerate(summaries):
        with warnings.catch_warnings():  # a class missing from every test split: NaN, no bar
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(summary.recall, axis=0)
            error = np.nanstd(summary.recall, axis=0, ddof=1) if len(comparison.seeds) > 1 else None
        offset = (index - (len(summaries) - 1) / 2) * width
        ax.bar(x + offset, mean, width, yerr=error, capsize=2, label=summary.name)
    names = [name.replace("$", r"\$") for name in comparison.class_names]  # no mathtext
    ax.set_xticks(x, [f"{name}\n(n={n:.0f})" for name, n in zip(names, counts, strict=True)])
    ax.set_xlabel("class (training samples)")
    ax.set_ylabel("recall on the test set")
    ax.set_ylim(0, 1.05)
    whiskers = "; whiskers: ± standard deviation" if len(comparison.seeds) > 1 else ""
    fig.suptitle(
        f"Recall of each class (mean over {_seeds_phrase(len(comparison.seeds))}{whiskers})"
    )
    # One column at the right: five long names in a row are wider than a figure of a few classes.
    fig.legend(loc="outside right center", fontsize="small")
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


RELIABILITY_COLUMNS = 5  # diagrams side by side; more losses take further rows


def plot_reliability(comparison: Comparison, summaries: list[LossSummary], file: BinaryIO) -> None:
    """One reliability diagram per loss, the test predictions of all seeds pooled.

    Under each diagram, how many predictions fall in each bin (log scale): a bar above a nearly
    empty bin says little. At most :data:`RELIABILITY_COLUMNS` diagrams to a row.
    """
    plt = _pyplot()
    columns = min(len(summaries), RELIABILITY_COLUMNS)
    rows = -(-len(summaries) // columns)
    fig, axes = plt.subplots(
        2 * rows,
        columns,
        figsize=(3.0 * columns, 4.8 * rows),
        sharex=True,
        sharey="row",
        height_ratios=(3, 1.2) * rows,
        layout="constrained",
        squeeze=False,
    )
    for index in range(len(summaries), rows * columns):  # the last row's empty places
        row, column = divmod(index, columns)
        fig.delaxes(axes[2 * row, column])
        fig.delaxes(axes[2 * row + 1, column])
    for index, summary in enumerate(summaries):
        row, column = divmod(index, columns)
        top, bottom = axes[2 * row, column], axes[2 * row + 1, column]
        runs = [run for run in comparison.runs if run.loss == summary.name]
        target = np.concatenate([run.y_test for run in runs])
        bins = reliability_bins(target, np.concatenate([run.log_probs for run in runs]))
        centers = (bins.edges[:-1] + bins.edges[1:]) / 2
        width = bins.edges[1] - bins.edges[0]
        top.bar(centers, np.nan_to_num(bins.accuracy), width, edgecolor="black", label="accuracy")
        top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        top.set_title(f"{summary.name}\nECE {cell(summary.values('ece'))}", fontsize="medium")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        bottom.bar(centers, bins.counts, width, color="grey", edgecolor="black")
        bottom.set_yscale("log")
        bottom.set_xlabel("confidence")
        bottom.xaxis.set_tick_params(labelbottom=True)  # sharex hides them above the last row
        if column == 0:
            top.set_ylabel("accuracy")
            bottom.set_ylabel("predictions")
    axes[0, 0].legend(fontsize="small", loc="upper left")
    fig.suptitle(
        f"Reliability diagrams ({ECE_BINS} bins, {_seeds_phrase(len(comparison.seeds))}); "
        "below, the number of test predictions in each bin"
    )
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def plot_training_curves(
    comparison: Comparison, summaries: list[LossSummary], file: BinaryIO
) -> None:
    """Per epoch, mean over seeds: the loss trained on, test balanced accuracy, test NLL."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    panels = (
        ("train_loss", "training loss (each its own loss)"),
        ("test_balanced_accuracy", "test balanced accuracy"),
        ("test_nll", "test NLL"),
    )
    for ax, (attribute, label) in zip(axes, panels, strict=True):
        for summary in summaries:
            runs = [run for run in comparison.runs if run.loss == summary.name]
            curves = np.array([getattr(run, attribute) for run in runs])
            epochs = np.arange(1, curves.shape[1] + 1)
            mean = curves.mean(axis=0)
            (line,) = ax.plot(epochs, mean, label=summary.name)
            if len(runs) > 1:
                ax.fill_between(
                    epochs,
                    curves.min(axis=0),
                    curves.max(axis=0),
                    color=line.get_color(),
                    alpha=0.15,
                )
        ax.set_xlabel("epoch")
        ax.set_title(label)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize="small")
    band = ", band: min to max over seeds" if len(comparison.seeds) > 1 else ""
    fig.suptitle(f"Training curves (mean over {_seeds_phrase(len(comparison.seeds))}{band})")
    fig.savefig(file, format="png", dpi=110)
    plt.close(fig)


def _seeds_phrase(seeds: int) -> str:
    return "1 seed" if seeds == 1 else f"{seeds} seeds"


def _consoles() -> tuple[Console, Console]:
    """Consoles for stdout (the table) and stderr (the progress bar).

    Written to a file or a pipe, the table gets 200 columns instead of rich's default 80, so that
    no cell is wrapped or cut.
    """
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:
        out = Console(width=200)
    return out, err


def run_with_progress(
    splits: dict[int, Split],
    class_names: list[str],
    rare_classes: list[int],
    beta: float,
    settings: Settings,
    keys: Sequence[str] = DEFAULT_LOSSES,
) -> Comparison:
    """:func:`focalkit.cli.training.compare` under a live progress bar (one step per epoch)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    _, err = _consoles()
    total = len(splits) * len(keys) * settings.epochs
    columns = (
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("training", total=total)

        def step(description: str) -> None:
            progress.update(task, advance=1, description=description)

        comparison = compare(splits, class_names, rare_classes, beta, settings, step, keys)
        progress.update(task, description="done")
    return comparison


def print_results(comparison: Comparison, summaries: list[LossSummary], title: str) -> None:
    """The two tables and the findings, on stdout."""
    out, _ = _consoles()
    results, differences = terminal_tables(comparison, summaries, title)
    out.print(results)
    for line in findings(comparison, summaries):
        out.print("- " + line.replace("**", ""), highlight=False, markup=False)
    out.print(differences)


def print_saved(paths: list[Path]) -> None:
    out, _ = _consoles()
    out.print(
        "wrote " + ", ".join(str(path) for path in paths),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
