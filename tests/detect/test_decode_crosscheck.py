"""Every decoded field equals scapy's full dissection, on every packet of every shared capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from tests.support import dissect, shared_capture_names, truth

FIELDS = ("ethertype", "vlan", "src_mac", "dst_mac", "ip_version", "proto", "ttl", "src_hi",
          "src_lo", "dst_hi", "dst_lo", "frag", "sport", "dport", "tcp_flags", "window",
          "udp_len", "icmp_type", "icmp_code", "arp_op", "arp_sha", "seq", "ip_len")
ZERO_WHEN_MISSING = {"src_mac", "dst_mac", "src_hi", "src_lo", "dst_hi", "dst_lo", "arp_sha"}
CAPTURES = shared_capture_names()  # one placeholder when absent: shared_data then skips


@pytest.mark.parametrize("name", CAPTURES)
def test_decoder_matches_scapy(name: str, shared_data: Path) -> None:
    mismatches: list[str] = []
    dissected = 0
    for frames in read_batches(shared_data / name):
        packets = decode(frames)
        for i in range(len(frames)):
            pkt = dissect(frames.frame(i), int(frames.linktype[i]))
            if pkt is None:
                continue
            dissected += 1
            expected = truth(pkt, int(frames.linktype[i]))
            for field in FIELDS:
                want = expected.get(field, 0 if field in ZERO_WHEN_MISSING else -1)
                got = int(getattr(packets, field)[i])
                if want is not None and got != want and len(mismatches) < 20:
                    mismatches.append(f"packet {frames.first_index + i} {field}: {got} != {want}")
    assert mismatches == []
    assert dissected > 0 or name.startswith("other/")
