"""Per-process peak memory of the vocabulary-parallel fused loss at P = 1, 2 and 4 processes.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/vocab_parallel.py [--shape N D C] [--worlds 1 2 4]

Each process (gloo, one per rank, all on this machine) holds the replicated hidden states
``(N, D)`` and its rows of the classifier, ``(C_r, D)`` with ``C_r`` about ``C / P``, and runs
one forward+backward of ``vocab_parallel_linear_softmax_focal_loss`` (``gamma=2``, class-index
targets). Its cost is the growth of its peak resident set over the resident set before the call
(``VmHWM``, reset through ``/proc/self/clear_refs``), so the gradients the call leaves behind
(the input's, and this process's rows of the classifier's) count. A small call first pays the
process's one-time initialisation. The processes run with ``MALLOC_MMAP_THRESHOLD_=131072`` so
that freed buffers leave the resident set, and with ``torch.get_num_threads() = max(1, T // P)``
threads each (``T`` from ``--threads``), so P = 4 shares the cores of P = 1.

The line per world size gives the largest growth over the processes, its ratio to P = 1, and the
wall time of the call (slowest process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time

import torch


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _problem(
    n: int, d: int, c: int, rank: int, world: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hidden states and targets (the same in every process) and this rank's rows."""
    generator = torch.Generator().manual_seed(0)
    hidden = (torch.randn(n, d, generator=generator) / d**0.5).requires_grad_()
    target = torch.randint(0, c, (n,), generator=generator)
    bounds = [c * r // world for r in range(world + 1)]
    rows = bounds[rank + 1] - bounds[rank]
    classifier = torch.randn(rows, d, generator=torch.Generator().manual_seed(1 + rank))
    return hidden, classifier.requires_grad_(), target


def _step(hidden: torch.Tensor, classifier: torch.Tensor, target: torch.Tensor) -> None:
    from focalkit.torch._vocab_parallel import vocab_parallel_linear_softmax_focal_loss

    hidden.grad = classifier.grad = None
    vocab_parallel_linear_softmax_focal_loss(hidden, classifier, target, gamma=2.0).backward()


def child(rank: int, world: int, port: int, n: int, d: int, c: int, threads: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    _step(*_problem(64, 32, 1000, rank, world))  # one-time initialisation, not measured
    hidden, classifier, target = _problem(n, d, c, rank, world)
    dist.barrier()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current resident set
    before = _resident_kib("VmRSS")
    start = time.perf_counter()
    _step(hidden, classifier, target)
    seconds = time.perf_counter() - start
    growth = (_resident_kib("VmHWM") - before) * 1024
    dist.barrier()
    dist.destroy_process_group()
    print(json.dumps({"rank": rank, "growth": growth, "seconds": seconds}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(world: int, n: int, d: int, c: int, threads: int) -> list[dict[str, float]]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    port = _free_port()
    each = max(1, threads // world)
    options = ["--shape", *map(str, (n, d, c)), "--threads", str(each)]
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", *map(str, (rank, world, port)), *options],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rank in range(world)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=3600)
        if process.returncode:
            raise RuntimeError(f"a process exited with {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", nargs=3, type=int, default=[2048, 2048, 128256])
    parser.add_argument("--worlds", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, type=int, metavar=("RANK", "WORLD", "PORT"))
    args = parser.parse_args()
    n, d, c = args.shape
    if args.child:
        child(*args.child, n, d, c, args.threads)
        return
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads in all, float32, "
        f"vocab_parallel_linear_softmax_focal_loss (N={n}, D={d}, C={c}), gamma=2"
    )
    base = None
    for world in args.worlds:
        results = measure(world, n, d, c, args.threads)
        peak = max(r["growth"] for r in results)
        seconds = max(r["seconds"] for r in results)
        base = peak if base is None else base
        classifier_grad = (c // world) * d * 4
        print(
            f"P={world}: per-process peak growth {peak / 2**20:.0f} MiB "
            f"({peak / base:.2f}x of P={args.worlds[0]}; this process's classifier gradient "
            f"alone {classifier_grad / 2**20:.0f} MiB), forward+backward {seconds:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
