"""Build a labelled evaluation capture from normal captures and attack captures.

Normal captures are laid out concurrently on one timeline starting at ``start`` (each one's idle
gaps longer than ``max_gap`` seconds shortened to ``max_gap``, so a week-long IoT capture does
not drown the rest). Each attack capture is re-timed the same way and placed at a random time
inside that timeline; its packets keep their labels from ``NAME.labels.csv`` beside it when
there is one (background packets in an attack capture stay label 0), otherwise every packet is
labelled with the given kind. The result is one pcap in time order plus a labels CSV with one
row per packet: ``index,timestamp,label,attack_kind,source_file,source_index``.

Captures recorded on different networks reuse addresses; each capture that collides with an
earlier one gets its own (see :mod:`netids.lab.readdress`), or one IP would seem to move between
MACs as only ARP spoofing makes it do. Only frames of the first normal capture's link type
(normally Ethernet) are kept: a pcap has one link type. Frames of another link type are
counted in the report, never silently mixed.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches, write_pcap
from netids.lab.readdress import AddressSpace, capture_addresses, rewrite


@dataclass
class AttackSource:
    path: Path
    kind: str | None = None  # used when there is no labels file beside the capture
    max_packets: int | None = None  # keep at most this many packets (from the start)


@dataclass
class MixReport:
    packets: int
    attack_packets: int
    duration: float
    by_kind: dict[str, int] = field(default_factory=dict)
    skipped_link_type: int = 0
    placements: list[dict] = field(default_factory=list)  # attack file, start, end, packets
    readdressed: dict[str, int] = field(default_factory=dict)  # capture -> offset its
    # addresses moved by, for the captures that reused an earlier one's


@dataclass
class _Capture:
    ts: np.ndarray  # float64 [n]
    frames: list[bytes]
    wire: np.ndarray  # int64 [n]
    linktype: np.ndarray  # int64 [n]
    label: np.ndarray  # int8 [n]
    kind: list[str]
    source: str
    index: np.ndarray  # int64 [n] position in the source file


def labels_path(capture: Path) -> Path:
    """Where a capture's labels live: ``NAME.labels.csv`` beside ``NAME.pcap``."""
    return capture.with_name(capture.name.rsplit(".", 1)[0] + ".labels.csv")


class LabelsError(ValueError):
    """A labels CSV that cannot be used; the message names the file, the line and the fault."""


def read_labels(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(index int64, label int8, attack_kind) from a labels CSV: a header with at least
    ``index,label``, then one row per packet (index 0, 1, ... in any order, label 0 or 1).
    Raises :class:`LabelsError` for anything else."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("index", "label") if c not in (reader.fieldnames or ())]
            if missing:
                raise LabelsError(f"{path}: line 1: no {' or '.join(missing)} column (the "
                                  f"header must name index,label,attack_kind)")
            index, label, kinds, lines = [], [], [], []
            for row in reader:
                lines.append(reader.line_num)
                index.append(_label_field(row, "index", reader.line_num, path))
                label.append(_label_field(row, "label", reader.line_num, path))
                kinds.append(row.get("attack_kind") or "")
    except UnicodeDecodeError:
        raise LabelsError(f"{path}: not a labels CSV (not UTF-8 text)") from None
    except csv.Error as exc:
        raise LabelsError(f"{path}: line {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read ({exc.strerror})") from None
    idx = np.array(index, dtype=np.int64)
    _check_one_row_per_packet(idx, lines, path)
    return idx, np.array(label, dtype=np.int8), kinds


def _label_field(row: dict[str, str | None], name: str, line: int, path: Path) -> int:
    """The whole number in ``row[name]``: an index from 0, or a label 0 or 1."""
    text = (row.get(name) or "").strip()
    high = 1 if name == "label" else 2**62
    if not text.isdigit() or int(text) > high:
        want = "0 or 1" if name == "label" else "a packet number from 0"
        raise LabelsError(f"{path}: line {line}: {name} {text!r} is not {want}")
    return int(text)


def _check_one_row_per_packet(index: np.ndarray, lines: list[int], path: Path) -> None:
    """Each packet once: an index past the row count or a repeated one is a broken file
    (and would otherwise size arrays by whatever number it holds)."""
    seen = np.zeros(len(index), dtype=bool)
    for row, i in enumerate(index.tolist()):
        if i >= len(index) or seen[i]:
            fault = (f"index {i}, but the file has {len(index)} rows (one per packet)"
                     if i >= len(index) else f"index {i} is labelled twice")
            raise LabelsError(f"{path}: line {lines[row]}: {fault}")
        seen[i] = True


def mix(
    normal: Sequence[Path],
    attacks: Sequence[AttackSource],
    out: Path,
    labels_out: Path,
    seed: int = 0,
    max_gap: float = 10.0,
    start: float = 1_700_000_000.0,
    normal_part: tuple[float, float] = (0.0, 1.0),
) -> MixReport:
    """Write the mixed capture and its labels; ``normal_part`` keeps that fraction range of
    each normal capture's packets (``(0.7, 1.0)``: the last 30%, unseen by a model trained on
    ``(0.0, 0.7)``)."""
    rng = np.random.default_rng(seed)
    if not normal:
        raise ValueError("mixing needs at least one normal capture")
    parts = []
    for path in normal:
        cap = _read(Path(path), label=0, kind="")
        lo, hi = (int(round(f * len(cap.ts))) for f in normal_part)
        parts.append(_retime(_slice(cap, lo, hi), start, max_gap))
    linktype = next((int(c.linktype[0]) for c in parts if len(c.ts)), 1)
    end = max((float(c.ts.max()) for c in parts if len(c.ts)), default=start)
    report = MixReport(0, 0, end - start)
    for src in attacks:
        cap = _read(Path(src.path), label=1, kind=src.kind or Path(src.path).stem)
        if src.max_packets is not None:
            cap = _slice(cap, 0, src.max_packets)
        if len(cap.ts) == 0:
            continue
        span = min(float(np.diff(cap.ts).clip(0, max_gap).sum()) if len(cap.ts) > 1 else 0.0,
                   max(end - start, 1.0))
        at = start + rng.uniform(0.05, 0.95) * max(end - start - span, 0.0)
        cap = _retime(cap, at, max_gap)
        parts.append(cap)
        report.placements.append({"file": str(src.path), "start": float(cap.ts[0]),
                                  "end": float(cap.ts[-1]), "packets": len(cap.ts)})
    space = AddressSpace()
    for i, cap in enumerate(parts):
        parts[i], offset = _own_addresses(cap, space)
        if offset:
            report.readdressed[cap.source] = offset
    merged = _merge(parts)
    keep = merged.linktype == linktype
    report.skipped_link_type = int((~keep).sum())
    order = np.flatnonzero(keep)
    write_pcap(out, ((float(merged.ts[i]), merged.frames[i], int(merged.wire[i])) for i in order),
               linktype=linktype)
    with Path(labels_out).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "timestamp", "label", "attack_kind", "source_file", "source_index"])
        for new, i in enumerate(order):
            w.writerow([new, f"{merged.ts[i]:.6f}", int(merged.label[i]), merged.kind[i],
                        merged.source[i], int(merged.index[i])])
    labels = merged.label[order]
    report.packets = len(order)
    report.attack_packets = int(labels.sum())
    for i in order[labels == 1]:
        report.by_kind[merged.kind[i]] = report.by_kind.get(merged.kind[i], 0) + 1
    return report


