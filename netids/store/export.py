"""Export stored events as CSV or JSON lines, and an event's sample packets as a pcap.

Records are flat and named after Suricata's EVE alert fields (``timestamp``, ``src_ip``,
``src_port``, ``dest_ip``, ``dest_port``, ``proto``, ``event_type``), plus what netids adds:
``severity``, ``score``, ``explanation``, ``sensor``, packet count and how many distinct
sources/targets merged into the event. Timestamps are RFC 3339 in UTC. :func:`read_export`
parses either format back into the same typed records.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlmodel import Session

from netids.capture.pcapfile import write_pcap
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch
from netids.detect.packets import summary
from netids.store.queries import EventFilter, event_samples, query_events
from netids.store.tables import Event

FORMATS = ("csv", "jsonl")
FIELDS: dict[str, type] = {  # name -> type when read back
    "timestamp": datetime,  # first packet of the event
    "end": datetime,  # last packet
    "event_id": str,
    "sensor": str,
    "event_type": str,  # always "anomaly"
    "src_ip": str,  # "" when many sources merged (src_count says how many)
    "src_port": int,  # None when absent or varying
    "dest_ip": str,
    "dest_port": int,
    "proto": str,
    "kind": str,
    "severity": str,
    "score": float,  # highest calibrated score
    "score_mean": float,
    "threshold": float,
    "packets": int,
    "src_count": int,
    "dest_count": int,
    "explanation": str,
}


def event_record(e: Event) -> dict[str, Any]:
    """The export record of one event."""
    return {
        "timestamp": e.first_seen,
        "end": e.last_seen,
        "event_id": e.id,
        "sensor": e.sensor,
        "event_type": "anomaly",
        "src_ip": e.src,
        "src_port": e.src_port,
        "dest_ip": e.dst,
        "dest_port": e.dst_port,
        "proto": e.proto,
        "kind": e.kind,
        "severity": e.severity,
        "score": e.score_max,
        "score_mean": e.score_mean,
        "threshold": e.threshold,
        "packets": e.packets,
        "src_count": e.src_count,
        "dest_count": e.dst_count,
        "explanation": e.explanation,
    }


def iter_events(
    *, session: Session, filter: EventFilter | None = None, page: int = 5000
) -> Iterator[Event]:
    """Every matching event, oldest first, read a page at a time."""
    offset = 0
    while True:
        rows = query_events(
            session=session, filter=filter, sort="first_seen", descending=False,
            offset=offset, limit=page,
        )
        yield from rows
        if len(rows) < page:
            return
        offset += page
        session.expunge_all()


def export_events(
    out: TextIO, fmt: str, *, session: Session, filter: EventFilter | None = None
) -> int:
    """Write the matching events to ``out`` as ``csv`` or ``jsonl``; return how many."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    n = 0
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(FIELDS), lineterminator="\n")
        writer.writeheader()
    for e in iter_events(session=session, filter=filter):
        record = {k: _text(v) for k, v in event_record(e).items()}
        if writer is not None:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
        else:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


def read_export(path: str | Path) -> list[dict[str, Any]]:
    """Parse a CSV or JSON-lines export back into typed records (the inverse of the export)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as fh:
        head = fh.read(1)
        fh.seek(0)
        if head == "{":
            raw = [json.loads(line) for line in fh if line.strip()]
        else:
            raw = list(csv.DictReader(fh))
    return [{k: _parse(FIELDS[k], r.get(k)) for k in FIELDS} for r in raw]


def export_samples_pcap(event_id: str, path: str | Path, *, session: Session) -> int:
    """Write the sample packets of one event as a pcap that tcpdump and Wireshark open."""
    samples = event_samples(event_id, session=session)
    if not samples:
        return 0
    linktype = samples[0].linktype
    frames = [(s.ts.timestamp(), s.data, s.wirelen) for s in samples if s.linktype == linktype]
    return write_pcap(path, frames, linktype=linktype)


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return value


def _parse(kind: type, value: Any) -> Any:
    if value is None or value == "":
        return "" if kind is str else None
    if kind is datetime:
        return datetime.fromisoformat(value)
    return kind(value)


def packet_summaries(frames: list[tuple[float, bytes, int, int]]) -> list[str]:
    """One tcpdump-like line per ``(ts, bytes, wire length, link type)``, decoded at once."""
    if not frames:
        return []
    ts, data, wirelen, linktype = (list(column) for column in zip(*frames, strict=True))
    packets = decode(FrameBatch.from_frames(data, ts, wirelen=wirelen, linktype=linktype))
    return [summary(packets, i) for i in range(len(frames))]


def frames_pcap(frames: list[tuple[float, bytes, int, int]]) -> bytes:
    """``(ts, bytes, wire length, link type)`` frames as a pcap file: those of the first
    frame's link type."""
    linktype = frames[0][3]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.pcap"
        write_pcap(path, [(t, d, w) for t, d, w, k in frames if k == linktype],
                   linktype=linktype)
        return path.read_bytes()
