"""Connection rows as the writer sends them, and their upsert per dialect: a later record of
the same uid (the final record after in-progress snapshots) rewrites the row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from netids.detect.conn_records import ConnRecord
from netids.store.rows import clean
from netids.store.tables import CONNECTIONS, address_key


def conn_row(r: ConnRecord, sensor: str, now: datetime) -> dict[str, Any]:
    """Column values of one record; text from packets is cut to its column's size.

    >>> from netids.detect.conn_records import ConnRecord
    >>> r = ConnRecord(1.5, "Cabc", "10.0.0.1", 40000, "10.0.0.2", 22, "tcp", "ssh", 0.25,
    ...                0, 0, "S0", 0, "S", 1, 60, 0, 0, (517, 21), (), False, "timeout")
    >>> row = conn_row(r, "lab", datetime(2026, 1, 1, tzinfo=UTC))
    >>> row["last_ts"].timestamp(), row["orig_sizes"], row["resp_key"][-8:]
    (1.75, '517,21', '0a000002')
    """
    return {
        "uid": clean(r.uid, 32),
        "sensor": clean(sensor, 64),
        "ts": datetime.fromtimestamp(r.ts, UTC),
        "last_ts": datetime.fromtimestamp(r.ts + (r.duration or 0.0), UTC),
        "orig_h": clean(r.orig_h, 64),
        "orig_key": address_key(r.orig_h),
        "orig_p": r.orig_p,
        "resp_h": clean(r.resp_h, 64),
        "resp_key": address_key(r.resp_h),
        "resp_p": r.resp_p,
        "proto": clean(r.proto, 8),
        "service": None if r.service is None else clean(r.service, 32),
        "duration": r.duration,
        "orig_bytes": r.orig_bytes,
        "resp_bytes": r.resp_bytes,
        "conn_state": clean(r.conn_state, 8),
        "missed_bytes": r.missed_bytes,
        "history": None if r.history is None else clean(r.history),
        "orig_pkts": r.orig_pkts,
        "orig_ip_bytes": r.orig_ip_bytes,
        "resp_pkts": r.resp_pkts,
        "resp_ip_bytes": r.resp_ip_bytes,
        "orig_sizes": ",".join(map(str, r.orig_sizes))[:128],
        "resp_sizes": ",".join(map(str, r.resp_sizes))[:128],
        "in_progress": r.in_progress,
        "ended": clean(r.ended, 16),
        "updated_at": now,
    }


def conn_upsert(dialect: str) -> Any:
    """Insert, or rewrite every column but uid, sensor and ts of the row with that uid."""
    if dialect == "sqlite":
        ins: Any = sqlite.insert(CONNECTIONS)
    elif dialect == "postgresql":
        ins = postgresql.insert(CONNECTIONS)
    else:
        raise ValueError(f"unsupported database {dialect!r}")
    keep = {"uid", "sensor", "ts"}
    return ins.on_conflict_do_update(
        index_elements=["uid"],
        set_={c.name: ins.excluded[c.name] for c in CONNECTIONS.columns if c.name not in keep},
    )
