"""The ``score`` CSV: one line per packet, formatted a column at a time.

Formatting text is the costliest part of writing a row, so nothing here formats one value per
packet in Python: small integers come from a table of their texts, fractions from two tables of
three digits, and columns that repeat few values (addresses, protocols, flags) format each
distinct value once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from netids.detect.packets import (
    STATUS_NAMES,
    PacketBatch,
    format_ip,
    format_tcp_flags,
    protocol_name,
)
from netids.detect.scored import Verdicts

HEADER = ("index", "timestamp", "score", "nines", "anomaly", "length", "protocol", "src", "dst",
          "sport", "dport", "ttl", "tcp_flags", "window", "udp_len", "icmp_type", "icmp_code",
          "arp_op", "status", "kind", "explanation")

_SMALL = np.array([""] + [str(i) for i in range(65536)], dtype=object)  # -1 -> '', i -> str(i)
_DIGITS3 = np.array([f"{i:03d}" for i in range(1000)], dtype=object)
_DIGITS2 = np.array([f".{i:02d}" for i in range(100)], dtype=object)
MAX_SECONDS = 9e12  # microseconds of larger timestamps overflow int64 (year 287,000 and on)
_MILLI = np.array([f"{i // 1000}.{i % 1000:03d}" for i in range(1001)], dtype=object)  # "0.000"..


def format_rows(first_index: int, packets: PacketBatch, verdicts: Verdicts,
                index: np.ndarray | None = None) -> str:
    """CSV text of a judged batch (no header), one line per packet; ``first_index`` is the
    file position of its first packet (``index``: each packet's, when they are not
    consecutive).

    >>> from netids.detect.decode import decode
    >>> from netids.detect.frames import FrameBatch
    >>> frames = FrameBatch.from_frames([b"\\x00" * 14], [1.25])
    >>> v = Verdicts(np.array([0.5]), np.array([False]), [], [], np.array([0.30103]))
    >>> format_rows(7, decode(frames), v)
    '7,1.250000,0.500000,0.30,0,14,other,,,,,,,,,,,,,,\\n'
    """
    p, n = packets, len(verdicts)
    if n == 0:
        return ""
    kind = np.full(n, "", dtype=object)
    explanation = np.full(n, "", dtype=object)
    quoted: dict[str, str] = {}  # alike anomalies share their words: quote each text once
    anomalies = np.flatnonzero(verdicts.anomalous)
    kind[anomalies] = [_csv_text(k, quoted) for k in verdicts.kinds]
    explanation[anomalies] = [_csv_text(e, quoted) for e in verdicts.explanations]
    cols = [
        np.array(list(map(str, range(first_index, first_index + n) if index is None
                          else index.tolist())), dtype=object),
        _seconds(p.ts),
        _fraction(verdicts.scores),
        _hundredths(verdicts.nines),
        np.where(verdicts.anomalous, "1", "0").astype(object),
        _integers(p.length),
        _distinct(p.ethertype.astype(np.int64) * 512 + p.proto + 1,
                  lambda k: protocol_name(k // 512, k % 512 - 1)),
        _addresses(p.src_hi, p.src_lo),
        _addresses(p.dst_hi, p.dst_lo),
        _integers(p.sport), _integers(p.dport), _integers(p.ttl),
        _from_table(p.tcp_flags, _FLAGS, format_tcp_flags), _integers(p.window),
        _integers(p.udp_len), _integers(p.icmp_type), _integers(p.icmp_code), _integers(p.arp_op),
        _from_table(p.status, _STATUS, _status_text),
        kind, explanation,
    ]
    return "\n".join(map(",".join, zip(*(c.tolist() for c in cols), strict=True))) + "\n"


def rewrite_rows(text: str, first_index: int, packets: PacketBatch, verdicts: Verdicts,
                 changed: np.ndarray) -> str:
    """``text`` (:func:`format_rows` of the batch) with the rows ``changed`` (bool [n])
    written anew from ``verdicts``: a batch whose behaviour or answers raised a few scores
    is not formatted twice.

    >>> from netids.detect.decode import decode
    >>> from netids.detect.frames import FrameBatch
    >>> p = decode(FrameBatch.from_frames([b"\\x00" * 14] * 2, [1.0, 2.0]))
    >>> v = Verdicts(np.array([0.5, 0.5]), np.array([False, False]), [], [], np.array([0.3, 0.3]))
    >>> w = Verdicts(np.array([0.5, 0.999]), np.array([False, True]), ["scan"], ["why"],
    ...              np.array([0.3, 3.0]))
    >>> rewrite_rows(format_rows(7, p, v), 7, p, w, np.array([False, True])) == format_rows(7, p, w)
    True
    """
    rows = np.flatnonzero(changed)
    if len(rows) == 0:
        return text
    kinds = np.full(len(verdicts), "", dtype=object)
    texts = np.full(len(verdicts), "", dtype=object)
    kinds[verdicts.anomalous], texts[verdicts.anomalous] = verdicts.kinds, verdicts.explanations
    flagged = verdicts.anomalous[rows]
    sub = Verdicts(verdicts.scores[rows], flagged, kinds[rows][flagged].tolist(),
                   texts[rows][flagged].tolist(), verdicts.nines[rows])
    lines = text.split("\n")
    new = format_rows(first_index, packets.take(rows), sub, first_index + rows).split("\n")
    for row, line in zip(rows.tolist(), new, strict=False):
        lines[row] = line
    return "\n".join(lines)


def _integers(values: np.ndarray) -> np.ndarray:
    """Integers as text, '' where missing (-1).

    >>> _integers(np.array([-1, 0, 80, 70000])).tolist()
    ['', '0', '80', '70000']
    """
    v = values.astype(np.int64)
    text = _SMALL[np.clip(v, -1, 65535) + 1]
    big = v > 65535
    if big.any():
        text[big] = v[big].astype(str)
    return text


def _fraction(values: np.ndarray) -> np.ndarray:
    """Numbers in [0, 1] with six decimals.

    >>> _fraction(np.array([0.0, 0.5, 0.9999994, 1.0])).tolist()
    ['0.000000', '0.500000', '0.999999', '1.000000']
    """
    micro = np.rint(np.clip(values, 0.0, 1.0) * 1e6).astype(np.int64)
    return _MILLI[micro // 1000] + _DIGITS3[micro % 1000]


def _hundredths(values: np.ndarray) -> np.ndarray:
    """Non-negative numbers with two decimals (nines: up to 65535).

    >>> _hundredths(np.array([0.0, 3.0, 6.996, 41.2345])).tolist()
    ['0.00', '3.00', '7.00', '41.23']
    """
    cent = np.rint(np.clip(values, 0.0, 65535.99) * 100).astype(np.int64)
    return _SMALL[cent // 100 + 1] + _DIGITS2[cent % 100]


def _seconds(ts: np.ndarray) -> np.ndarray:
    """Timestamps with six decimals (microseconds).

    A corrupt file can claim a time beyond 64-bit microseconds (its pcapng timestamp
    resolution, say): such a value is written as the file gives it.

    >>> _seconds(np.array([1700000000.25, 5.0000004, 2.0**64])).tolist()
    ['1700000000.250000', '5.000000', '18446744073709551616.000000']
    """
    wild = ~(np.abs(ts) < MAX_SECONDS)
    micro = np.rint(np.where(wild, 0.0, ts) * 1e6).astype(np.int64)
    whole = _distinct(micro // 1_000_000, lambda s: f"{s}.")
    frac = micro % 1_000_000
    text = whole + _DIGITS3[frac // 1000] + _DIGITS3[frac % 1000]
    if wild.any():
        text[wild] = [f"{t:.6f}" for t in ts[wild].tolist()]
    return text


def _distinct(values: np.ndarray, fmt: Callable[[int], str]) -> np.ndarray:
    """Format each distinct value once (columns repeat a few values many times)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    return np.array([fmt(v) for v in uniq.tolist()], dtype=object)[inverse.reshape(-1)]


