"""A client asking a server keeps asking while unasked replies flood that server: the server's
rate of replies nobody asked for is no evidence on a flowing UDP request to it, and stays the
evidence on the flood's own replies (netids/detect/counted.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.all import IP, UDP, Ether

from netids.config import PROJECT_ROOT
from netids.detect.counted import REQUESTING, packet_roles
from netids.detect.frames import FrameBatch
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector

SERVER, CLIENT = "10.0.0.10", "10.0.0.21"
FLOW_SECONDS, FLOOD = (0.0, 20.0), (10.0, 15.0)


def traffic() -> tuple[FrameBatch, np.ndarray, np.ndarray]:
    """An iperf3-like UDP flow (client port 50000 to 5201, 200 packets/s for 20 s) and, from
    10 s to 15 s, 5,000 DNS-like replies from random sources to random ports of the server;
    (frames in time order, which are the flow's, which are the flood's)."""
    rng = np.random.default_rng(7)
    mac_c, mac_s, mac_r = "02:00:00:00:00:21", "02:00:00:00:00:10", "02:00:00:00:00:01"
    flow_t = np.arange(*FLOW_SECONDS, 0.005)
    flow = [bytes(Ether(src=mac_c, dst=mac_s) / IP(src=CLIENT, dst=SERVER)
                  / UDP(sport=50000, dport=5201) / (b"x" * 180))] * len(flow_t)
    flood_t = np.sort(rng.uniform(*FLOOD, 5000))
    flood = [bytes(Ether(src=mac_r, dst=mac_s)
                   / IP(src=f"198.51.{rng.integers(256)}.{rng.integers(1, 255)}", dst=SERVER)
                   / UDP(sport=53, dport=int(rng.integers(1024, 65535))) / (b"a" * 480))
             for _ in flood_t]
    ts = np.concatenate([flow_t, flood_t])
    order = np.argsort(ts, kind="stable")
    is_flow = np.arange(len(ts))[order] < len(flow_t)
    frames = [(flow + flood)[i] for i in order]
    return FrameBatch.from_frames(frames, ts[order] + 1.7e9), is_flow, ~is_flow


@pytest.fixture(scope="module")
def scored():
    frames, is_flow, is_flood = traffic()
    detector = load_detector(PROJECT_ROOT / "models" / "default.pt")
    pipeline = Pipeline(detector)
    kinds, roles = [], []
    for start in range(0, len(frames), 1024):
        batch = frames.take(slice(start, start + 1024))
        s = pipeline.process(batch)
        k = np.full(len(s), "", dtype=object)
        k[s.anomalous] = s.kinds
        kinds.append(k)
        roles.append(packet_roles(s.packets, s.features, detector.feature_names))
    return np.concatenate(kinds), np.concatenate(roles), is_flow, is_flood, frames.ts - 1.7e9


def test_a_flowing_client_request_is_not_flagged_for_the_flood_hitting_its_server(scored):
    kinds, roles, is_flow, is_flood, t = scored
    during = is_flow & (t >= FLOOD[0]) & (t < FLOOD[1] + 5.0)
    assert (roles[during] == REQUESTING).all()  # the flow has long been flowing by then
    assert (kinds[during] == "reflection flood").sum() == 0


def test_the_flood_s_own_replies_keep_their_evidence(scored):
    kinds, roles, is_flow, is_flood, t = scored
    assert (roles[is_flood] != REQUESTING).all()  # replies, from port 53
    assert (kinds[is_flood] == "reflection flood").mean() > 0.5


def test_a_socket_s_first_packets_are_no_flow_yet(scored):
    """A scan's probes each open a socket: they keep what the destination's unasked replies
    show. So do a flow's first packets, until its socket has carried a few."""
    kinds, roles, is_flow, is_flood, t = scored
    assert (roles[is_flow][:7] != REQUESTING).all()
