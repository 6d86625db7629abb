"""The tracker's records as columns, made into :class:`ConnRecord` objects only when read.

Building a frozen record (its uid, two addresses as text, 22 fields) costs a few
microseconds: more than the tracker spends on a connection, and a flood of spoofed SYNs
emits one per packet. So :meth:`ConnTracker.update` returns :class:`ConnRecords`: a
sequence that holds the records' columns (numpy arrays) and builds the records the first
time it is indexed or iterated. It behaves as the list it stands for (``len``, indexing,
iteration, ``==`` and ``+`` with lists); :func:`zeek_text` writes the log lines straight
from the columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import overload

import numpy as np

from netids.detect.conn_records import SERVICES, ConnRecord, make_uids, zeek_line
from netids.detect.packets import IPV4_MAPPED_HI, format_ip


@dataclass(frozen=True, slots=True)
class ConnColumns:
    """Records of ``len(ts)`` connections, one row each, as they stood when written."""

    ts: np.ndarray  # first packet
    serial: np.ndarray  # the connection's number in the run; the uid derives from it
    seed: int
    addr: np.ndarray  # uint64 [n, 4]: orig hi, lo, resp hi, lo
    ports: np.ndarray  # [n, 2]: orig, resp
    proto: list[str]  # "tcp", "udp", "icmp"
    duration: np.ndarray  # seconds; 0 for a connection that lasted no time (unset in the log)
    bytes: np.ndarray  # [n, 2] payload bytes, orig and resp
    conn_state: list[str]
    history: list[str | None]
    pkts: np.ndarray  # [n, 2]
    ip_bytes: np.ndarray  # [n, 2]
    sizes: np.ndarray  # [n, 2, k]: the first payload sizes each way
    nsizes: np.ndarray  # [n, 2]: how many of them are set
    in_progress: list[bool]
    ended: list[str]  # "" for an in-progress snapshot

    @classmethod
    def concat(cls, parts: list[ConnColumns]) -> ConnColumns:
        """One block of the rows of ``parts``, in order (each block costs a few numpy calls
        whatever its size, so a batch's records are read as one)."""
        if len(parts) == 1:
            return parts[0]
        lists = ("proto", "conn_state", "history", "in_progress", "ended")
        names = [f.name for f in fields(cls)]
        return cls(**{name: [v for p in parts for v in getattr(p, name)] if name in lists
                      else parts[0].seed if name == "seed"
                      else np.concatenate([getattr(p, name) for p in parts])
                      for name in names})

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, rows: np.ndarray) -> ConnColumns:
        """Only ``rows`` (indices), in that order."""
        picked = rows.tolist()
        return ConnColumns(**{f.name: self.seed if f.name == "seed"
                              else [getattr(self, f.name)[i] for i in picked]
                              if isinstance(getattr(self, f.name), list)
                              else getattr(self, f.name)[rows] for f in fields(self)})

    def records(self) -> list[ConnRecord]:
        """The rows as :class:`ConnRecord` objects."""
        return [ConnRecord(
            ts=ts, uid=uid, orig_h=oh, orig_p=op, resp_h=rh, resp_p=rp, proto=proto,
            service=SERVICES.get((proto, rp)), duration=dur if dur > 0 else None,
            orig_bytes=ob if dur > 0 else None, resp_bytes=rb if dur > 0 else None,
            conn_state=state, missed_bytes=0, history=hist, orig_pkts=opk,
            orig_ip_bytes=oip, resp_pkts=rpk, resp_ip_bytes=rip, orig_sizes=osz,
            resp_sizes=rsz, in_progress=progress, ended=ended)
            for ts, uid, oh, op, rh, rp, proto, dur, ob, rb, state, hist, opk, oip, rpk, rip,
            osz, rsz, progress, ended in self._lists()]

    def _lists(self) -> zip[tuple]:  # type: ignore[type-arg]
        """The columns as Python values, row by row, in ConnRecord's field order."""
        addr = self.addr
        sizes = [_sizes(self.sizes[:, i], self.nsizes[:, i]) for i in range(2)]
        return zip(self.ts.tolist(), make_uids(self.seed, self.serial),
                   format_ips(addr[:, 0], addr[:, 1]), self.ports[:, 0].tolist(),
                   format_ips(addr[:, 2], addr[:, 3]), self.ports[:, 1].tolist(), self.proto,
                   self.duration.tolist(), self.bytes[:, 0].tolist(),
                   self.bytes[:, 1].tolist(), self.conn_state, self.history,
                   self.pkts[:, 0].tolist(), self.ip_bytes[:, 0].tolist(),
                   self.pkts[:, 1].tolist(), self.ip_bytes[:, 1].tolist(), sizes[0], sizes[1],
                   self.in_progress, self.ended, strict=True)


