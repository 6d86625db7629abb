"""Export stored connections as Zeek's conn.log (TSV, Zeek's header) or CSV with the same
field names, in the order of the Connections view (newest first), whatever the filter matches.
"""

from __future__ import annotations

import csv
from typing import TextIO

from sqlmodel import Session

from netids.detect.conn_records import (
    EXTRA_FIELDS,
    ZEEK_FIELDS,
    ConnRecord,
    zeek_header,
    zeek_line,
)
from netids.store.conn_queries import ConnFilter, query_connections
from netids.store.tables import Connection

FORMATS = ("zeek", "csv")


def record_of(c: Connection) -> ConnRecord:
    """The record a stored row was written from."""
    def sizes(text: str) -> tuple[int, ...]:
        return tuple(int(s) for s in text.split(",") if s.isdigit())

    return ConnRecord(
        c.ts.timestamp(), c.uid, c.orig_h, c.orig_p, c.resp_h, c.resp_p, c.proto, c.service,
        c.duration, c.orig_bytes, c.resp_bytes, c.conn_state, c.missed_bytes, c.history,
        c.orig_pkts, c.orig_ip_bytes, c.resp_pkts, c.resp_ip_bytes, sizes(c.orig_sizes),
        sizes(c.resp_sizes), c.in_progress, c.ended)


def export_connections(out: TextIO, fmt: str, *, session: Session,
                       filter: ConnFilter | None = None, page: int = 5000) -> int:
    """Write the matching connections to ``out`` as ``fmt``; return how many."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    writer = None
    if fmt == "zeek":
        out.write(zeek_header("conn"))
    else:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(ZEEK_FIELDS + EXTRA_FIELDS + ("sensor",))
    n, offset = 0, 0
    while rows := query_connections(session=session, filter=filter, offset=offset, limit=page):
        for c in rows:
            line = zeek_line(record_of(c))
            if writer is None:
                out.write(line + "\n")
            else:
                writer.writerow(line.split("\t") + [c.sensor])
        n += len(rows)
        offset += page
    return n
