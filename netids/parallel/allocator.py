"""Keep freed memory for reuse: batch after batch allocates the same arrays again.

Every pipeline batch allocates and frees the same few dozen arrays of 100 KB to a few MB
(packet columns, features, model activations, surprise tables). With glibc's defaults, large
blocks are mapped afresh and a heap top freed beyond a small threshold goes back to the kernel,
so each batch page-faults on memory it used a moment ago: on the model stage that was about
0.9 us a packet, a sixth of its cost. Raising both thresholds lets freed blocks be reused; the
process then keeps its peak heap instead of handing it back between batches (``score``).

The live app runs for days beside a web server, so it does the opposite: it keeps glibc's
defaults and every few seconds hands the free pages back (:class:`HeapTrimmer`), so that
freed batch memory does not pile up as batch sizes vary.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # blocks below this come from the heap (glibc's maximum)
TRIM_THRESHOLD = 256 * 1024 * 1024  # free heap top kept before any is returned to the kernel


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed memory rather than return it; forked children inherit
    the setting. False where the C library is not glibc (nothing changes there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


TRIM_SECONDS = 5.0  # the live pipeline hands freed heap back at most this often


def return_freed_memory() -> bool:
    """Hand the free pages of every malloc arena back to the kernel (glibc's ``malloc_trim``).

    A long-running process whose threads allocate batch-sized blocks of changing sizes (the
    live app: capture, pipeline, database writer and page threads each with an arena) leaves
    freed blocks scattered through its heaps; glibc keeps them, so its RSS climbs for as long as
    traffic varies. False where the C library is not glibc. Took 16-27 ms after the pipeline's
    batches (measured offline); ctypes releases the GIL meanwhile.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


@dataclass(slots=True)
class HeapTrimmer:
    """Calls :func:`return_freed_memory` at most every ``every`` seconds of the clock it is
    given, so the thread that runs batches can ask after each one.

    >>> t = HeapTrimmer(every=5.0)
    >>> t.due(100.0), t.due(103.0), t.due(105.5)
    (True, False, True)
    """

    every: float = TRIM_SECONDS
    last: float = -float("inf")
    trims: int = 0  # times memory was handed back

    def due(self, now: float) -> bool:
        """Whether a trim is due at ``now``; if so, it counts as done from ``now``."""
        if now - self.last < self.every:
            return False
        self.last = now
        return True

    def after_batch(self, now: float) -> None:
        """After one batch's work: trim when due."""
        if self.due(now) and return_freed_memory():
            self.trims += 1
