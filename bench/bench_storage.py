"""Event rows per second into SQLite: the batched writer beside one ORM commit per row.

    python bench/bench_storage.py [--rows 100000] [--orm-rows 3000] [--repeat 3]

Both run in the same process on the same kind of database (a fresh SQLite file each run, WAL,
synchronous=NORMAL). The batched figure is the whole EventStore path: ``write(updates)`` from
the caller, then the writer thread's upserts (executemany, one transaction) until ``flush()``
returns. Each is run ``--repeat`` times; the best and the median are printed (the machine may
be busy with other work, which only ever makes a run slower), and the batched rows per
CPU-second of this process, which a busy machine hardly changes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import Session  # noqa: E402

from netids.config import StorageSettings  # noqa: E402
from netids.detect.event_records import EventUpdate
from netids.store.engine import open_database
from netids.store.queries import count_events
from netids.store.tables import Event, address_key, utcnow  # noqa: E402
from netids.store.writer import EventStore


def updates(n: int, t0: float = 1.76e9) -> list[EventUpdate]:
    return [
        EventUpdate(
            id=uuid.uuid4().hex, first_seen=t0 + i * 0.001, last_seen=t0 + i * 0.001 + 2.5,
            src=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", dst="192.0.2.10",
            src_port=40000 + i % 20000, dst_port=443, proto="TCP", kind="port scan",
            packets=1 + i % 100, score_max=0.9, score_mean=0.8, severity="anomalous",
            explanation=f"{i % 500} SYN/s to 192.0.2.10, normal is 2", threshold=0.5,
            src_count=1, dst_count=1,
        )
        for i in range(n)
    ]


def batched(url: str, rows: list[EventUpdate], cpu: list[float] | None = None) -> float:
    engine = open_database(url)
    settings = StorageSettings(flush_interval=60, max_pending=len(rows))
    store = EventStore(engine, sensor="bench", settings=settings)
    t, c = time.perf_counter(), time.process_time()
    store.write(rows)
    assert store.flush(timeout=600)
    elapsed = time.perf_counter() - t
    if cpu is not None:
        cpu.append(time.process_time() - c)
    store.close()
    with Session(engine) as session:
        assert count_events(session=session) == len(rows)
    engine.dispose()
    return elapsed


def orm_per_row(url: str, rows: list[EventUpdate]) -> float:
    engine = open_database(url)
    t = time.perf_counter()
    with Session(engine) as session:
        for u in rows:
            session.add(Event(
                id=u.id, sensor="bench", first_seen=datetime.fromtimestamp(u.first_seen, UTC),
                last_seen=datetime.fromtimestamp(u.last_seen, UTC), src=u.src,
                src_key=address_key(u.src), src_port=u.src_port, dst=u.dst,
                dst_key=address_key(u.dst), dst_port=u.dst_port, proto=u.proto, kind=u.kind,
                packets=u.packets, score_max=u.score_max, score_mean=u.score_mean,
                severity=u.severity, explanation=u.explanation, threshold=u.threshold,
                src_count=u.src_count, dst_count=u.dst_count, updated_at=utcnow(),
            ))
            session.commit()
    elapsed = time.perf_counter() - t
    engine.dispose()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows for the batched writer")
    parser.add_argument("--orm-rows", type=int, default=3000, help="rows for the ORM baseline")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, fresh file each")
    args = parser.parse_args()
    fast: list[float] = []
    slow: list[float] = []
    cpu: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            fast.append(args.rows / batched(f"sqlite:///{tmp}/batched{r}.sqlite",
                                            updates(args.rows), cpu))
            slow.append(args.orm_rows / orm_per_row(f"sqlite:///{tmp}/orm{r}.sqlite",
                                                    updates(args.orm_rows)))
    out = sys.stdout
    out.write(f"SQLite, WAL, synchronous=NORMAL; rows/s, best and median of {args.repeat} runs\n")
    out.write(f"batched EventStore (executemany upsert, 1 tx): {args.rows:>7} rows: "
              f"{max(fast):>9,.0f}  {statistics.median(fast):>9,.0f}\n")
    out.write(f"ORM add + commit per row (baseline):           {args.orm_rows:>7} rows: "
              f"{max(slow):>9,.0f}  {statistics.median(slow):>9,.0f}\n")
    out.write(f"ratio (best / best): {max(fast) / max(slow):.0f}x; "
              f"(median / median): {statistics.median(fast) / statistics.median(slow):.0f}x\n")
    out.write(f"batched, per CPU-second of this process: {args.rows / min(cpu):,.0f} rows; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    return 0 if max(fast) >= 50_000 else 1


if __name__ == "__main__":
    sys.exit(main())
