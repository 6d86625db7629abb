"""The behaviour detectors keep what their tables bound, not the records they were fed."""

from __future__ import annotations

import gc

from netids.detect.behaviour_base import record
from netids.detect.behaviour_events import BehaviourEvents
from netids.detect.conn_records import ConnRecord


def alive_records() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is ConnRecord)


def test_records_fed_to_the_detectors_are_not_kept_alive() -> None:
    before = alive_records()
    b = BehaviourEvents()
    for n in range(30):  # 30 batches of 200 ordinary web connections
        batch = [record(ts=100.0 * n + i / 10, uid=f"C{n}-{i}", orig_h=f"10.1.{n}.{i % 200}",
                        orig_p=40000 + i, resp_h="10.0.0.80", resp_p=443, service="ssl",
                        conn_state="SF", history="ShADadFf", duration=0.5, orig_bytes=900,
                        resp_bytes=5000, orig_pkts=8, resp_pkts=9) for i in range(200)]
        b.update(batch, now=100.0 * n + 20, threshold=0.999)
        del batch
    assert alive_records() - before < 100  # 6,000 fed