def _read(path: Path, label: int, kind: str) -> _Capture:
    ts, frames, wire, lt = [], [], [], []
    for fb in read_batches(path):
        ts.append(fb.ts)
        wire.append(fb.wirelen.astype(np.int64))
        lt.append(fb.linktype.astype(np.int64))
        frames.extend(fb.frame(i) for i in range(len(fb)))
    n = len(frames)
    labels = np.full(n, label, np.int8)
    kinds = [kind if label else ""] * n
    lp = labels_path(path)
    if label and lp.is_file():
        idx, lab, knd = read_labels(lp)
        ok = idx < n
        labels = np.zeros(n, np.int8)
        labels[idx[ok]] = lab[ok]
        kinds = [""] * n
        for i, v, k in zip(idx[ok], lab[ok], np.asarray(knd, dtype=object)[ok], strict=True):
            kinds[i] = (k or kind) if v else ""
    return _Capture(_cat(ts, np.float64), frames, _cat(wire, np.int64), _cat(lt, np.int64), labels,
                    kinds, str(path), np.arange(n, dtype=np.int64))


def _own_addresses(c: _Capture, space: AddressSpace) -> tuple[_Capture, int]:
    """The capture with addresses of its own in ``space``, and the offset they moved by."""
    offset, mapping = space.claim(capture_addresses(c.frames, c.linktype.tolist()))
    if not mapping:
        return c, offset
    frames = [rewrite(f, lt, mapping) for f, lt in zip(c.frames, c.linktype.tolist(), strict=True)]
    return dataclasses.replace(c, frames=frames), offset


def _cat(xs: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(xs).astype(dtype) if xs else np.zeros(0, dtype)


def _slice(c: _Capture, lo: int, hi: int) -> _Capture:
    return _Capture(c.ts[lo:hi], c.frames[lo:hi], c.wire[lo:hi], c.linktype[lo:hi],
                    c.label[lo:hi], c.kind[lo:hi], c.source, c.index[lo:hi])


def _retime(c: _Capture, at: float, max_gap: float) -> _Capture:
    """Same packets, first one at ``at``, gaps above ``max_gap`` shortened (order kept)."""
    if len(c.ts) == 0:
        return c
    gaps = np.diff(c.ts, prepend=c.ts[0]).clip(0.0, max_gap)
    return _Capture(at + np.cumsum(gaps), c.frames, c.wire, c.linktype, c.label, c.kind,
                    c.source, c.index)


def _merge(parts: list[_Capture]) -> _Capture:
    ts = np.concatenate([p.ts for p in parts])
    order = np.argsort(ts, kind="stable")
    frames = [f for p in parts for f in p.frames]
    kinds = [k for p in parts for k in p.kind]
    sources = [p.source for p in parts for _ in range(len(p.ts))]
    c = _Capture(ts[order], [frames[i] for i in order],
                 np.concatenate([p.wire for p in parts])[order],
                 np.concatenate([p.linktype for p in parts])[order],
                 np.concatenate([p.label for p in parts])[order], [kinds[i] for i in order],
                 "", np.concatenate([p.index for p in parts])[order])
    c.source = [sources[i] for i in order]  # type: ignore[assignment]
    return c
