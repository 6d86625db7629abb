"""Learn a network from the start of one capture, then score the rest (``score --learn``).

The way to analyse one capture of an unfamiliar network: the packets of its first ``seconds``
of capture time (from the first packet's timestamp; the cut is the first packet in file order
at or past that time) train a model with :func:`~netids.training.train.train`, their context
features computed from a fresh context exactly as
:func:`~netids.training.data.read_capture` does. The same context then goes on into the rest,
so the scored part starts warm: every host the learning part saw is known, its rates and gaps
are current. The file is read once: the learning part is held in memory (bounded by
``seconds`` of traffic), the rest is handed on as the frame batches the reader yields, to be
scored as ``score`` scores any capture.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.conn_records import ConnRecord
from netids.detect.connections import connection_records
from netids.detect.context import ContextConfig, ContextFeatures
from netids.detect.decode import decode
from netids.detect.detector import Detector
from netids.detect.dns import DnsReader, DnsRecord
from netids.detect.frames import FrameBatch
from netids.detect.packets import PacketBatch
from netids.detect.pipeline import Pipeline
from netids.training.train import (
    MIN_PACKETS,
    Progress,
    TrainConfig,
    TrainingError,
    TrainReport,
    train,
)

SETTLE_WINDOWS = 3  # slowest context windows a learning part should span


@dataclass
class Span:
    """Capture time and packets of one part of a capture, filled in as it is read."""

    first: float = math.nan  # timestamp of its first packet
    last: float = math.nan  # of its last packet
    packets: int = 0

    def see(self, ts: np.ndarray) -> None:
        if len(ts):
            if self.packets == 0:
                self.first = float(ts[0])
            self.last = float(ts[-1])
            self.packets += len(ts)


@dataclass
class LearnedStart:
    """A model learned from the start of a capture, and what follows the learning part."""

    detector: Detector
    context: ContextFeatures  # warm: it has seen every learned packet, in order
    report: TrainReport
    seconds: float  # the learning part asked for
    learned: int  # packets in it
    rest: Iterator[FrameBatch]  # the frames after the cut, in file order
    connections: list[ConnRecord]  # of the learning part: the behaviour detectors' normal
    dns: list[DnsRecord]  # of the learning part: the DNS detectors' normal
    scored: Span = field(default_factory=Span)  # what ``rest`` has yielded so far
    cut_time: float = math.nan  # first packet's timestamp + seconds

    def pipeline(self, threshold: float | None = None, adapt: bool = False) -> Pipeline:
        """A pipeline judging with the learned model, continuing the learning part's context."""
        pipeline = Pipeline(self.detector, threshold=threshold, adapt=adapt)
        pipeline.context = self.context
        return pipeline

    def summary(self) -> str:
        """What was learned and what was scored, for the closing line."""
        return (f"learned from the first {_seconds(self.seconds)} ({self.learned:,} packets), "
                f"scored the remaining {_seconds(max(self.scored.last - self.cut_time, 0.0))}")


