"""The Trainer under DDP (two processes, gloo, on the CPU), with gradient accumulation and class
weights: each step trains the objective of the whole global batch (both processes' rows)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import hf_models as hf
import process_group
import torch

WORLD_SIZE = 2
# one optimizer step: 2 processes x 2 micro-batches x 2 rows, with unequal target counts per
# process (13 and 26 after the shift) and per micro-batch
LENGTHS = (2, 3, 6, 8, 4, 8, 7, 8)
WEIGHT = torch.linspace(0.2, 3.0, hf.VOCAB, dtype=torch.float64)


def _train_on_rank(rank: int, world_size: int) -> dict[str, Any]:
    """A plain Trainer (the weighted sum over the global count) and FocalTrainer (the weighted
    mean), each from the same initial model, in this process of the group."""
    from transformers import Trainer

    from focalkit.transformers import FocalTrainer, focal_loss_func

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
    )
    rows = hf.causal_lm_rows(lengths=LENGTHS)
    focal = {"gamma": 2.0, "weight": WEIGHT}
    runs = {}
    for divide_by, trainer_class in (("count", Trainer), ("weight", FocalTrainer)):
        model = hf.CAUSAL_LMS["llama"]()
        with tempfile.TemporaryDirectory() as output_dir:
            runs[divide_by] = hf.train(
                model,
                rows,
                Path(output_dir),
                objective=hf.causal_lm_objective(rows, divide_by=divide_by, **focal),
                trainer_class=trainer_class,
                compute_loss_func=focal_loss_func(model, **focal),
                arguments={"ddp_backend": "gloo"},
            )
    return {"runs": runs, "world_size": torch.distributed.get_world_size()}


def test_ddp_with_accumulation_trains_the_global_objective() -> None:
    results = process_group.run(_train_on_rank, WORLD_SIZE, timeout=150)
    for result in results:
        assert result["world_size"] == WORLD_SIZE
        for run in result["runs"].values():
            # three steps, each over all eight rows: the two processes shared every step
            hf.assert_gradients_equal(run.gradients, run.expected)
            assert all(map(hf.is_close, run.logged_losses, run.expected_losses))
