"""Processes as Linux's /proc shows them: who is whose parent, in which session, still alive.

The native window's clean-up and the tests that prove nothing is left behind read the same
table, so a process counts as gone (a zombie is gone, just not reaped) the same way in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    ppid: int
    sid: int  # session id
    state: str  # "R", "S", ..., "Z" for a zombie
    cmd: str  # command line, arguments joined by spaces

    @property
    def alive(self) -> bool:
        return self.state != "Z"


def read(pid: int) -> Proc | None:
    """The process ``pid``, or None when it does not exist (or vanished while being read)."""
    entry = Path("/proc") / str(pid)
    try:
        stat = (entry / "stat").read_text()
        cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    # the command name in parentheses may contain spaces: the state follows the last ')'
    state, ppid, _, sid = stat[stat.rfind(")") + 2:].split()[:4]
    return Proc(pid, int(ppid), int(sid), state, cmd.strip())


def processes() -> list[Proc]:
    """Every process visible now.

    >>> import os
    >>> any(p.pid == os.getpid() and p.alive for p in processes())
    True
    """
    found = (read(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [p for p in found if p is not None]


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    proc = read(pid)
    return proc is not None and proc.alive
