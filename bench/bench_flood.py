"""Floods against ``score --db``: throughput and memory of benign traffic beside a spoofed SYN
flood and a flood from random sources to random targets, each the same number of packets.

    .venv/bin/python bench/bench_flood.py [--packets 1000000] [--project DIR ...]

Each capture is built deterministically (seeded numpy, frames assembled as arrays, no scapy):

- ``benign``: the shared mixed_dev.pcap (real benign traffic with its attacks) repeated back
  to back, re-timed, until it holds ``--packets`` packets;
- ``syn-flood``: TCP SYNs to 192.168.1.129:80 from uniformly random spoofed IPv4 sources and
  ports, 20k packets/s;
- ``random``: the same from random sources to random targets.

Every ``--project`` (default: this checkout) runs ``app.py score CAPTURE --out CSV --db
sqlite:///...`` as a subprocess of the same interpreter on each capture, so the code before and
after a change is measured in one run on one machine. Printed per run: packets/s (the
command's own figure, start-up left out), its ratio to the benign run of the same project,
peak RSS summed over the command and its worker processes (sampled from /proc every 0.2 s),
its excess over benign per million packets, and whether RSS stays flat: the growth from the
middle of the run (median of the samples between 40 % and 60 %) to the largest sample in its
last fifth, at most ``FLAT_MIB``.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from procs import tree_rss_mib

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NETIDS_SHARED_DATA", ROOT.parent / "shared" / "data"))
KINDS = ("benign", "syn-flood", "random")
FLOOD_RATE = 20_000.0  # packets/s of packet time in the floods
VICTIM = (192 << 24) | (168 << 16) | (1 << 8) | 129  # the dev mix's flood victim
FLAT_MIB = 64.0
SAMPLE_S = 0.2


# captures ------------------------------------------------------------------------------------

def pcap_records(path: Path) -> tuple[np.ndarray, list[bytes], int]:
    """(timestamps, frames, link type) of a classic pcap, read with struct (66k records)."""
    buf = path.read_bytes()
    magic = buf[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    linktype = struct.unpack_from(order + "I", buf, 20)[0]
    rec = struct.Struct(order + "IIII")
    ts, frames, off = [], [], 24
    while off + 16 <= len(buf):
        sec, frac, incl, _ = rec.unpack_from(buf, off)
        ts.append(sec + frac * scale)
        frames.append(buf[off + 16:off + 16 + incl])
        off += 16 + incl
    return np.array(ts), frames, linktype


def write_benign(path: Path, packets: int) -> None:
    """The dev mix repeated back to back (each copy starts 1 s after the last ended)."""
    ts, frames, linktype = pcap_records(SHARED / "mixed_dev.pcap")
    span = float(ts[-1] - ts[0]) + 1.0
    rel = ts - ts[0]
    head = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype)
    with path.open("wb") as fh:
        fh.write(head)
        for lo in range(0, packets, len(frames)):
            count = min(len(frames), packets - lo)
            t = 1.7e9 + (lo // len(frames)) * span + rel[:count]
            sec = t.astype(np.int64)
            nsec = np.round((t - sec) * 1e9).astype(np.int64)
            fh.write(b"".join(
                struct.pack("<IIII", s, ns, len(f), len(f)) + f
                for s, ns, f in zip(sec.tolist(), nsec.tolist(), frames[:count], strict=True)))


def _checksum(words: np.ndarray) -> np.ndarray:
    """Internet checksum of each row of big-endian 16-bit words (uint32 [n, k])."""
    s = words.sum(axis=1, dtype=np.uint64)
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint16)


def syn_frames(src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: int,
               seq: np.ndarray) -> np.ndarray:
    """Ethernet + IPv4 + TCP SYN frames (uint8 [n, 54]) with valid checksums."""
    n = len(src)
    f = np.zeros((n, 54), dtype=np.uint8)
    f[:, 0:6] = [0x02, 0, 0, 0, 0, 0x01]
    f[:, 6:12] = [0x02, 0, 0, 0, 0, 0x02]
    f[:, 12:14] = [0x08, 0x00]
    be16 = lambda x: x.astype(">u2").view(np.uint8).reshape(n, 2)  # noqa: E731
    be32 = lambda x: x.astype(">u4").view(np.uint8).reshape(n, 4)  # noqa: E731
    f[:, 14] = 0x45
    f[:, 16:18] = be16(np.full(n, 40))
    f[:, 18:20] = be16(np.arange(n) & 0xFFFF)
    f[:, 22] = 64
    f[:, 23] = 6
    f[:, 26:30] = be32(src)
    f[:, 30:34] = be32(dst)
    ip_words = f[:, 14:34].view(">u2").astype(np.uint32)
    f[:, 24:26] = be16(_checksum(ip_words))
    f[:, 34:36] = be16(sport)
    f[:, 36:38] = be16(np.full(n, dport))
    f[:, 38:42] = be32(seq)
    f[:, 46] = 0x50
    f[:, 47] = 0x02
    f[:, 48:50] = be16(np.full(n, 64240))
    pseudo = np.concatenate([f[:, 26:34].view(">u2").astype(np.uint32),
                             np.tile(np.array([6, 20], np.uint32), (n, 1)),
                             f[:, 34:54].view(">u2").astype(np.uint32)], axis=1)
    f[:, 50:52] = be16(_checksum(pseudo))
    return f


def write_flood(path: Path, packets: int, random_targets: bool, seed: int) -> None:
    """A spoofed SYN flood at FLOOD_RATE: random sources, one target or random targets."""
    rng = np.random.default_rng(seed)
    rec = np.dtype([("sec", "<u4"), ("nsec", "<u4"), ("incl", "<u4"), ("orig", "<u4"),
                    ("frame", "u1", (54,))])
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for lo in range(0, packets, 1 << 18):
            n = min(1 << 18, packets - lo)
            src = rng.integers(1 << 24, 224 << 24, n, dtype=np.uint32)
            dst = (rng.integers(1 << 24, 224 << 24, n, dtype=np.uint32) if random_targets
                   else np.full(n, VICTIM, np.uint32))
            t = 1.7e9 + (lo + np.arange(n)) / FLOOD_RATE
            out = np.zeros(n, dtype=rec)
            out["sec"] = t.astype(np.int64)
            out["nsec"] = np.round((t - out["sec"]) * 1e9)
            out["incl"] = out["orig"] = 54
            out["frame"] = syn_frames(src, dst, rng.integers(1024, 65536, n), 80,
                                      rng.integers(0, 1 << 32, n, dtype=np.uint64))
            fh.write(out.tobytes())


def build(kind: str, path: Path, packets: int) -> None:
    if kind == "benign":
        write_benign(path, packets)
    else:
        write_flood(path, packets, random_targets=kind == "random", seed=KINDS.index(kind))


# runs ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Run:
    project: str
    kind: str
    packets: int
    rate: float  # packets/s, as the command reports it
    peak_mib: float  # RSS of the command and its children, summed, at its largest
    growth_mib: float  # from the middle of the run to the largest sample of its last fifth
    samples: int


def run_score(project: Path, kind: str, capture: Path, tmp: Path) -> Run:
    db = tmp / f"{kind}.sqlite"
    db.unlink(missing_ok=True)
    cmd = [sys.executable, str(project / "app.py"), "score", str(capture),
           "--out", str(tmp / f"{kind}.csv"), "--db", f"sqlite:///{db}"]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        samples.append(tree_rss_mib(proc.pid))
        time.sleep(SAMPLE_S)
    said = proc.stderr.read() if proc.stderr else ""
    m = re.search(r"(\d+) packets scored in [\d.]+ s \(([\d,]+)/s\)", said)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"{project.name} {kind}: score failed: {said.strip()[-300:]}")
    s = np.array(samples or [0.0])
    mid = np.median(s[int(len(s) * 0.4):max(int(len(s) * 0.6), int(len(s) * 0.4) + 1)])
    growth = float(s[int(len(s) * 0.8):].max() - mid)
    return Run(str(project), kind, int(m.group(1)), float(m.group(2).replace(",", "")),
               float(s.max()), growth, len(s))


def report(runs: list[Run]) -> None:
    print(f"{'project':<28} {'capture':<10} {'packets':>9} {'packets/s':>10} {'ratio':>6} "
          f"{'peak MiB':>9} {'+MiB/M':>7} {'growth':>7} flat")
    for r in runs:
        base = next(b for b in runs if b.project == r.project and b.kind == "benign")
        extra = (r.peak_mib - base.peak_mib) / (r.packets / 1e6)
        print(f"{r.project[-28:]:<28} {r.kind:<10} {r.packets:>9,} {r.rate:>10,.0f} "
              f"{r.rate / base.rate:>5.2f}x {r.peak_mib:>9.0f} {extra:>+7.0f} "
              f"{r.growth_mib:>+7.0f} {'yes' if r.growth_mib <= FLAT_MIB else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets per capture")
    parser.add_argument("--project", type=Path, action="append",
                        help="a checkout whose app.py to run (repeat to compare; default: this)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="captures to run, of " +
                        ",".join(KINDS) + " (benign is always run: the ratios need it)")
    args = parser.parse_args()
    kinds = ["benign"] + [k for k in args.kinds.split(",") if k in KINDS and k != "benign"]
    projects = [p.resolve() for p in (args.project or [ROOT])]
    runs = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for kind in kinds:
            capture = tmp / f"{kind}.pcap"
            build(kind, capture, args.packets)
            for project in projects:
                runs.append(run_score(project, kind, capture, tmp))
                print(f"  {project.name} {kind}: {runs[-1].rate:,.0f} packets/s, "
                      f"peak {runs[-1].peak_mib:.0f} MiB", flush=True)
            capture.unlink()
    report(runs)


if __name__ == "__main__":
    main()
