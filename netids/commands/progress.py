"""Not a command: the progress bar ``score``, ``train`` and ``evaluate`` draw while they work.

One line on stderr, redrawn in place at most every ``INTERVAL`` seconds, and only when stderr is
a terminal and the settings allow it (``CI=true`` turns it off): piped or logged output gets the
commands' usual lines and nothing else.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from netids.capture.progress import Snapshot
from netids.config import Settings

INTERVAL = 0.25  # seconds between redraws at most
BAR_WIDTH = 22  # characters of the [####  ] part


class TerminalBar:
    """``label [#####     ] 12,288 packets · 41% · 9,870 packets/s · 2 s left``."""

    def __init__(self, label: str, enabled: bool, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self._drawn = float("-inf")
        self._shown = False

    @classmethod
    def for_settings(cls, label: str, settings: Settings) -> TerminalBar:
        """A bar that draws only on a terminal, and not when the settings turn it off."""
        stream = sys.stderr
        return cls(label, settings.progress and _is_terminal(stream), stream)

    def show(self, snapshot: Snapshot, force: bool = False) -> None:
        """Redraw with ``snapshot``, unless the last redraw was too recent (or ``force``)."""
        now = self.clock()
        if not self.enabled or (not force and now - self._drawn < INTERVAL):
            return
        self._drawn = now
        width = _columns(self.stream) - 1
        line = f"{self.label} {snapshot.bar(BAR_WIDTH)} {snapshot.describe()}"
        self.stream.write("\r" + line[:width] + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Take the bar off the screen, before other output or at the end."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _columns(stream: TextIO) -> int:
    """The terminal's width (80 when it does not say)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return shutil.get_terminal_size((80, 24)).columns


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
