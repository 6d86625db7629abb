"""A host under attack keeps its own sessions: the packets of the conversations it opened
are not flagged for the flood that hits it (netids/detect/counted.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.config import PROJECT_ROOT
from netids.detect.packets import parse_ip
from netids.detect.pipeline import Pipeline
from netids.training.checkpoint import load_detector

CAMERA = "192.168.1.129"  # the dev mix's victim of SNMP and ISAKMP amplification


def test_a_host_under_a_reflection_flood_keeps_its_own_tls_sessions(shared_data: Path) -> None:
    """In the dev mix the camera's TLS sessions with its cloud (8,915 normal packets from
    port 443) carry on while amplified replies flood it. They acknowledge the camera's own
    packets, so its rate of replies nobody asked for says nothing about them: 1,817 of them
    were flagged as a "reflection flood" before that rate stopped counting on such packets."""
    capture = shared_data / "mixed_dev.pcap"
    with (shared_data / "mixed_dev.labels.csv").open() as f:
        normal = np.array([row["label"] == "0" for row in csv.DictReader(f)])
    pipeline = Pipeline(load_detector(PROJECT_ROOT / "models" / "default.pt"))
    hi, lo = parse_ip(CAMERA)
    sessions = reflection = 0
    for frames in read_batches(capture, 4096):
        scored = pipeline.process(frames)
        p, first = scored.packets, frames.first_index
        mine = (normal[first:first + len(p)] & (p.proto == 6) & (p.sport == 443)
                & (p.dst_hi == hi) & (p.dst_lo == lo))
        sessions += int(mine.sum())
        kinds = np.full(len(p), "", dtype=object)
        kinds[scored.anomalous] = scored.kinds
        reflection += int((mine & (kinds == "reflection flood")).sum())
    assert sessions == 8915
    assert reflection < 0.005 * sessions  # measured 7
