"""Model inputs from real captures: the categorical codes carry traffic, not capture settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.decode import decode
from netids.detect.frames import LINKTYPE_RAW, FrameBatch
from netids.detect.packets import FLAG_SNAPPED
from netids.detect.scaling import (
    ADDRESS_CLASSES,
    CATEGORICAL,
    MAC_CLASSES,
    categorical_codes,
    icmp_code_class,
)


def packets_of(data: Path, name: str):
    return decode(next(iter(read_batches(data / name, 1 << 16))))


def test_icmp_codes_of_real_pings_traceroutes_and_neighbour_discovery_are_defined(
        shared_data: Path) -> None:
    for name in ("benign/sanders__icmp_echo.pcapng", "benign/sanders__icmp_traceroute.pcapng",
                 "benign/sanders__icmpv6_neighbor_solicitation.pcapng"):
        p = packets_of(shared_data, name)
        icmp = p.icmp_type >= 0
        assert icmp.any(), name
        assert (icmp_code_class(p)[icmp] == 1).all(), name


def test_the_fuzzed_icmp_of_the_suricata_anomaly_capture_has_codes_its_types_lack(
        shared_data: Path) -> None:
    p = packets_of(shared_data, "attack/suricata__anomaly.pcap")
    icmp = p.icmp_type >= 0
    classes = icmp_code_class(p)[icmp]
    assert (classes == 2).mean() > 0.8, np.unique(classes, return_counts=True)
    assert (icmp_code_class(p)[~icmp] == 0).all()


def test_how_much_a_capture_kept_of_each_packet_does_not_change_its_codes(
        shared_data: Path) -> None:
    p = packets_of(shared_data, "benign/iotlab__schlage-lock-01.pcap")
    codes = categorical_codes(p)
    whole = p.take(np.flatnonzero(p.status & FLAG_SNAPPED == 0))
    snapped = p.take(np.flatnonzero(p.status & FLAG_SNAPPED))
    assert len(snapped) and len(whole)
    status = list(CATEGORICAL).index("status")
    assert set(categorical_codes(snapped)[:, status]) <= set(categorical_codes(whole)[:, status])
    assert codes.max(axis=0).tolist() < list(CATEGORICAL.values())


def test_real_traffic_has_sane_addresses_and_a_random_spoofed_flood_does_not(
        shared_data: Path) -> None:
    names = list(CATEGORICAL)
    bogus_src = {ADDRESS_CLASSES.index(c) for c in ("multicast", "broadcast", "reserved")}
    bogus_mac = {MAC_CLASSES.index("group source MAC"),
                 MAC_CLASSES.index("MAC does not match the IP destination")}
    for name in ("benign/zeek__wikipedia.pcap", "benign/iotlab__lockly-hub-01.pcap",
                 "benign/sanders__dhcp_nolease_initialization.pcapng",
                 "benign/zeek__mdns.pcap", "benign/sanders__http_ip4and6.pcapng"):
        codes = categorical_codes(packets_of(shared_data, name))
        assert not set(codes[:, names.index("src_addr")]) & bogus_src, name
        assert not set(codes[:, names.index("mac")]) & bogus_mac, name
    # random MACs and IPs
    codes = categorical_codes(packets_of(shared_data, "attack/ppa__dosattack.pcap"))
    odd = (np.isin(codes[:, names.index("src_addr")], list(bogus_src))
           | np.isin(codes[:, names.index("dst_addr")], [ADDRESS_CLASSES.index("reserved")])
           | np.isin(codes[:, names.index("mac")], list(bogus_mac)))
    assert odd.mean() > 0.75, odd.mean()


def test_a_capture_without_its_link_layer_gives_the_same_codes(shared_data: Path) -> None:
    """The IP packets of a real Ethernet capture, written as a raw-IP capture would hold them
    (a tunnel, ``tcpdump -i any`` keeps no MACs): every categorical code is the same, the MAC
    class included, so a model trained on Ethernet does not find a tunnel's traffic new."""
    frames = next(iter(read_batches(shared_data / "benign/iotlab__lockly-hub-01.pcap", 4000)))
    eth = decode(frames)
    ip = np.array([i for i in range(len(frames))
                   if frames.frame(i)[12:14] in (b"\x08\x00", b"\x86\xdd")])
    assert len(ip) > 1000
    raw = FrameBatch.from_frames([frames.frame(int(i))[14:] for i in ip], frames.ts[ip],
                                 linktype=LINKTYPE_RAW)
    stripped = decode(raw)
    assert (stripped.src_mac == 0).all() and (stripped.dst_mac == 0).all()
    with_link, without = categorical_codes(eth.take(ip)), categorical_codes(stripped)
    mac = list(CATEGORICAL).index("mac")
    assert set(with_link[:, mac]) <= {MAC_CLASSES.index(c)
                                      for c in ("unicast", "broadcast", "multicast")}
    np.testing.assert_array_equal(without, with_link)
