"""Ordered worker processes: results in submission order, failures in one line, no leftovers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from netids.parallel.procs import alive
from netids.parallel.workers import OrderedPool, WorkerError, can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="worker processes need fork")


def slow_square(x: int) -> int:
    time.sleep(0.02 * (x % 3))  # later items often finish first on another worker
    return x * x


def fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError("five is not allowed\nsecond line")
    return x


def die_on_five(x: int) -> int:
    if x >= 5 and multiprocessing.parent_process() is not None:  # in a worker, not the owner
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.02)
    return x


def where(x: int) -> tuple[int, int]:
    time.sleep(0.05)
    return x, os.getpid()


def big_result(x: int) -> bytes:
    return bytes([x % 256]) * 2_000_000  # written in many pieces: a kill can cut it anywhere


def run(pool: OrderedPool[int, int], items: range) -> list[int]:
    """Submit and take results as they are ready, the way the score command does."""
    out = []
    for x in items:
        pool.submit(x)
        while pool.ready():
            out.append(pool.next())
    while pool.pending:
        out.append(pool.next())
    return out


@pytest.mark.parametrize("processes", [0, 1, 3])
def test_results_come_back_in_submission_order(processes: int) -> None:
    with OrderedPool(slow_square, processes) as pool:
        assert run(pool, range(30)) == [x * x for x in range(30)]
    assert multiprocessing.active_children() == []


def test_the_owner_works_on_items_while_the_workers_hold_all_they_may() -> None:
    with OrderedPool(where, 1, max_pending=2) as pool:
        for x in range(5):
            pool.submit(x)  # 0 and 1 to the worker, then the owner does 2, 3 and 4 itself
        results = [pool.next() for _ in range(5)]
    assert [x for x, _ in results] == list(range(5))
    pids = [pid for _, pid in results]
    assert pids[0] == pids[1] != os.getpid() and pids[2:] == [os.getpid()] * 3


def test_a_failing_item_ends_the_run_with_one_line_and_no_leftover_workers() -> None:
    got = []
    with (pytest.raises(WorkerError, match="ValueError: five is not allowed") as caught,
          OrderedPool(fail_on_five, 2) as pool):
        for x in range(20):
            pool.submit(x)
            while pool.ready():
                got.append(pool.next())
        while pool.pending:
            got.append(pool.next())
    assert got == [0, 1, 2, 3, 4]  # everything before it, in order
    assert "\n" not in str(caught.value)
    assert multiprocessing.active_children() == []


def test_a_killed_worker_is_an_error_not_a_hang() -> None:
    started = time.monotonic()
    with (pytest.raises(WorkerError, match="stopped unexpectedly"),
          OrderedPool(die_on_five, 2) as pool):
        run(pool, range(20))
    assert time.monotonic() - started < 30
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("after", [0.0, 0.05, 0.13, 0.31])
def test_a_worker_killed_at_any_moment_is_an_error_not_a_hang(after: float) -> None:
    started = time.monotonic()
    taken = 0
    with pytest.raises(WorkerError, match="stopped unexpectedly"), \
            OrderedPool(big_result, 2) as pool:
        victim = multiprocessing.active_children()[0]
        x, killed_at = 0, None
        # at least 1000 items, and 100 after the kill however fast the machine runs them
        while x < 1000 or killed_at is None or x < killed_at + 100:
            pool.submit(x)
            x += 1
            while pool.ready():
                assert pool.next() == big_result(taken)  # nothing lost or out of order before
                taken += 1
            if killed_at is None and time.monotonic() - started > after:
                os.kill(victim.pid, signal.SIGKILL)  # mid-item, mid-result, idle: any moment
                # dead before more work goes out: on a loaded machine the kill could land
                # after the owner had taken every result, with no worker missing yet
                victim.join(10)
                killed_at = x
        while pool.pending:
            assert pool.next() == big_result(taken)
            taken += 1
    assert killed_at is not None and taken < x  # the run stopped at the loss, not after it
    assert time.monotonic() - started < 60
    assert multiprocessing.active_children() == []


def test_workers_ignore_ctrl_c_and_stop_with_their_owner() -> None:
    pool: OrderedPool[int, int] = OrderedPool(slow_square, 2)
    workers = multiprocessing.active_children()
    assert len(workers) == 2
    for proc in workers:
        os.kill(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends the whole group
    assert run(pool, range(10)) == [x * x for x in range(10)]
    pool.close(wait=False)
    assert not any(proc.is_alive() for proc in workers)
    assert multiprocessing.active_children() == []


def test_a_worker_exits_by_itself_when_its_owner_dies() -> None:
    ctx = multiprocessing.get_context("fork")
    report = ctx.SimpleQueue()
    owner = ctx.Process(target=_owner_that_dies, args=(report,))
    owner.start()
    worker_pid, spool = report.get()
    owner.join()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(worker_pid):
        time.sleep(0.1)
    assert not alive(worker_pid)
    assert not Path(spool).exists()  # nor is anything it wrote left behind


def _owner_that_dies(report: multiprocessing.SimpleQueue) -> None:
    pool: OrderedPool[int, int] = OrderedPool(slow_square, 1)
    pool.submit(3)
    pool.next()  # a result went through the spool
    report.put((multiprocessing.active_children()[0].pid, pool._spool))
    os._exit(1)  # no clean-up at all, as after SIGKILL