def _from_table(values: np.ndarray, table: np.ndarray, fmt: Callable[[int], str]) -> np.ndarray:
    """Text of small codes (-1 absent) read from ``table`` (entry ``i + 1`` for code ``i``);
    a batch holding a code beyond it is formatted value by value.

    >>> _from_table(np.array([-1, 2, 18]), _FLAGS, format_tcp_flags).tolist()
    ['', 'S', 'SA']
    """
    at = values.astype(np.int64) + 1
    if len(at) and (at.min() < 0 or at.max() >= len(table)):
        return _distinct(values, fmt)
    return table[at]


def _addresses(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Address text per packet, each distinct address formatted once per run."""
    if not hi.any():  # IPv4 (mapped) only: the low half is the whole address
        return _distinct(lo, lambda low: _address(0, low))
    with np.errstate(over="ignore"):
        key = lo ^ (hi * np.uint64(0x9E3779B97F4A7C15))
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    text = np.array([_address(h, low) for h, low in zip(hi[first].tolist(), lo[first].tolist(),
                                                       strict=True)], dtype=object)
    return text[inverse.reshape(-1)]


@functools.lru_cache(maxsize=1 << 16)
def _address(hi: int, lo: int) -> str:
    """An address's text; cached, as hosts recur batch after batch (``ipaddress`` is slow)."""
    return format_ip(hi, lo)


def _status_text(status: int) -> str:
    return "|".join(text.replace(" ", "_") for bit, text in STATUS_NAMES.items() if status & bit)


_FLAGS = np.array([format_tcp_flags(f) for f in range(-1, 512)], dtype=object)  # 9 flag bits
_STATUS = np.array([""] + [_status_text(s) for s in range(512)], dtype=object)  # 9 status bits


def _csv_text(text: str, cache: dict[str, str]) -> str:
    """A free-text field as one CSV cell (quoted; hostile content stays inert text)."""
    cell = cache.get(text)
    if cell is None:
        cell = '"' + text.replace('"', '""').replace("\n", " ").replace("\r", " ") + '"'
        cache[text] = cell
    return cell
