"""The process scheduler: independent tasks (training runs) in parallel single-threaded processes, one per CPU core,
a task waiting for the one it starts from; the CPU study and the book's run plan both train through it."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any


def default_jobs() -> int:
    """Parallel processes: one per CPU core on a CPU-only machine (each single-threaded, which keeps a small
    network's step faster than two threads on one process), one where CUDA trains."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def single_threaded() -> None:
    """Initializer of a worker process: one intra-op thread, so ``jobs`` processes share the cores without
    contention; on Linux the process also ends when the process that started it is killed (its run resumes from
    ``last.ckpt``)."""
    import torch

    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_tasks(work: Callable[..., Any], tasks: Sequence[tuple], jobs: int,
              done: Callable[[tuple, Any, float], None],
              after: Callable[[tuple], tuple | None] = lambda _: None) -> None:
    """``work(*task)`` for every task, ``jobs`` at a time in single-threaded processes (in this process when
    ``jobs == 1``); a task starts only once the task ``after(task)`` names (if it is one of ``tasks``) has finished.
    ``done(task, result, seconds)`` runs here as each task finishes; a failed task stops the others at once and
    raises :class:`TaskFailed` naming it, as an interrupt (Ctrl-C) stops them (a training run resumes from its last
    checkpoint)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    waiting = [t for t in tasks if after(t) in tasks]
    ready = [t for t in tasks if t not in waiting]

    def release(task: tuple) -> list[tuple]:
        freed = [t for t in waiting if after(t) == task]
        for t in freed:
            waiting.remove(t)
        return freed

    if jobs == 1:
        while ready:
            task = ready.pop(0)
            start = time.perf_counter()
            try:
                result = work(*task)
            except Exception as error:
                raise TaskFailed(task, error) from error
            done(task, result, time.perf_counter() - start)
            ready += release(task)
        return
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=single_threaded)
    try:
        started: dict[Future, tuple[tuple, float]] = {}
        while ready or started:
            while ready and len(started) < jobs:  # submitted when a process is free: its seconds are its own
                task = ready.pop(0)
                started[pool.submit(work, *task)] = (task, time.perf_counter())
            finished, _ = wait(started, return_when=FIRST_COMPLETED)
            for future in finished:
                task, start = started.pop(future)
                try:
                    result = future.result()
                except Exception as error:
                    raise TaskFailed(task, error) from error
                done(task, result, time.perf_counter() - start)
                ready += release(task)
    except BaseException:  # a failure or Ctrl-C stops the tasks still running now, not when they finish
        for process in list(pool._processes.values()):  # noqa: SLF001 - the executor has no public terminate
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


class TaskFailed(RuntimeError):
    """A task of :func:`run_tasks` raised: ``task`` names it, ``error`` is what it raised."""

    def __init__(self, task: tuple, error: BaseException) -> None:
        super().__init__(f"task {task} failed: {type(error).__name__}: {error}")
        self.task, self.error = task, error