class ConnRecords(Sequence[ConnRecord]):
    """Records the tracker wrote, as columns, built into :class:`ConnRecord` on first use.

    >>> ConnRecords([]) == [], len(ConnRecords([])), ConnRecords([]) + []
    (True, 0, [])
    """

    __hash__ = None  # type: ignore[assignment]  # compared as the list it stands for

    def __init__(self, parts: list[ConnColumns]) -> None:
        parts = [p for p in parts if len(p)]
        self.parts = [ConnColumns.concat(parts)] if parts else []
        self._built: list[ConnRecord] | None = None

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def records(self) -> list[ConnRecord]:
        if self._built is None:
            self._built = [r for p in self.parts for r in p.records()]
        return self._built

    @overload
    def __getitem__(self, index: int) -> ConnRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[ConnRecord]: ...
    def __getitem__(self, index: int | slice) -> ConnRecord | list[ConnRecord]:
        return self.records()[index]

    def __iter__(self) -> Iterator[ConnRecord]:
        return iter(self.records())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConnRecords | list | tuple):
            return self.records() == list(other)
        return NotImplemented

    def __add__(self, other: Sequence[ConnRecord]) -> list[ConnRecord]:
        return self.records() + list(other)

    def __radd__(self, other: Sequence[ConnRecord]) -> list[ConnRecord]:
        return list(other) + self.records()

    def __repr__(self) -> str:
        return repr(self.records())


def zeek_text(records: Sequence[ConnRecord]) -> str:
    """The log lines of ``records`` (each ending in a newline), as :func:`zeek_line` writes
    them; from the columns when ``records`` came from the tracker."""
    if isinstance(records, ConnRecords) and records._built is None:
        return "".join(_zeek_lines(p) for p in records.parts)
    return "".join(zeek_line(r) + "\n" for r in records)


def _zeek_lines(c: ConnColumns) -> str:
    """zeek_line of every row, without building the records (one f-string a row)."""
    addr = c.addr
    sizes = [_size_text(c.sizes[:, i], c.nsizes[:, i]) for i in range(2)]
    rows = zip(c.ts.tolist(), make_uids(c.seed, c.serial), format_ips(addr[:, 0], addr[:, 1]),
               c.ports[:, 0].tolist(), format_ips(addr[:, 2], addr[:, 3]),
               c.ports[:, 1].tolist(), c.proto, c.duration.tolist(), c.bytes[:, 0].tolist(),
               c.bytes[:, 1].tolist(), c.conn_state, c.history, c.pkts[:, 0].tolist(),
               c.ip_bytes[:, 0].tolist(), c.pkts[:, 1].tolist(), c.ip_bytes[:, 1].tolist(),
               sizes[0], sizes[1], c.in_progress, c.ended, strict=True)
    return "".join(
        f"{ts:.6f}\t{uid}\t{oh}\t{op}\t{rh}\t{rp}\t{proto}\t{SERVICES.get((proto, rp), '-')}\t"
        + (f"{dur:.6f}\t{ob}\t{rb}\t" if dur > 0 else "-\t-\t-\t")
        + f"{state}\t0\t{hist or '-'}\t{opk}\t{oip}\t{rpk}\t{rip}\t{osz}\t{rsz}\t"
          f"{'T' if progress else 'F'}\t{ended or '-'}\n"
        for ts, uid, oh, op, rh, rp, proto, dur, ob, rb, state, hist, opk, oip, rpk, rip, osz,
        rsz, progress, ended in rows)


def _size_text(sizes: np.ndarray, held: np.ndarray) -> list[str]:
    """The first ``held[i]`` values of each row of ``sizes`` as the log writes a vector."""
    out = ["(empty)"] * len(held)
    rows = np.flatnonzero(held > 0)
    for i, row, k in zip(rows.tolist(), sizes[rows].tolist(), held[rows].tolist(),
                         strict=True):
        out[i] = ",".join(map(str, row[:k]))
    return out


def _sizes(sizes: np.ndarray, held: np.ndarray) -> list[tuple[int, ...]]:
    """The first ``held[i]`` values of each row of ``sizes``, as tuples."""
    out: list[tuple[int, ...]] = [()] * len(held)
    rows = np.flatnonzero(held > 0)
    for i, row, k in zip(rows.tolist(), sizes[rows].tolist(), held[rows].tolist(),
                         strict=True):
        out[i] = tuple(row[:k])
    return out


def format_ips(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """:func:`format_ip` of every pair (IPv4 assembled as bytes by numpy, no call each).

    >>> format_ips(np.array([0, 0], np.uint64), np.array([0xFFFF_0A00_0001, 0], np.uint64))
    ['10.0.0.1', '']
    """
    v4 = (hi == IPV4_MAPPED_HI) & ((lo >> np.uint64(32)) == 0xFFFF)
    if not v4.all():
        return [format_ip(h, low) for h, low in zip(hi.tolist(), lo.tolist(), strict=True)]
    octets = ((lo[:, None] >> np.array([24, 16, 8, 0], np.uint64)) & np.uint64(255)).astype(
        np.intp)
    digits, width = _OCTETS[octets], _OCTET_WIDTH[octets]  # [n, 4, 3], [n, 4]
    text = np.zeros((len(lo), 16), dtype=np.uint8)
    rows, pos = np.arange(len(lo)), np.zeros(len(lo), dtype=np.intp)
    for k in range(4):
        for j in range(3):
            m = j < width[:, k]
            text[rows[m], pos[m] + j] = digits[m, k, j]
        pos += width[:, k]
        if k < 3:
            text[rows, pos] = ord(".")
            pos += 1
    return text.view("S16").ravel().astype(str).tolist()


def _octet_digits() -> tuple[np.ndarray, np.ndarray]:
    digits = np.zeros((256, 3), dtype=np.uint8)
    for value in range(256):
        text = str(value).encode()
        digits[value, :len(text)] = list(text)
    return digits, np.array([len(str(v)) for v in range(256)])


_OCTETS, _OCTET_WIDTH = _octet_digits()
