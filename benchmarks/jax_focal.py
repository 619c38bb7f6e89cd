"""focalkit.jax forward+backward against optax's losses, both jitted, on the CPU in float32.

python benchmarks/jax_focal.py [--only NAME] [--rounds 11] [--repeats 5]

Each step is ``jax.jit(jax.value_and_grad(lambda logits, labels: loss(logits, labels).mean()))``,
compiled once before timing. The candidate and its reference run interleaved, round after round,
so that drift on a noisy machine hits both; each round's ratio is a ratio of medians, and the line
printed is the median ratio with its spread, as in the PyTorch benchmarks (harness.py). XLA's
CPU backend runs its own thread pool (all cores); OMP_WAIT_POLICY does not concern it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from focalkit.jax import (
    sigmoid_focal_loss,
    softmax_focal_loss,
    softmax_focal_loss_with_integer_labels,
)

Step = Callable[[jax.Array, jax.Array], Any]


def fwd_bwd(loss_fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Step:
    """The mean loss and its gradient with respect to the logits, jitted."""
    return jax.jit(jax.value_and_grad(lambda logits, labels: loss_fn(logits, labels).mean()))


@dataclass
class Case:
    name: str
    make: Callable[[], tuple[jax.Array, jax.Array]]
    candidate: tuple[str, Step]
    reference: tuple[str, Step]


def _integer_labels(shape: tuple[int, int]) -> Callable[[], tuple[jax.Array, jax.Array]]:
    def make() -> tuple[jax.Array, jax.Array]:
        logits_key, labels_key = jax.random.split(jax.random.PRNGKey(0))
        logits = jax.random.normal(logits_key, shape, jnp.float32)
        return logits, jax.random.randint(labels_key, shape[:1], 0, shape[1])

    return make


def _probabilities(shape: tuple[int, int]) -> Callable[[], tuple[jax.Array, jax.Array]]:
    def make() -> tuple[jax.Array, jax.Array]:
        logits_key, labels_key = jax.random.split(jax.random.PRNGKey(0))
        logits = jax.random.normal(logits_key, shape, jnp.float32)
        return logits, jax.nn.softmax(jax.random.uniform(labels_key, shape), axis=-1)

    return make


def _dense_detection(
    shape: tuple[int, int], positives: float
) -> Callable[[], tuple[jax.Array, jax.Array]]:
    def make() -> tuple[jax.Array, jax.Array]:
        logits_key, labels_key = jax.random.split(jax.random.PRNGKey(0))
        logits = jax.random.normal(logits_key, shape, jnp.float32) * 2 - 3
        labels = (jax.random.uniform(labels_key, shape) < positives).astype(jnp.float32)
        return logits, labels

    return make


def _cases() -> list[Case]:
    integer = (
        "focalkit",
        fwd_bwd(lambda x, y: softmax_focal_loss_with_integer_labels(x, y, gamma=2.0)),
    )
    optax_integer = ("optax", fwd_bwd(optax.softmax_cross_entropy_with_integer_labels))
    return [
        Case("integer labels (8192, 1000)", _integer_labels((8192, 1000)), integer, optax_integer),
        Case(
            "integer labels (2048, 32000)", _integer_labels((2048, 32000)), integer, optax_integer
        ),
        Case(
            "dense detection (200000, 80)",
            _dense_detection((200000, 80), 0.01),
            ("focalkit", fwd_bwd(lambda x, y: sigmoid_focal_loss(x, y, gamma=2.0, alpha=0.25))),
            (
                "optax",
                fwd_bwd(lambda x, y: optax.sigmoid_focal_loss(x, y, gamma=2.0, alpha=0.25)),
            ),
        ),
        Case(
            "probability labels (8192, 1000)",
            _probabilities((8192, 1000)),
            ("focalkit", fwd_bwd(lambda x, y: softmax_focal_loss(x, y, gamma=2.0))),
            ("optax", fwd_bwd(optax.softmax_cross_entropy)),
        ),
    ]


def _median_seconds(step: Step, inputs: tuple[jax.Array, jax.Array], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*inputs))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_ratios(case: Case, rounds: int, repeats: int) -> list[float]:
    inputs = case.make()
    for _, step in (case.candidate, case.reference):  # compile and warm up
        jax.block_until_ready(step(*inputs))
    ratios = []
    for _ in range(rounds):
        reference = _median_seconds(case.reference[1], inputs, repeats)
        ratios.append(_median_seconds(case.candidate[1], inputs, repeats) / reference)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default=None, help="run the cases whose name contains this")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, float32"
    )
    for case in _cases():
        if args.only and args.only not in case.name:
            continue
        ratios = time_ratios(case, args.rounds, args.repeats)
        print(
            f"{case.name}: {case.candidate[0]} / {case.reference[0]}: time median "
            f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
