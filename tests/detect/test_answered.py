"""An answer (a reset, a SYN-ACK, an ICMP unreachable) takes the score of the packet it
answers (netids/detect/answered.py)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from scapy.all import ICMP, IP, TCP, UDP, Ether, IPerror, UDPerror

from netids.config import PROJECT_ROOT
from netids.detect.answered import ANSWER_SECONDS, OPENER_NINES, Answered
from netids.detect.decode import decode
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch

SCANNER, TARGET = "10.0.0.9", "10.0.0.5"
NONE = -1


def batch(packets: list, ts: list[float]) -> PacketBatch:
    return decode(FrameBatch.from_frames([bytes(Ether() / p) for p in packets],
                                         np.array(ts, dtype=np.float64)))


def probe(sport: int = 40000, dport: int = 23, flags: str = "S") -> IP:
    return IP(src=SCANNER, dst=TARGET) / TCP(sport=sport, dport=dport, flags=flags)


def reset(sport: int = 23, dport: int = 40000, flags: str = "RA") -> IP:
    return IP(src=TARGET, dst=SCANNER) / TCP(sport=sport, dport=dport, flags=flags)


def kinds(n: int, **at: int) -> np.ndarray:
    out = np.full(n, NONE, np.int64)
    for i, k in at.items():
        out[int(i[1:])] = k
    return out


def test_a_reset_or_syn_ack_takes_the_score_of_the_probe_it_answers() -> None:
    p = batch([probe(), reset(), probe(40001, 80), reset(80, 40001, "SA"), reset(23, 40002)],
              [0.0, 0.001, 0.002, 0.003, 0.004])
    nines, kind = Answered().raise_answers(p, np.array([6.0, 0.3, 4.0, 0.2, 0.3]),
                                           kinds(5, k0=7, k2=8))
    # the last reset answers a socket nobody probed: its own score
    assert nines.tolist() == [6.0, 6.0, 4.0, 4.0, 0.3]
    assert kind.tolist() == [NONE, 7, NONE, 8, NONE]


def test_an_answer_in_a_later_batch_takes_it_but_not_one_too_late() -> None:
    answered = Answered()
    answered.raise_answers(batch([probe(), probe(40001)], [0.0, 0.0]), np.array([6.0, 5.0]),
                           kinds(2, k0=3, k1=3))
    late = ANSWER_SECONDS + 0.5
    nines, kind = answered.raise_answers(batch([reset(), reset(23, 40001)], [0.5, late]),
                                         np.array([0.1, 0.1]), kinds(2))
    assert nines.tolist() == [6.0, 0.1] and kind.tolist() == [3, NONE]


def test_an_answer_to_an_ordinary_packet_keeps_its_own_score() -> None:
    p = batch([probe(), reset()], [0.0, 0.01])
    nines, _ = Answered().raise_answers(p, np.array([OPENER_NINES - 0.1, 0.5]), kinds(2))
    assert nines.tolist() == [OPENER_NINES - 0.1, 0.5]


def test_an_answer_passes_on_its_own_score_not_what_it_took() -> None:
    """The probe's SYN-ACK takes its score; the scanner's reset answering that SYN-ACK
    answers a packet whose own score was ordinary, and keeps its own."""
    p = batch([probe(), reset(flags="SA"), probe(flags="R")], [0.0, 0.001, 0.002])
    nines, _ = Answered().raise_answers(p, np.array([6.0, 0.2, 0.4]), kinds(3))
    assert nines.tolist() == [6.0, 6.0, 0.4]


def test_an_icmp_port_unreachable_takes_the_score_of_the_udp_probe() -> None:
    udp = IP(src=SCANNER, dst=TARGET) / UDP(sport=50000, dport=161)
    unreachable = (IP(src=TARGET, dst=SCANNER) / ICMP(type=3, code=3)
                   / IPerror(src=SCANNER, dst=TARGET) / UDPerror(sport=50000, dport=161))
    echo = IP(src=TARGET, dst=SCANNER) / ICMP(type=0)
    p = batch([udp, unreachable, echo], [0.0, 0.001, 0.002])
    nines, kind = Answered().raise_answers(p, np.array([5.0, 1.0, 1.0]), kinds(3, k0=2))
    assert nines.tolist() == [5.0, 5.0, 1.0] and kind.tolist() == [NONE, 2, NONE]


def test_its_memory_is_fixed_under_a_flood_of_probes() -> None:
    """A thousand new sockets in 64 slots: the memory keeps its size, counts what it lost
    while fresh, and the newest probe is still answered."""
    answered = Answered(size=64)
    for b in range(10):
        ports = range(1000 + 100 * b, 1100 + 100 * b)
        answered.raise_answers(batch([probe(s) for s in ports], [b * 0.1] * 100),
                               np.full(100, 9.0), kinds(100))
    sockets, pairs = answered.stats()
    assert (sockets.name, sockets.capacity, pairs.size) == ("answered sockets", 64, 1)
    assert sockets.size <= 64 and sockets.evicted > 900
    assert all(len(a) == 64 for m in answered.memories for a in (m.key, m.ts, m.nines))
    nines, _ = answered.raise_answers(batch([reset(23, 1999)], [1.0]), np.array([0.1]),
                                      kinds(1))
    assert nines.tolist() == [9.0]


def test_a_udp_scans_unreachables_join_the_scanners_event(shared_data: Path,
                                                         tmp_path: Path) -> None:
    """A real UDP scan: the target's 993 ICMP port unreachables, unflagged on their own,
    are flagged as the probes they answer, and stored in the scanner's port-scan event, not
    in an event naming the target as a scanner."""
    capture = shared_data / "attack" / "evilfingers__UDP_SCAN.pcap"
    db, out, events = f"sqlite:///{tmp_path}/e.sqlite", tmp_path / "s.csv", tmp_path / "e.csv"
    app = str(PROJECT_ROOT / "app.py")
    subprocess.run([sys.executable, app, "score", str(capture), "--db", db, "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, app, "export", "--db", db, "--format", "csv", "--out",
                    str(events)], check=True, capture_output=True, timeout=120)
    rows = list(csv.DictReader(out.open()))
    unreachable = [r for r in rows if r["protocol"] == "ICMP" and r["icmp_type"] == "3"]
    answers = [r for r in unreachable if r["anomaly"] == "1" and r["explanation"]
               == "answers a packet flagged as port scan from 192.168.1.10"]
    assert len(unreachable) > 900 and len(answers) > 0.95 * len(unreachable)
    assert all(r["kind"] == "port scan" for r in answers)
    scans = [e for e in csv.DictReader(events.open()) if e["kind"] == "port scan"]
    assert [(e["src_ip"], e["dest_ip"]) for e in scans] == [("192.168.1.10", "192.168.1.25")]
    assert int(scans[0]["packets"]) > 1900  # probes and answers
