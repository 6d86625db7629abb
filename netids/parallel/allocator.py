"""Keep freed memory for reuse: batch after batch allocates the same arrays again.

Every pipeline batch allocates and frees the same few dozen arrays of 100 KB to a few MB
(packet columns, features, model activations, surprise tables). With glibc's defaults, large
blocks are mapped afresh and a heap top freed beyond a small threshold goes back to the kernel,
so each batch page-faults on memory it used a moment ago: on the model stage that was about
0.9 us a packet, a sixth of its cost. Raising both thresholds lets freed blocks be reused; the
process then keeps its peak heap instead of handing it back between batches (``score``).

The live app runs for days beside a web server, so it does the opposite: it keeps glibc's
defaults and every few seconds hands the free pages back (:class:`HeapTrimmer`), so that
freed batch memory does not pile up as batch sizes vary. Trimming cannot return pages that
one live block pins, and glibc's mmap threshold rises to the largest block freed so far: after
a flood's large batches, blocks of that size come from the heaps for good and fragment them.
So ``app.py`` restarts itself once with jemalloc (:func:`with_jemalloc`) where the library is
installed, which returns what it frees in whole pages at the speed of glibc's heaps: the
pipeline on batches of 1 to 60,000 packets grew by 11 to 19 MiB over 270 batches with it,
by 45 to 56 MiB with glibc (trimmed every 20 batches: 41), at the same cost per packet.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


# where Debian, Ubuntu and Fedora put jemalloc (apt install libjemalloc2)
JEMALLOC_PATHS = tuple(Path(d) / "libjemalloc.so.2" for d in (
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"))
OPT_OUT = "NETIDS_MALLOC"  # =glibc: keep the C library's allocator


def with_jemalloc(argv: Sequence[str], environ: Mapping[str, str],
                  maps: str, paths: Sequence[Path] = JEMALLOC_PATHS) -> dict[str, str] | None:
    """The environment to restart the interpreter with (``LD_PRELOAD`` naming jemalloc), or
    None to carry on: jemalloc is not installed, is loaded already (``maps``: this process's
    /proc/self/maps), or ``NETIDS_MALLOC=glibc`` asks to keep glibc's.

    >>> with_jemalloc(["app.py"], {"PATH": "/bin"}, "", [Path("/bin/sh")])["LD_PRELOAD"]
    '/bin/sh'
    >>> with_jemalloc(["app.py"], {}, "7f00 r-xp /usr/lib/libjemalloc.so.2", [Path("/bin/sh")])
    >>> with_jemalloc(["app.py"], {"NETIDS_MALLOC": "glibc"}, "", [Path("/bin/sh")])
    """
    if environ.get(OPT_OUT, "").lower() == "glibc" or "libjemalloc" in maps:
        return None
    found = next((p for p in paths if p.is_file()), None)
    if found is None or not argv:
        return None
    preload = " ".join(filter(None, (str(found), environ.get("LD_PRELOAD", ""))))
    return {**environ, "LD_PRELOAD": preload}


def restart_with_jemalloc() -> None:
    """Restart this process under jemalloc when :func:`with_jemalloc` says so (Linux only;
    once: the restarted process finds it loaded). In the restarted process, ``LD_PRELOAD`` is
    taken out of the environment again, so that the programs the app runs (``ip``, the
    training process, the lab's tools) start with their own allocators."""
    if not sys.platform.startswith("linux"):
        return
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return
    if "libjemalloc" in maps:
        preload = [p for p in os.environ.get("LD_PRELOAD", "").split() if "libjemalloc" not in p]
        if preload:
            os.environ["LD_PRELOAD"] = " ".join(preload)
        else:
            os.environ.pop("LD_PRELOAD", None)
        return
    environ = with_jemalloc(sys.orig_argv, os.environ, maps)
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, environ)