def learn_start(path: str | Path, seconds: float, config: TrainConfig, *, threads: int = 1,
                batch_size: int = 4096, progress: Progress | None = None) -> LearnedStart:
    """Train on the first ``seconds`` of capture time of ``path``; return the model, the warm
    context and the frames left to score.

    Raises :class:`TrainingError` (a plain sentence) when the learning part holds fewer than
    :data:`MIN_PACKETS` packets or nothing is left after it, and
    :class:`~netids.capture.pcapfile.CaptureFileError` when the file cannot be read up to
    the cut.
    """
    frames = read_batches(path, batch_size)
    context, reader = ContextFeatures(), DnsReader()
    packets: list[PacketBatch] = []
    dns: list[DnsRecord] = []
    features: list[np.ndarray] = []
    learned = Span()
    end, head = math.inf, None
    for batch in frames:
        if learned.packets == 0 and len(batch):
            end = float(batch.ts[0]) + seconds
        part, after = split_frames(batch, cut_index(batch.ts, end))
        if len(part):
            p = decode(part)
            packets.append(p)
            features.append(context.update(p))
            dns += reader.read(part, p)
            learned.see(part.ts)
        if len(after):
            head = after
            break
    if learned.packets < MIN_PACKETS:
        raise TrainingError(too_little(path, seconds, learned.packets,
                                       _reach(learned, head, frames)))
    if head is None:
        raise TrainingError(f"the first {_seconds(seconds)} of {path} are the whole capture "
                            f"({_seconds(learned.last - learned.first)}, "
                            f"{_packets(learned.packets)}): nothing is left to score; give a "
                            "shorter --learn")
    learning = PacketBatch.concat(packets)
    del packets
    report = train([(learning, np.concatenate(features).astype(np.float32))],
                   config, progress=progress, sources=[str(path)])
    connections = connection_records(learning)
    del learning, features  # the learning part is in the model now: free it before scoring
    report.checkpoint.metadata["learned"] = {"capture": str(path), "seconds": seconds}
    scored = Span()
    return LearnedStart(detector=Detector(report.checkpoint, threads), context=context,
                        report=report, seconds=seconds, learned=learned.packets,
                        rest=_following(head, frames, scored), connections=connections,
                        dns=dns, scored=scored, cut_time=end)


def cut_index(ts: np.ndarray, end: float) -> int:
    """Index of the first packet at or past ``end`` (``len(ts)`` when none is): the packets
    before it are learned from.

    >>> cut_index(np.array([0.0, 1.0, 2.0, 1.5]), 1.5)
    2
    >>> cut_index(np.array([0.0, 1.0]), 5.0)
    2
    """
    past = np.flatnonzero(ts >= end)
    return int(past[0]) if len(past) else len(ts)


def split_frames(frames: FrameBatch, k: int) -> tuple[FrameBatch, FrameBatch]:
    """The first ``k`` frames and the rest, as two batches over the same buffer.

    >>> a, b = split_frames(FrameBatch.from_frames([b"ab", b"cde", b"f"], [1.0, 2.0, 3.0]), 1)
    >>> (len(a), b.first_index, b.frame(0), b.frame(1))
    (1, 1, b'cde', b'f')
    """
    def rows(s: slice, first: int) -> FrameBatch:
        return FrameBatch(frames.buf, frames.start[s], frames.caplen[s], frames.wirelen[s],
                          frames.ts[s], frames.linktype[s], first)

    return rows(slice(0, k), frames.first_index), rows(slice(k, None), frames.first_index + k)


def too_little(path: str | Path, seconds: float, packets: int, reach: Reach) -> str:
    """The refusal when the learning part is too small, with a value that would do.

    >>> too_little("a.pcap", 60, 3412, Reach(143.2, 900.0, 50_000))
    ... # doctest: +NORMALIZE_WHITESPACE
    'the first 60 s of a.pcap hold 3,412 packets; learning needs at least 8,000: the first
     8,000 packets take 143 s, try --learn 160'
    >>> too_little("a.pcap", 60, 3412, Reach(579.2, 601.0, 8_317))
    ... # doctest: +NORMALIZE_WHITESPACE
    'the first 60 s of a.pcap hold 3,412 packets; learning needs at least 8,000: the first
     8,000 packets take 579 s of its 601 s, try --learn 580'
    >>> too_little("a.pcap", 10, 1, Reach(None, 97.0, 1_797))  # doctest: +NORMALIZE_WHITESPACE
    'the first 10 s of a.pcap hold 1 packet; learning needs at least 8,000 and the whole
     capture holds 1,797: score it with a trained model instead'
    """
    said = (f"the first {_seconds(seconds)} of {path} hold {_packets(packets)}; learning needs "
            f"at least {MIN_PACKETS:,}")
    if reach.needed is None:
        return (f"{said} and the whole capture holds {reach.packets:,}: score it with a trained "
                "model instead")
    took = f"{said}: the first {MIN_PACKETS:,} packets take {_seconds(reach.needed)}"
    suggested = suggest_seconds(reach.needed)
    if suggested < reach.duration:
        return f"{took}, try --learn {suggested}"
    least = math.floor(reach.needed) + 1  # the cut excludes a packet right at the end
    if least < reach.duration:
        return f"{took} of its {_seconds(reach.duration)}, try --learn {least}"
    return (f"{took}, the whole capture: nothing would be left to score; score it with a "
            "trained model instead")


