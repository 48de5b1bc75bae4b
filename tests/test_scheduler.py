"""The process scheduler: order after the task a task starts from, and a failure named by its task."""

import time

import pytest

from fgssl_lib.scheduler import TaskFailed, run_tasks


def _square(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_tasks_run_after_the_task_they_start_from_and_a_failure_names_its_task(jobs):
    finished = []
    run_tasks(_square, [(3,), (1,), (2,)], jobs, lambda task, result, _: finished.append((task, result)),
              after=lambda task: (1,) if task == (3,) else None)
    assert sorted(finished) == [((1,), 1), ((2,), 4), ((3,), 9)]
    assert [t for t, _ in finished].index((1,)) < [t for t, _ in finished].index((3,))
    with pytest.raises(TaskFailed, match=r"task \(-1,\) failed: ValueError: negative") as failed:
        run_tasks(_square, [(-1,)], jobs, lambda *_: None)
    assert failed.value.task == (-1,) and isinstance(failed.value.error, ValueError)


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_an_interrupt_stops_the_running_tasks_at_once():
    def interrupt(task, result, seconds):
        raise KeyboardInterrupt  # Ctrl-C while the 60 s task runs in the other process

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_tasks(_sleep, [(0.0,), (60.0,)], 2, interrupt)
    assert time.perf_counter() - start < 30  # the 60 s task was stopped, not waited for
