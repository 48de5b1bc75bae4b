"""One writer per run directory: an exclusive advisory lock on ``<run>/.lock``, shared by ``fit`` and
``train_or_load``.

- A second process (or thread) that asks for the same run waits until the first is done, then finds its
  checkpoint (so two trainings never write one ``last.ckpt``).
- Re-entrant within a thread: ``train_or_load`` holds the lock while it calls ``fit``, which takes it again.
- Only the launching process locks. Lightning's DDP launcher starts ranks 1..N-1 by running the same script again
  (``LOCAL_RANK`` / ``NODE_RANK`` set in their environment); they reach ``fit`` while rank 0 holds the lock and waits
  for them in the process-group set-up, so a lock there would deadlock. They train under rank 0's lock instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
"""Environment variables by which a launcher tells a process that it is not the first one."""

_held = threading.local()


def launched_rank() -> int:
    """This process's rank as a launcher set it (0 when no launcher did, or for the launching process)."""
    ranks = [os.environ.get(name, "0") for name in RANK_VARIABLES]
    return max(int(rank) if rank.isdigit() else 0 for rank in ranks)


@contextlib.contextmanager
def run_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of run ``directory`` (created if missing) for the block.

    POSIX ``flock``; a no-op where ``fcntl`` does not exist (Windows: no concurrent runs there) and in processes
    started by a DDP launcher (see the module docstring).
    """
    path = Path(directory).resolve()
    held: set[Path] = _held.__dict__.setdefault("paths", set())
    if path in held or launched_rank() > 0:
        yield
        return
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)
