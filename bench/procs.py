"""Pieces the benchmarks share: a process tree's memory, and SIGTERM taken as Ctrl-C so a
killed benchmark still removes what it made (namespaces, the app it started)."""

from __future__ import annotations

import re
import signal
from pathlib import Path


def tree_rss_mib(root: int) -> float:
    """RSS of ``root`` and its descendants, summed, in MiB (0 when it is gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(m.group(1)) if m else 0
    return total / 1024.0


def sigterm_as_ctrl_c() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt
