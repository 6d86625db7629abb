"""``score --conn FILE``: the capture's connections as a Zeek-style conn.log (TSV).

The tracker (:mod:`netids.detect.connections`) sees the scored batches in file order; its
records are written as they complete, and the connections still open are written at the end
of the input (``ended`` = ``end of input``), as Zeek does when it finishes reading a trace.
With ``--db`` the event sink's tracker is shared (:meth:`ConnLog.shared`): the file and the
database hold the same records, uids included, for the cost of one tracker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from netids.commands import CommandError
from netids.detect.conn_columns import zeek_text
from netids.detect.conn_records import ConnRecord, zeek_header
from netids.detect.connections import ConnConfig, ConnTracker
from netids.detect.packets import PacketBatch
from netids.detect.tracking import ConnFeed


class ConnLog:
    """A connection tracker writing its records to one file."""

    def __init__(self, path: Path, config: ConnConfig | None = None,
                 feed: ConnFeed | None = None) -> None:
        self.path = path
        self.feed = feed  # shared: its owner hands the records on through write()
        self.tracker = feed.tracker if feed is not None else ConnTracker(config)
        self.written = 0
        self.out: TextIO = _open(path)
        self._write(zeek_header("conn", time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())))

    def add(self, packets: PacketBatch) -> None:
        if self.feed is None:
            self._lines(self.tracker.update(packets))

    def write(self, records: list[ConnRecord]) -> None:
        """Records of the shared tracker, as its owner hands them on."""
        self._lines(records)

    def close(self) -> str:
        """Write the connections still open and close the file; a line for the summary."""
        try:
            if self.feed is None:
                self._lines(self.tracker.flush())
            self._write(f"#close\t{time.strftime('%Y-%m-%d-%H-%M-%S', time.gmtime())}\n")
        finally:
            self.out.close()
        evicted = self.tracker.evicted
        extra = f", {evicted:,} written early to stay within the table" if evicted else ""
        return f"{self.written:,} connections written to {self.path}{extra}\n"

    def _lines(self, records: Sequence[ConnRecord]) -> None:
        if records:
            self._write(zeek_text(records))
            self.written += len(records)

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
        except OSError as exc:
            raise CommandError(f"{self.path}: cannot write ({exc.strerror}) after "
                               f"{self.written} connections") from None


def _open(path: Path) -> TextIO:
    try:
        return path.open("w", newline="")
    except OSError as exc:
        raise CommandError(f"{path}: cannot write ({exc.strerror})") from None
