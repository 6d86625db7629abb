"""Learning in place hands the behaviour detectors the connections of the traffic it kept."""

from __future__ import annotations

from pathlib import Path

from netids.capture.pcapfile import read_batches
from netids.detect.conn_records import ConnRecord
from netids.detect.connections import connection_records
from netids.detect.decode import decode
from netids.detect.packets import PacketBatch
from netids.detect.tracking import ConnFeed
from netids.store.sink import EventSink


def test_kept_packets_teach_the_behaviour_detectors_this_networks_normal(
        shared_data: Path) -> None:
    """A week of a smart lock (MQTT to a rotating cloud, DHCP, DNS): its long sessions are
    learned as this network's services, in whatever order the kept packets come."""
    batches = [decode(f) for f in read_batches(shared_data / "benign/iotlab__schlage-lock-01.pcap",
                                               4096)]
    packets = PacketBatch.concat(batches[::-1])  # out of time order, as kept batches may be
    records = connection_records(packets)
    in_order = connection_records(PacketBatch.concat(batches))
    assert len(records) > 30
    assert sorted(summary(r) for r in records) == sorted(summary(r) for r in in_order)
    sink = EventSink(None, conns=ConnFeed())
    assert sink.behaviour is not None and not sink.behaviour.detectors.volume.learned
    sink.learn_behaviour(records)
    volume = sink.behaviour.detectors.volume
    assert volume.learned and (8883, "tcp") in volume.learned_services
    assert sink.behaviour.detectors.scans.learned


def summary(r: ConnRecord) -> tuple:
    return (r.ts, r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto, r.conn_state, r.orig_pkts,
            r.resp_pkts, r.in_progress)
