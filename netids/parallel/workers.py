"""Ordered worker processes: one function applied to a stream of items on every core.

The ``score`` command's model stage is pure per batch (a batch's verdicts depend on that batch
alone) but heavy on Python, so threads would queue behind one GIL. Forked processes judge
batches side by side with the main process, which keeps the one stage that must stay in stream
order (context features) and, whenever the workers already hold all the items they may, does
the next item itself rather than wait: every core stays busy without more processes than cores.
Results come back in submission order, and at most ``max_pending`` items are in flight in the
workers, so memory stays bounded however large the input.

Workers are forked: the function and everything it references (a loaded model) are inherited,
not pickled; only items and results cross the process boundary. Fork before starting threads
(a database writer, say): a child inherits locks, not the threads holding them. A failing item
or a worker that dies or is killed ends the run with :class:`WorkerError`, never a hang. Items
and results travel as spool files (in memory, on ``/dev/shm``, where it exists), announced by
messages short enough for a pipe to deliver whole or not at all: one write and one read of a
batch each way, instead of megabytes squeezed through a 64 KB pipe with a context switch per
piece, and a worker killed mid-result cannot leave its owner waiting for the rest of a message.
Items that fit go through :class:`~netids.parallel.shared_slots.SharedSlots` instead: copied
once into shared memory, read there in place. Workers ignore Ctrl-C (their owner stops them)
and exit by themselves when their owner is gone.

>>> with OrderedPool(abs, processes=0) as pool:
...     pool.submit(-3)
...     pool.submit(4)
...     [pool.next(), pool.next()]
[3, 4]
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from netids.parallel.shared_slots import SharedSlots

T = TypeVar("T")
R = TypeVar("R")

POLL_SECONDS = 0.5  # how often a waiting side checks that the other is still there
MAX_FAILURE = 1000  # characters of a failure message: its announcement stays one atomic write
PER_WORKER = 3  # items in flight per worker: one worked on, two queued while the owner is busy
SLOT_BYTES = 4 * 1024 * 1024  # shared memory per item in flight (a 4096-packet batch: 1.3 MB)


class WorkerError(Exception):
    """An item's work failed, or a worker disappeared; the message says how, in one line."""


def can_fork() -> bool:
    """Whether worker processes are available here (``fork`` exists on Linux and macOS)."""
    return "fork" in multiprocessing.get_all_start_methods()


