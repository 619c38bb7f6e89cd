"""A causal LM's training step with the fused focal loss against the model's own loss path.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/transformers_fused.py [--only NAME] [--rounds 3]

Each step is ``model(**batch, labels=labels).loss.backward()`` on a small transformers model
built from its config, with a real vocabulary: the model's own cross-entropy (transformers'
``ForCausalLMLoss`` on the logits), the same forward with the focal loss as its
``loss_function`` (``use_focal_loss(model)``: the logits are formed, then the focal loss), and
``use_focal_loss(model, fused=True)``, which takes the loss from the last hidden states and
``lm_head.weight`` without forming the logits. Memory is the peak resident growth of one step,
the parameters' gradients included (each step frees them at its end), in a fresh process per
step (harness.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from harness import Case, Step, main
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging

from focalkit.transformers import use_focal_loss

GAMMA = 2.0
logging.set_verbosity_error()  # GPT2LMHeadModel's own loss warns that it has no loss_type


def _own(model: Any) -> None:
    """The model's own cross-entropy."""


def _focal(model: Any) -> None:
    use_focal_loss(model, gamma=GAMMA)


def _fused(model: Any) -> None:
    use_focal_loss(model, gamma=GAMMA, fused=True)


def _case(name: str, build: Callable[[], Any], vocab: int, batch: int, length: int) -> Case:
    def make() -> dict[str, Any]:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        input_ids = torch.randint(0, vocab, (batch, length), generator=generator)
        lengths = torch.randint(length // 2, length + 1, (batch, 1), generator=generator)
        mask = (torch.arange(length) < lengths).long()
        labels = input_ids.masked_fill(mask == 0, -100)
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": labels,
            "probe": torch.zeros(()),  # carries the run's device and dtype to the model
            "models": {},
        }

    def steps_for(prepare: Callable[[Any], Any]) -> Step:
        def step(inputs: dict[str, Any]) -> None:
            models = inputs["models"]  # one model per kind of step, built on first use
            if prepare not in models:
                probe = inputs["probe"]
                models[prepare] = build().to(probe.device, probe.dtype).train()
                prepare(models[prepare])
            model = models[prepare]
            batch = {name: inputs[name] for name in ("input_ids", "attention_mask", "labels")}
            model(**batch).loss.backward()
            model.zero_grad(set_to_none=True)

        return step

    steps = {
        "fused focal": steps_for(_fused),
        "model's cross-entropy": steps_for(_own),
        "model + focal": steps_for(_focal),
    }
    pairs = [("fused focal", "model's cross-entropy"), ("fused focal", "model + focal")]
    return Case(f"{name} (B={batch}, T={length}, V={vocab})", make, steps, pairs)


def _llama(vocab: int) -> Callable[[], Any]:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    )
    return lambda: LlamaForCausalLM(config)


def _gpt2(vocab: int) -> Callable[[], Any]:
    config = GPT2Config(vocab_size=vocab, n_embd=256, n_layer=2, n_head=4, n_positions=1024)
    return lambda: GPT2LMHeadModel(config)


CASES = [
    _case("Llama", _llama(32000), 32000, batch=4, length=512),
    _case("GPT-2", _gpt2(50257), 50257, batch=4, length=256),
]

if __name__ == "__main__":
    main(__file__, CASES, rounds=3, repeats=1)
