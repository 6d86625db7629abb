"""The behaviour evidence table: the same keys from records as from packets, bounded, and
read at each packet's own time."""

from __future__ import annotations

import dataclasses

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.behaviour_base import record
from netids.detect.behaviour_brute import login_service
from netids.detect.behaviour_evidence import (
    BEACON,
    BRUTE,
    LOGIN_PORTS,
    SCAN,
    BehaviourEvidence,
    EvidenceConfig,
    address_key,
    packet_address_keys,
)
from netids.detect.conn_records import SERVICES
from netids.detect.decode import decode
from netids.detect.packets import parse_ip
from netids.detect.tracking import ConnFeed
from tests.support import shared_data_or_skip


def test_every_tcp_port_has_the_login_service_a_record_to_it_would_have() -> None:
    for port in range(65536):
        r = record(resp_p=port, service=SERVICES.get(("tcp", port)))
        assert (LOGIN_PORTS[port] > 0) == (login_service(r) is not None), port


def test_an_address_hashes_alike_from_text_and_from_columns() -> None:
    for text in ("10.0.0.7", "192.168.2.158", "2001:db8::5", "fe80::1:2", "0.0.0.0", ""):
        hi, lo = parse_ip(text) if text else (0, 0)
        column = packet_address_keys(np.array([hi], np.uint64), np.array([lo], np.uint64))
        assert address_key(text) == (int(column[0]), lo)


def test_the_table_holds_at_most_its_capacity() -> None:
    e = BehaviourEvidence(EvidenceConfig(capacity=8))
    for i in range(200):
        e.note(record(ts=float(i), orig_h=f"10.0.{i // 250}.{i % 250}"), 0.5, 0.0, 0.0, i)
    assert len(e) == 8


def test_every_guessing_packet_of_a_real_capture_finds_its_key_both_ways() -> None:
    """The keys records give are the keys the packets of those connections give: each
    packet of the FTP guesser's sessions, client's and server's, reads the guessing share."""
    capture = shared_data_or_skip() / "attack/zeek__bruteforce.pcap"
    feed, e = ConnFeed(), BehaviourEvidence()
    packets = decode(next(iter(read_batches(capture, 1 << 20))))
    records = feed.tracker.update(packets) + feed.flush()
    e.start()
    for r in records:  # each known from the start (a record not closed: from ``now``)
        guessing = 0.5 if login_service(r) else 0.0
        e.note(dataclasses.replace(r, ended="timeout"), 0.0, guessing, 0.0, now=-np.inf)
    share, kind = e.lookup(packets)
    ftp = (packets.sport == 21) | (packets.dport == 21)
    assert ftp.sum() > 500
    assert (share[ftp] == 0.5).all() and (kind[ftp] == BRUTE).all()
    assert not (kind == SCAN).any() and not (kind == BEACON).any()
