"""Run a function in spawned processes that share a gloo process group on 127.0.0.1.

``run(fn, world_size, *args, timeout=60)`` starts ``world_size`` processes, each of which joins a
gloo process group (``init_method`` a free TCP port on 127.0.0.1), sets float64 as the default
dtype and one intra-op thread, calls ``fn(rank, world_size, *args)`` and sends back what it
returned. The parent returns the results in rank order, or raises ``ChildError`` with the failing
rank's traceback, or ``TimeoutError`` once ``timeout`` seconds have passed (every child is then
killed). ``fn`` and ``args`` must be picklable: ``fn`` a module-level function of an importable
module (a test module is, since spawned children inherit ``sys.path``).

Results travel as ``pickle.dumps`` bytes, so tensors come back as copies, not shared memory that
would vanish with the child.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["ChildError", "free_port", "run"]


class ChildError(RuntimeError):
    """A child process raised; the message holds its rank and traceback."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child(
    rank: int,
    world_size: int,
    port: int,
    results: Any,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    try:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        torch.set_default_dtype(torch.float64)
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
        )
        try:
            value = fn(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
        results.put((rank, True, pickle.dumps(value)))
    except BaseException:
        results.put((rank, False, traceback.format_exc()))


def _failures(results: Any, rank: int, world_size: int, payload: str) -> str:
    """Every rank's traceback that arrives within a second, in rank order.

    When one rank raises, its peers usually fail in the next collective ("Connection closed by
    peer"); the rank order keeps the cause readable among them.
    """
    failures = {rank: payload}
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        try:
            other, ok, text = results.get(timeout=left)
        except queue.Empty:
            break
        if not ok:
            failures[other] = text
    return "\n".join(
        f"rank {other} of {world_size} raised:\n{text}" for other, text in sorted(failures.items())
    )


def run(fn: Callable[..., Any], world_size: int, *args: Any, timeout: float = 60.0) -> list[Any]:
    """``[fn(rank, world_size, *args) for each rank]``, each rank in its own spawned process.

    Raises ``ChildError`` (with the child's traceback) if any rank raised or died, and
    ``TimeoutError`` if the ranks have not all returned within ``timeout`` seconds.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    port = free_port()
    processes = [
        context.Process(
            target=_child, args=(rank, world_size, port, results, fn, args), daemon=True
        )
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    received: dict[int, Any] = {}
    failure: str | None = None
    try:
        while len(received) < world_size and failure is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{world_size} processes running {fn.__name__}: ranks "
                    f"{sorted(set(range(world_size)) - set(received))} had not returned "
                    f"after {timeout} s"
                )
            try:
                rank, ok, payload = results.get(timeout=min(left, 0.5))
            except queue.Empty:
                dead = [
                    (rank, process.exitcode)
                    for rank, process in enumerate(processes)
                    if rank not in received and process.exitcode is not None
                ]
                if dead:
                    # A rank that sent its result may exit before the parent reads the queue.
                    try:
                        rank, ok, payload = results.get(timeout=1.0)
                    except queue.Empty:
                        failure = f"rank {dead[0][0]} exited with code {dead[0][1]} and no result"
                        continue
                else:
                    continue
            if ok:
                received[rank] = pickle.loads(payload)
            else:
                failure = _failures(results, rank, world_size, payload)
    finally:
        for process in processes:
            process.join(timeout=0 if failure or len(received) < world_size else 5)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
    if failure is not None:
        raise ChildError(failure)
    return [received[rank] for rank in range(world_size)]
