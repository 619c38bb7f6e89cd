"""Shared measurement for the benchmarks: time ratios in one process, memory in fresh ones.

Time: the candidate and its reference run interleaved, round after round, so that drift on a
noisy machine hits both; each round's ratio is a ratio of medians, and the report is the median
ratio with its spread. Memory: each (case, function) pair runs once, forward and backward, in a
fresh Python process, after one unmeasured run that pays the process's one-time initialisation
(thread pool, kernel dispatch tables) and whose gradients are then freed; its cost is the growth of
the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over the resident set
before the measured call, so the gradients the call leaves behind count. The child runs with
``MALLOC_MMAP_THRESHOLD_=131072`` so that freed buffers leave the resident set.

``--device cuda`` runs the same cases on a GPU (times taken between ``torch.cuda.synchronize()``
calls; memory from the caching allocator: ``max_memory_allocated()`` over one forward+backward
less ``memory_allocated()`` before it, in the same fresh process). ``--dtype bfloat16`` (or
``float16``) converts every floating-point input of a case.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Step = Callable[[dict[str, Any]], Any]


@dataclass
class Case:
    """A shape: a function making the inputs, and named forward+backward steps over them."""

    name: str
    make: Callable[[], dict[str, Any]]
    steps: dict[str, Step]
    pairs: list[tuple[str, str]]  # (candidate, reference) names


def fwd_bwd(loss_fn: Callable[..., torch.Tensor]) -> Step:
    """A step: the loss on ``inputs['input']``, then backward to that input."""

    def step(inputs: dict[str, Any]) -> None:
        input = inputs["input"]
        input.grad = None
        loss_fn(input, inputs).backward()

    return step


def place(value: Any, device: str, dtype: torch.dtype) -> Any:
    """A case's inputs on ``device``, floating-point ones in ``dtype`` (leaves stay leaves)."""
    if isinstance(value, dict):
        return {key: place(item, device, dtype) for key, item in value.items()}
    if not isinstance(value, torch.Tensor):
        return value
    if not value.is_floating_point():
        return value.to(device)
    return value.detach().to(device, dtype).requires_grad_(value.requires_grad)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_seconds(step: Step, inputs: dict[str, Any], repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        step(inputs)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_ratios(
    case: Case, rounds: int, repeats: int, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> dict[tuple[str, str], list[float]]:
    inputs = place(case.make(), device, dtype)
    for step in case.steps.values():  # warm up every step once
        step(inputs)
    ratios: dict[tuple[str, str], list[float]] = {pair: [] for pair in case.pairs}
    for _ in range(rounds):
        seconds = {
            name: _median_seconds(step, inputs, repeats, device)
            for name, step in case.steps.items()
        }
        for candidate, reference in case.pairs:
            ratios[(candidate, reference)].append(seconds[candidate] / seconds[reference])
    return ratios


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def memory_child(case: Case, step_name: str, device: str, dtype: torch.dtype) -> None:
    """Runs in a fresh process: print the peak memory growth of one step, in bytes."""
    inputs = place(case.make(), device, dtype)
    step = case.steps[step_name]
    step(inputs)  # once before measuring: one-time initialisation (thread pool, kernels)
    for value in inputs.values():
        if isinstance(value, torch.Tensor):
            value.grad = None
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(inputs)
        torch.cuda.synchronize()
        print(json.dumps({"growth": torch.cuda.max_memory_allocated() - before}))
        return
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current resident set
    before = _resident_kib("VmRSS")
    step(inputs)
    print(json.dumps({"growth": (_resident_kib("VmHWM") - before) * 1024}))


def peak_growth(script: str, case: Case, step_name: str, device: str, dtype: str) -> int:
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    # A fixed mmap threshold: every large buffer is its own mapping, returned to the system when
    # freed, so the resident set follows what is live (glibc's adaptive threshold would keep
    # freed buffers of the unmeasured run in its heap).
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    result = subprocess.run(
        [
            sys.executable,
            script,
            "--memory-child",
            case.name,
            step_name,
            "--device",
            device,
            "--dtype",
            dtype,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return int(json.loads(result.stdout.strip().splitlines()[-1])["growth"])


def describe_machine(device: str, dtype: str) -> str:
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, {dtype}"
    )
    if device == "cuda":
        machine += f", on {torch.cuda.get_device_name()}"
    return machine


def main(script: str, cases: list[Case], *, rounds: int = 11, repeats: int = 5) -> None:
    """Run the cases; ``rounds`` and ``repeats`` are the defaults of the flags of those names."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=None, help="run the cases whose name contains this")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "STEP"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    by_name = {case.name: case for case in cases}
    if args.memory_child:
        memory_child(by_name[args.memory_child[0]], args.memory_child[1], args.device, dtype)
        return
    if os.environ.get("OMP_WAIT_POLICY") != "PASSIVE":
        print("note: set OMP_WAIT_POLICY=PASSIVE (OpenMP busy-waiting skews shared machines)")
    print(describe_machine(args.device, args.dtype))
    for case in cases:
        if args.only and args.only not in case.name:
            continue
        ratios = time_ratios(case, args.rounds, args.repeats, args.device, dtype)
        growth: dict[str, int] = {}
        if not args.no_memory:
            names = {name for pair in case.pairs for name in pair}
            growth = {
                name: peak_growth(script, case, name, args.device, args.dtype)
                for name in sorted(names)
            }
        for (candidate, reference), values in ratios.items():
            median = statistics.median(values)
            line = (
                f"{case.name}: {candidate} / {reference}: time median {median:.2f}x "
                f"(min {min(values):.2f}, max {max(values):.2f})"
            )
            if growth:
                line += (
                    f", peak memory {growth[candidate] / max(growth[reference], 1):.2f}x "
                    f"({growth[candidate] / 2**20:.0f} MiB vs {growth[reference] / 2**20:.0f} MiB)"
                )
            print(line, flush=True)
