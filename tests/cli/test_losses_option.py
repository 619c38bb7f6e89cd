"""``--losses``: which losses ``demo`` and ``compare`` train, and each bad list's one-line message.

Every refusal comes before training (training is replaced by a stand-in that fails the test) and
before the output folder is made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_usage_error, command, no_training, printed_cells, run_cli, small_csv

from focalkit.cli import report, training
from focalkit.cli.training import (
    DEFAULT_LOSSES,
    LOSS_NAMES,
    LOSSES,
    Loss,
    Settings,
    Split,
    deferred_epoch,
    parse_losses,
)

VALID = (
    "cross-entropy, weighted-cross-entropy, focal, class-balanced-focal, flsd-53, "
    "logit-adjusted, ldam, ldam-drw, poly-1"
)


def test_the_default_is_the_five_losses_of_before() -> None:
    assert DEFAULT_LOSSES == (
        "cross-entropy",
        "weighted-cross-entropy",
        "focal",
        "class-balanced-focal",
        "flsd-53",
    )
    assert LOSS_NAMES == (
        "cross-entropy",
        "weighted cross-entropy",
        "focal gamma=2",
        "class-balanced focal gamma=2",
        "FLSD-53",
    )
    assert ", ".join(LOSSES) == VALID


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("focal", ("cross-entropy", "focal")),
        ("ldam,cross-entropy,poly-1", ("cross-entropy", "ldam", "poly-1")),
        (" LDAM-DRW , Logit-Adjusted ", ("cross-entropy", "ldam-drw", "logit-adjusted")),
        ("cross-entropy", ("cross-entropy",)),
        ("all", tuple(LOSSES)),
        ("ALL", tuple(LOSSES)),
    ],
)
def test_parse_losses_puts_cross_entropy_first(text: str, keys: tuple[str, ...]) -> None:
    assert parse_losses(text) == keys


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nope", f"argument --losses: unknown loss 'nope'; valid: {VALID}, or all"),
        ("focal,nope", "unknown loss 'nope'"),
        ("focal gamma=2", "unknown loss 'focal gamma=2'"),  # a table name, not a --losses name
        ("", "must be loss names separated by commas, or all; got ''"),
        ("focal,,ldam", "must be loss names separated by commas"),
        ("focal,", "must be loss names separated by commas"),
        ("all,ldam", "'all' means every loss; give it alone, got 'all,ldam'"),
        ("ldam,focal,LDAM", "'ldam' is given more than once in 'ldam,focal,LDAM'"),
        ("balanced-softmax", "balanced softmax is logit-adjusted"),
        ("balanced-softmax", "pass logit-adjusted"),
    ],
)
@pytest.mark.parametrize("name", ["demo", "compare"])
def test_a_bad_list_exits_2_with_one_line_before_anything_is_made(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = small_csv(tmp_path / "data.csv")
    out = tmp_path / "out"
    assert_usage_error(capsys, [*command(name, data, str(out)), "--losses", value], message)
    assert not out.exists()


@pytest.mark.parametrize("name", ["demo", "compare"])
def test_help_lists_every_loss(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, stdout, _ = run_cli(capsys, name, "--help")
    assert code == 0
    listed = stdout[stdout.index("losses (--losses NAME,NAME or all; * the default):") :]
    names = [line.split()[0] for line in listed.splitlines()[1:] if line[:3].strip()]
    assert names == list(LOSSES)
    marked = [line.split()[0] for line in listed.splitlines()[1:] if " * " in line]
    assert marked == list(DEFAULT_LOSSES)
    assert "tau=1: balanced softmax (Ren et al. 2020), the same loss" in listed


def test_a_subset_trains_only_those_losses_with_cross_entropy_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "demo", "--seeds", "1", "--epochs", "1", "--losses", "focal", "--out", str(out)
    )
    assert code == 0, err
    report_text = (out / "report.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1].strip() for line in report_text.splitlines() if line[:2] == "| "]
    # The results table, then the differences table (focal against cross-entropy).
    assert rows == ["loss", "---", "cross-entropy", "focal gamma=2", "loss", "---", "focal gamma=2"]
    assert len(printed_cells(stdout)) == 2 * 5 + 5
    assert "- focal gamma=2: `softmax_focal_loss(input, target, gamma=2)`" in report_text
    assert "weighted cross-entropy" not in report_text
    assert "Made by `focalkit demo --seeds 1 --epochs 1 --losses focal --out" in report_text
    assert "Effective-number weights" not in report_text  # no loss used --beta


def skewed_csv(path: Path) -> Path:
    """108 rows: 100 of class a and 2 of each of b, c, d, e (one numeric feature)."""
    labels = ["a"] * 100 + [kind for kind in "bcde" for _ in range(2)]
    rng = np.random.default_rng(3)
    lines = ["x,kind", *(f"{rng.normal():.3f},{label}" for label in labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ("logit-adjusted", "logit-adjusted needs every class in training"),
        ("ldam,ldam-drw,focal", "ldam, ldam-drw need every class in training"),
    ],
)
def test_a_class_missing_from_a_training_split_is_refused_for_the_losses_that_need_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    losses: str,
    message: str,
) -> None:
    monkeypatch.setattr(report, "run_with_progress", no_training)
    data = skewed_csv(tmp_path / "skewed.csv")
    out = tmp_path / "out"
    argv = ["compare", str(data), "--target", "kind", "--test-size", "0.8", "--out", str(out)]
    assert_usage_error(capsys, [*argv, "--losses", losses], message)
    assert_usage_error(capsys, [*argv, "--losses", losses], "give a smaller --test-size")
    assert not out.exists()


def test_the_same_split_is_fine_for_the_class_weighted_losses(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = skewed_csv(tmp_path / "skewed.csv")
    argv = ["compare", str(data), "--target", "kind", "--test-size", "0.8", "--seeds", "1"]
    argv += ["--epochs", "1", "--losses", "weighted-cross-entropy", "--out", str(tmp_path / "o")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err


def test_deferred_re_weighting_switches_at_80_percent_of_the_epochs() -> None:
    import torch

    epochs = 5
    calls: list[str] = []

    def first(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append("first")
        return torch.nn.functional.cross_entropy(input, target)

    def later(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append("later")
        return torch.nn.functional.cross_entropy(input, target)

    rng = np.random.default_rng(0)
    split = Split(
        x_train=rng.normal(size=(8, 3)).astype(np.float32),
        y_train=np.array([0, 1] * 4),
        x_test=rng.normal(size=(4, 3)).astype(np.float32),
        y_test=np.array([0, 1] * 2),
    )
    settings = Settings(epochs=epochs, batch_size=8)  # one batch per epoch
    training.train(split, Loss("drw", "", first, reweighted=later), 0, 2, settings)
    assert calls == ["first"] * 4 + ["later"]
    assert deferred_epoch(epochs) == 4
    calls.clear()
    training.train(split, Loss("plain", "", first), 0, 2, settings)
    assert calls == ["first"] * epochs


def test_the_test_set_is_scored_on_scale_times_the_model_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``train`` reports is ``log_softmax(scale * model(x_test))`` of the trained model."""
    import torch

    made: list[torch.nn.Module] = []
    original = training._model

    def keep(*args: int) -> torch.nn.Module:
        made.append(original(*args))
        return made[-1]

    monkeypatch.setattr(training, "_model", keep)
    rng = np.random.default_rng(1)
    split = Split(
        x_train=rng.normal(size=(16, 3)).astype(np.float32),
        y_train=np.array([0, 1, 2, 2] * 4),
        x_test=rng.normal(size=(6, 3)).astype(np.float32),
        y_test=np.array([0, 1, 2] * 2),
    )
    criterion = torch.nn.functional.cross_entropy
    for scale in (1.0, 30.0):
        run = training.train(split, Loss("l", "", criterion, scale=scale), 0, 3, Settings(epochs=2))
        with torch.no_grad():
            logits = made[-1](torch.from_numpy(split.x_test)).double()
        expected = torch.log_softmax(scale * logits, dim=1).numpy()
        np.testing.assert_allclose(run.log_probs, expected, rtol=1e-12, atol=1e-12)