def settle_note(seconds: float, config: ContextConfig | None = None) -> str | None:
    """A warning when the learning part is shorter than the context statistics need to settle.

    The slowest statistics average over ``1 / min(lambdas)`` seconds (100 s): learned from
    less than three such windows, a steady service's rates and averages are still rising when
    learning ends and keep rising past the learned range in the scored part (a poller at a
    constant rate, learned from its first 12 s, had every later packet flagged).

    >>> settle_note(40)  # doctest: +NORMALIZE_WHITESPACE
    'note: 40 s is less than 3 times the slowest context window (100 s): slow statistics are
     still settling when learning ends, expect more false alarms; learn 300 s or more when the
     capture is long enough'
    >>> settle_note(300) is None
    True
    """
    window = 1.0 / min((config or ContextConfig()).lambdas)
    if seconds >= SETTLE_WINDOWS * window:
        return None
    return (f"note: {_seconds(seconds)} is less than {SETTLE_WINDOWS} times the slowest context "
            f"window ({_seconds(window)}): slow statistics are still settling when learning "
            f"ends, expect more false alarms; learn {SETTLE_WINDOWS * window:g} s or more when "
            "the capture is long enough")


def suggest_seconds(needed: float) -> int:
    """A round learning time a little above ``needed`` seconds.

    >>> suggest_seconds(143.2), suggest_seconds(7.5), suggest_seconds(172_800.5)
    (160, 9, 200000)
    """
    x = needed * 1.1
    step = max(1, 10 ** (math.floor(math.log10(max(x, 1.0))) - 1))
    return int(math.ceil(x / step) * step)


@dataclass(frozen=True)
class Reach:
    """How far into a capture enough packets to learn from lie."""

    needed: float | None  # capture time to the MIN_PACKETS-th packet; None: it has fewer
    duration: float  # of the whole capture
    packets: int  # in the whole capture


def _reach(learned: Span, head: FrameBatch | None, frames: Iterator[FrameBatch]) -> Reach:
    """Read on past the learning part to the end (frames only, nothing decoded: the refusal
    path alone pays for it) to say what a workable ``--learn`` would be."""
    whole = Span(first=learned.first, last=learned.last, packets=learned.packets)
    needed = None
    for batch in itertools.chain([head] if head is not None else [], frames):
        if needed is None and whole.packets + len(batch) >= MIN_PACKETS:
            needed = float(batch.ts[MIN_PACKETS - whole.packets - 1]) - whole.first
        whole.see(batch.ts)
    return Reach(needed, whole.last - whole.first if whole.packets else 0.0, whole.packets)


def _following(head: FrameBatch, frames: Iterator[FrameBatch],
               span: Span) -> Iterator[FrameBatch]:
    """The batch cut at the learning end, then the reader's batches, noting what passes."""
    span.see(head.ts)
    yield head
    for batch in frames:
        span.see(batch.ts)
        yield batch


def _seconds(value: float) -> str:
    """A duration as a person reads it.

    >>> _seconds(120.0), _seconds(5890.4), _seconds(0.25)
    ('120 s', '5,890 s', '0.25 s')
    """
    return f"{value:,.0f} s" if value >= 10 else f"{value:.3g} s"


def _packets(n: int) -> str:
    """A packet count in words.

    >>> _packets(1), _packets(34112)
    ('1 packet', '34,112 packets')
    """
    return f"{n:,} packet{'' if n == 1 else 's'}"