class OrderedPool(Generic[T, R]):
    """Applies ``work`` to submitted items, on ``processes`` forked workers or, when they are
    all busy, in the caller; :meth:`next` returns the results in submission order. With
    ``processes=0`` every item is worked on at :meth:`submit` (the reference behaviour)."""

    def __init__(self, work: Callable[[T], R], processes: int,
                 max_pending: int | None = None) -> None:
        self.max_pending = max(1, max_pending or PER_WORKER * processes)
        self._work = work
        self._inline: dict[int, R | _Failure] = {}  # results of the items worked on here
        self._arrived: dict[int, str | None] = {}  # announced by workers: number -> failure
        self._in_workers = 0
        self._submitted = self._returned = 0
        self._procs: list[multiprocessing.Process] = []
        if processes <= 0:
            return
        ctx = multiprocessing.get_context("fork")
        self._tasks: multiprocessing.Queue = ctx.Queue()  # (item number, its slot or -1)
        self._done: multiprocessing.Queue = ctx.Queue()  # (result number, failure or None)
        self._spool = tempfile.mkdtemp(prefix="netids-workers-", dir=_memory_dir())
        self._slots = SharedSlots(self.max_pending, SLOT_BYTES)
        self._free = list(range(self.max_pending))  # slots no item in flight holds
        self._slot_of: dict[int, int] = {}
        # Ctrl-C held back while forking: a worker only takes it once it ignores it, and the
        # owner receives it as soon as the workers are started
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for i in range(processes):
                proc = ctx.Process(target=_serve, name=f"netids-worker-{i}", daemon=True,
                                   args=(work, self._tasks, self._done, self._spool, self._slots,
                                         os.getpid()))
                proc.start()
                self._procs.append(proc)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    @property
    def pending(self) -> int:
        """Items submitted whose results have not been taken yet."""
        return self._submitted - self._returned

    def submit(self, item: T) -> None:
        """Hand ``item`` to a worker if they hold fewer than ``max_pending`` items, else work
        on it here and now."""
        seq = self._submitted
        if self._procs and self._in_workers < self.max_pending:
            slot = self._free.pop()
            if not self._slots.put(slot, item):  # too big for a slot: a spool file then
                self._free.append(slot)
                slot = -1
                _spool_write(self._spool, seq, "item", item)
            self._slot_of[seq] = slot
            self._tasks.put((seq, slot))
            self._in_workers += 1
        else:
            try:
                self._inline[seq] = self._work(item)
            except Exception as exc:  # reported like a worker's failure, in one line
                self._inline[seq] = _Failure(_one_line(exc))
        self._submitted += 1

    def ready(self) -> bool:
        """Whether the oldest pending result can be taken without waiting."""
        seq = self._returned
        if self.pending <= 0:
            return False
        if seq in self._inline:
            return True
        self._collect(block=False)
        return seq in self._arrived

    def next(self) -> R:
        """The result of the oldest pending item; waits for it. :class:`WorkerError` when its
        work failed or a worker died."""
        if self.pending <= 0:
            raise ValueError("no pending item")
        seq = self._returned
        self._check_alive()  # a worker lost, even idle, is a fault worth stopping for
        if seq in self._inline:
            result = self._inline.pop(seq)
        else:
            while seq not in self._arrived:
                self._collect(block=True)
            failure = self._arrived.pop(seq)
            self._in_workers -= 1
            slot = self._slot_of.pop(seq)
            if slot >= 0:
                self._free.append(slot)  # the worker is done with the item it held
            result = _Failure(failure) if failure is not None else _spool_read(
                self._spool, seq, "result")
        self._returned += 1
        if isinstance(result, _Failure):
            raise WorkerError(result.message)
        return result  # type: ignore[return-value]

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers: let them finish and exit (``wait``), or terminate them now."""
        if not self._procs:
            return
        if wait:
            for _ in self._procs:
                self._tasks.put(None)
        else:
            self._tasks.cancel_join_thread()  # items nobody will read must not block our exit
        for proc in self._procs:
            if wait:
                proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
            proc.join()
        self._tasks.close()
        self._done.close()
        shutil.rmtree(self._spool, ignore_errors=True)
        self._procs = []

    def __enter__(self) -> OrderedPool[T, R]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(wait=exc_type is None and self.pending == 0)

    def _collect(self, *, block: bool) -> None:
        """Note the results workers announced: all there are now, and (``block``) at least one
        unless a worker died meanwhile."""
        wait = block
        while True:
            try:
                done, failure = self._done.get(wait, POLL_SECONDS)
            except queue.Empty:
                if wait:
                    self._check_alive()
                return
            self._arrived[done] = failure
            wait = False

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.exitcode is not None:
                raise WorkerError(f"worker process {proc.name} stopped unexpectedly "
                                  f"(exit code {proc.exitcode})")


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str


def _serve(work: Callable[[T], R], tasks: multiprocessing.Queue, done: multiprocessing.Queue,
           spool: str, slots: SharedSlots, owner: int) -> None:
    """A worker's life: results spooled and announced until told to stop. Anything that
    breaks the loop itself ends the process quietly: its owner reports the exit code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        _loop(work, tasks, done, spool, slots, owner)
    except Exception:
        os._exit(1)


def _loop(work: Callable[[T], R], tasks: multiprocessing.Queue, done: multiprocessing.Queue,
          spool: str, slots: SharedSlots, owner: int) -> None:
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if os.getppid() != owner:  # the owner died without stopping us: nobody reads
                shutil.rmtree(spool, ignore_errors=True)  # what we spooled
                return
            continue
        if task is None:
            return
        seq, slot = task
        failure = None
        try:
            item = slots.get(slot) if slot >= 0 else _spool_read(spool, seq, "item")
            # pickled here, not by a queue's feeder thread: a result that cannot be pickled is
            # reported like any failure
            _spool_write(spool, seq, "result", work(item))
        except Exception as exc:  # any failure of the work ends the run, reported in one line
            failure = _one_line(exc)
        item = None  # views of the slot, which the owner may reuse once it has the result
        done.put((seq, failure))


def _one_line(exc: Exception) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:MAX_FAILURE]


def _spool_write(spool: str, seq: int, kind: str, obj: object) -> None:
    with open(os.path.join(spool, f"{seq}.{kind}"), "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _spool_read(spool: str, seq: int, kind: str) -> object:
    path = os.path.join(spool, f"{seq}.{kind}")
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
    os.unlink(path)
    return obj


def _memory_dir() -> str | None:
    """``/dev/shm`` (memory, never written back to disk) where it exists: the default
    temporary folder otherwise."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
