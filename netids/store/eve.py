"""``--eve FILE``: every stored event as Suricata-EVE-like JSON lines, appended as it happens,
rotated by size, for SIEMs that ingest Suricata's ``eve.json`` (Elastic, Splunk, Wazuh).

Each line is an ``"event_type": "alert"`` record with Suricata's field names (``timestamp``,
``flow_id``, ``src_ip``, ``src_port``, ``dest_ip``, ``dest_port``, ``proto``, ``alert`` with
``signature``, ``category``, ``severity`` 1 high .. 3 low) and what netids adds under
``netids`` (event id, state, kind, why, scores, nines, packets, first and last packet).

Events grow while they are open, so an event gets a line:

- ``"state": "new"`` when it is first stored (Suricata writes an alert when a rule matches);
- ``"state": "update"`` when it has at least doubled its packets since its last line, risen in
  severity, or changed source or target (many merged into one event): a flood of a million
  packets gets some twenty lines, not one per batch;
- ``"state": "closed"`` when it ends, with its final figures.

All lines of one event share ``flow_id`` and ``netids.event_id``. Text from packets is written
as JSON with everything outside printable ASCII escaped, so no field can break a line or
forge another. Past ``max_bytes`` the file is renamed ``FILE.1`` (``FILE.1`` to ``FILE.2``...,
``keep`` of them) and a new one started, as logging's RotatingFileHandler and Suricata's
log rotation leave them for log shippers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netids.config import EveSettings
from netids.detect.event_records import SEVERITIES, EventUpdate
from netids.detect.packets import is_ip

log = logging.getLogger(__name__)

SID_BASE = 9_000_000  # signature ids: SID_BASE + a hash of the kind, stable across runs
MAX_NINES = 16.0  # a score of exactly 1.0 has infinite nines: shown as this
CATEGORIES = (  # (words in the kind, Suricata classification), first match wins
    (("scan", "sweep"), "Detection of a Network Scan"),
    (("flood",), "Attempted Denial of Service"),
    (("malformed",), "Generic Protocol Command Decode"),
    (("spoof", "bogus"), "Potentially Bad Traffic"),
    (("brute", "guessing"), "Attempted User Privilege Gain"),
    (("web attack",), "Web Application Attack"),
    (("malware",), "A Network Trojan was detected"),
    (("heartbleed",), "Attempted Information Leak"),
)


class EveError(Exception):
    """The EVE file cannot be written; the message says why in one line."""


def eve_record(u: EventUpdate, state: str, sensor: str) -> dict[str, Any]:
    """The EVE line of event ``u`` in ``state`` ('new', 'update' or 'closed')."""
    record: dict[str, Any] = {
        "timestamp": _timestamp(u.first_seen if state == "new" else u.last_seen),
        "flow_id": int(u.id[:13], 16),  # 52 bits: exact in every JSON reader
        "event_type": "alert",
    }
    for side, address, port in (("src", u.src, u.src_port), ("dest", u.dst, u.dst_port)):
        if is_ip(address):
            record[f"{side}_ip"] = address
        elif address:  # an ARP event names MAC addresses: Suricata's ether section
            record.setdefault("ether", {})[f"{side}_mac"] = address
        if port is not None:
            record[f"{side}_port"] = port
    record["proto"] = u.proto
    record["host"] = sensor
    record["alert"] = {"action": "allowed", "gid": 1, "signature_id": signature_id(u.kind),
                       "rev": 1, "signature": f"NETIDS {u.kind}", "category": category(u.kind),
                       "severity": suricata_severity(u)}
    record["netids"] = {
        "event_id": u.id, "state": state, "kind": u.kind, "why": u.explanation,
        "severity": u.severity, "score": u.score_max, "score_mean": u.score_mean,
        "nines": nines(u.score_max), "threshold": u.threshold, "packets": u.packets,
        "first_seen": _timestamp(u.first_seen), "last_seen": _timestamp(u.last_seen),
        "src_count": u.src_count, "dest_count": u.dst_count,
    }
    return record


def eve_line(record: dict[str, Any]) -> str:
    """One JSON line, pure ASCII: control characters, line separators and lone surrogates
    from packets are escaped or replaced, never written raw; NaN and infinities become null.

    >>> eve_line({"why": "a\\nb\\u2028c\\udc80", "score": float("nan")})
    '{"why":"a\\\\nb\\\\u2028c\\\\ufffd","score":null}\\n'
    """
    return json.dumps(_clean(record), ensure_ascii=True, allow_nan=False,
                      separators=(",", ":")) + "\n"


def signature_id(kind: str) -> int:
    """A stable signature id per kind.

    >>> signature_id("port scan") == signature_id("port scan") != signature_id("flood")
    True
    """
    return SID_BASE + zlib.crc32(kind.encode("utf-8", "replace")) % 1_000_000


def category(kind: str) -> str:
    """Suricata's classification closest to a kind.

    >>> category("port scan"), category("target under flood"), category("unusual TTL")
    ('Detection of a Network Scan', 'Attempted Denial of Service', 'Misc activity')
    >>> category("brute force"), category("login after guessing")
    ('Attempted User Privilege Gain', 'Attempted User Privilege Gain')
    >>> category("web attack"), category("malware download"), category("heartbleed")
    ('Web Application Attack', 'A Network Trojan was detected', 'Attempted Information Leak')
    """
    lowered = kind.lower()
    for words, name in CATEGORIES:
        if any(w in lowered for w in words):
            return name
    return "Misc activity"


def suricata_severity(u: EventUpdate) -> int:
    """1 (high): one normal packet in a million scores as high; 2: anomalous; 3: below."""
    if nines(u.score_max) >= 6:
        return 1
    rank = SEVERITIES.index(u.severity) if u.severity in SEVERITIES else 0
    return 2 if rank >= len(SEVERITIES) - 1 else 3


def nines(score: float) -> float:
    """``-log10(1 - score)``, finite.

    >>> nines(0.999), nines(1.0)
    (3.0, 16.0)
    """
    return round(min(-math.log10(max(1.0 - score, 1e-16)), MAX_NINES), 3)


class EveLog:
    """The EVE file: decides which updates get a line and appends them, rotating by size.

    A write that fails (disk full, file gone read-only) is counted and logged, never raised:
    detection and storage go on; :attr:`lost` and :attr:`last_error` say what was missed.
    """

    def __init__(self, settings: EveSettings, sensor: str = "local") -> None:
        if settings.path is None:
            raise ValueError("no EVE file configured")
        self.path = Path(settings.path)
        self.max_bytes, self.keep, self.sensor = settings.max_bytes, max(1, settings.keep), sensor
        self.lost, self.last_error = 0, ""
        self._last: dict[str, tuple[int, int, str, str]] = {}  # id -> packets, rank, src, dst
        try:
            self._fd = _open(self.path)
        except OSError as exc:
            raise EveError(f"{self.path}: cannot write the EVE file ({exc.strerror})") from exc

    def write(self, updates: list[EventUpdate], closed: list[EventUpdate]) -> None:
        """Lines for the events ``updates`` opened or grew and those ``closed`` ended."""
        lines = [eve_line(eve_record(u, state, self.sensor))
                 for u, state in self._states(updates, closed)]
        for line in lines:
            self._append(line.encode("ascii"))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _states(self, updates: list[EventUpdate],
                closed: list[EventUpdate]) -> list[tuple[EventUpdate, str]]:
        out = []
        for u in updates:
            mark = (u.packets, _rank(u.severity), u.src, u.dst)
            last = self._last.get(u.id)
            if last is None:
                out.append((u, "new"))
            elif u.packets >= 2 * last[0] or mark[1] > last[1] or mark[2:] != last[2:]:
                out.append((u, "update"))
            else:
                continue
            self._last[u.id] = mark
        for u in closed:
            self._last.pop(u.id, None)
            out.append((u, "closed"))
        return out

    def _append(self, data: bytes) -> None:
        try:
            if self._fd < 0:  # a rotation failed half way: try the file again
                self._fd = _open(self.path)
            size = os.fstat(self._fd).st_size
            if self.max_bytes > 0 and size > 0 and size + len(data) > self.max_bytes:
                self._rotate()
            os.write(self._fd, data)  # one write per line: readers never see half a line
        except OSError as exc:
            self.lost += 1
            if exc.strerror != self.last_error:
                log.error("EVE file %s: %s; lines are lost until it works", self.path,
                          exc.strerror)
            self.last_error = exc.strerror or str(exc)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._fd = _open(self.path)


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def _timestamp(seconds: float) -> str:
    """Suricata's form: ``2017-04-07T22:24:37.251547+0000`` (UTC)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def _clean(value: Any) -> Any:
    """Lone surrogates (undecodable bytes kept as text) become U+FFFD; NaN and inf null."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def open_eve(settings: EveSettings, sensor: str) -> EveLog | None:
    """The EVE log ``--eve`` asks for, or None: none asked, or it cannot be opened any more
    (it was checked before start-up; gone since, it is logged and monitoring goes on)."""
    if settings.path is None:
        return None
    try:
        return EveLog(settings, sensor=sensor)
    except EveError as exc:
        log.error("%s", exc)
        return None
