"""Entering a network namespace to open a socket there (the socket stays bound to it)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from netids.capture.source import PERMISSION_HINT, CaptureError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` in network namespace ``netns`` (in a short-lived thread), or here.

    ``netns`` is an ``ip netns`` name or a path like ``/proc/PID/ns/net``.
    """
    if netns is None:
        return fn()
    path = netns if "/" in netns else f"/run/netns/{netns}"
    result: list[T] = []
    error: list[BaseException] = []

    def enter_and_run() -> None:
        try:
            _enter(path, netns)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error.append(exc)

    t = threading.Thread(target=enter_and_run, name="netids-netns")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def _enter(path: str, netns: str) -> None:
    """Move the calling thread into the namespace at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CaptureError(f"no network namespace {netns!r}") from exc
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if err == errno.EPERM:
                raise CaptureError(PERMISSION_HINT)
            raise CaptureError(f"cannot enter network namespace {netns!r}: {os.strerror(err)}")
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
