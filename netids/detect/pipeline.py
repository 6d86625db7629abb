"""The per-batch pipeline: decode, context features, score, classify, explain.

Pure apart from the model call: it takes a :class:`FrameBatch` and returns a
:class:`ScoredBatch`. Live capture, the ``score`` command and the UI's file analysis all run
batches through the same :class:`Pipeline`, so a capture file gives the same verdicts as the
traffic it recorded. Event aggregation and storage sit downstream of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from netids.detect.adaptive import AdaptConfig, ThresholdAdapter
from netids.detect.context import ContextConfig, ContextFeatures
from netids.detect.decode import decode
from netids.detect.detector import Detector, Scores
from netids.detect.dns import DnsReader
from netids.detect.frames import FrameBatch
from netids.detect.packets import FLAG_L3, PacketBatch
from netids.detect.payload import PayloadInspector
from netids.detect.scaling import categorical_codes
from netids.detect.scored import ScoredBatch, Verdicts
from netids.detect.shedding import choose_sample, destination_key
from netids.detect.sketches import hash64

MAX_EXPLAINED = 256  # distinct explanations computed per batch at most
# ... unless grouping by target leaves more; past this many, a flood from and to random
# addresses is grouped by source, then by how it deviates alone (a bounded cost per batch)
MAX_EXPLAINED_BY_TARGET = 1024


@dataclass(slots=True)
class PipelineStats:
    """Running totals, read by the UI and the end-of-run summary."""

    packets: int = 0  # every packet handled, scored or shed
    shed: int = 0  # counted but not scored, under overload (see netids.detect.shedding)
    unread: int = 0  # of those, shed without decoding (deep overload): protocol unknown
    undecoded: int = 0  # frames with no network layer read (unsupported link, truncated)
    anomalies: int = 0
    tcp: int = 0
    udp: int = 0
    other: int = 0


class Pipeline:
    """Scores consecutive batches of one traffic stream (state carries across batches)."""

    def __init__(
        self,
        detector: Detector,
        *,
        threshold: float | None = None,
        context: ContextConfig | None = None,
        adapt: bool | AdaptConfig = False,
        payload: bool = True,
        dns: bool = True,
        warmup: bool = False,
    ) -> None:
        """``adapt``: let the calibration follow this stream's clean traffic
        (:mod:`netids.detect.adaptive`; True for the default bounds). ``payload``: read the
        HTTP heads and TLS heartbeats packets carry (:mod:`netids.detect.payload`). ``dns``:
        read the DNS messages (:mod:`netids.detect.dns`). ``warmup``: discount the stream's
        first seconds (:mod:`netids.detect.warmup`): a live sensor starting inside a running
        network; a capture file is judged from its first packet as it is."""
        self.detector = detector
        self.context = ContextFeatures(context or ContextConfig())
        self.threshold = detector.threshold if threshold is None else float(threshold)
        self.stats = PipelineStats()
        cal = detector.checkpoint.calibrator
        self.adapter = ThresholdAdapter(
            float(np.exp(cal.knots[-1])), cal.tail_prob,
            adapt if isinstance(adapt, AdaptConfig) else None) if adapt else None
        self._handed = 0  # batches handed out for judging
        self.payload = PayloadInspector() if payload else None
        self.dns = DnsReader() if dns else None
        self.warmup = warmup

    def next_scale(self) -> float:
        """The calibration scale (1: as trained) of the next batch handed out for judging,
        in stream order: every batch takes one."""
        self._handed += 1
        return self.adapter.scale_for(self._handed - 1) if self.adapter else 1.0

    def process(self, frames: FrameBatch, share: float = 1.0, *,
                decode_shed: bool = True) -> ScoredBatch:
        """Decode, featurise, judge and count one batch, in stream order: the one entry point.
        Its stages are public so ``score`` can judge batches in worker processes while the
        next one is featurised: :meth:`featurise` in order, :meth:`judge` anywhere,
        :meth:`record` in order again.

        ``share`` < 1 sheds load (live capture falling behind): every packet is decoded and
        counted, only a sample of about that share (fair per destination, so a flood gives up
        packets first) goes on to context features, the model and events; the rest is handed
        on as ``unscored``. With ``decode_shed=False`` (deep overload) the sample is every
        k-th frame and the rest is only counted, not decoded (``unread_ts``)."""
        if share >= 1.0:
            frames, packets, features = self.featurise(frames)
            return self.record(frames, packets, features,
                               self.judge(packets, features, self.next_scale(), self.started))
        if decode_shed:
            packets = decode(frames)
            keep = choose_sample(destination_key(packets), share)
        else:
            keep = choose_sample(np.arange(len(frames), dtype=np.uint64), share)
        shed = np.ones(len(frames), dtype=bool)
        shed[keep] = False
        unscored = unread_ts = None
        if decode_shed:
            unscored = packets.take(shed)
            self._count(unscored.proto, unscored.status, 0)
            packets = packets.take(keep)
        else:
            unread_ts = frames.ts[shed]
            self.stats.packets += len(unread_ts)
            self.stats.unread += len(unread_ts)
            packets = decode(frames.take(keep))
        self.stats.shed += len(frames) - len(keep)
        frames = frames.take(keep)
        features = self.context.update(packets)
        verdicts = self.judge(packets, features, self.next_scale(), self.started)
        # overload: a flood may be passing, learn nothing
        scored = self.record(frames, packets, features, verdicts, learn=False)
        return dataclasses.replace(scored, unscored=unscored, unread_ts=unread_ts)

    @property
    def started(self) -> float | None:
        """The stream's first packet time when its warm-up is discounted, else None: what
        :meth:`judge` takes as ``started``."""
        return self.context.started if self.warmup else None

    def featurise(self, frames: FrameBatch) -> tuple[FrameBatch, PacketBatch, np.ndarray]:
        """First stage: decode and context features (advances the stream state; in order)."""
        packets = decode(frames)
        return frames, packets, self.context.update(packets)

    def judge(self, packets: PacketBatch, features: np.ndarray, scale: float = 1.0,
              started: float | None = None) -> Verdicts:
        """The model's verdicts on one featurised batch. They depend on that batch, the
        threshold, the calibration ``scale`` (:meth:`next_scale`, taken when the batch is
        handed out) and the stream's start (:attr:`started`, for the warm-up) alone
        and change no state, so batches may be judged in any order, on any thread or
        process."""
        scores = self.detector.score_batch(packets, features, scale, started)
        anomalous = self.detector.policy(self.threshold).classify(scores.scores)
        kinds, explanations = self._explain(packets, features, scores, np.flatnonzero(anomalous))
        return Verdicts(scores.scores, anomalous, kinds, explanations, scores.nines, scores.raw)

    def record(self, frames: FrameBatch, packets: PacketBatch, features: np.ndarray,
               verdicts: Verdicts, learn: bool = True) -> ScoredBatch:
        """Count a judged batch into :attr:`stats` (in stream order), let the threshold
        adapter learn from it (unless ``learn`` is False), and assemble it."""
        self._count(packets.proto, packets.status, len(verdicts.kinds))
        if self.adapter is not None:
            self.adapter.observe(packets.ts, verdicts.raw if verdicts.raw is not None
                                 else np.zeros(len(packets)), verdicts.anomalous,
                                 hash64(packets.src_hi, packets.src_lo),
                                 hash64(packets.dst_hi, packets.dst_lo),
                                 shed=not learn or verdicts.raw is None)
        return ScoredBatch(
            frames=frames,
            packets=packets,
            features=features,
            scores=verdicts.scores,
            threshold=self.threshold,
            anomalous=verdicts.anomalous,
            kinds=verdicts.kinds,
            explanations=verdicts.explanations,
            findings=tuple(self.payload.inspect(frames, packets)) if self.payload else (),
            dns=tuple(self.dns.read(frames, packets)) if self.dns else (),
        )

    def _explain(self, packets: PacketBatch, features: np.ndarray, scores: Scores,
                 index: np.ndarray) -> tuple[list[str], list[str]]:
        """Explain one representative per group of alike anomalies and share its words.

        A flood makes thousands of anomalous packets a batch that deviate the same way; they
        are grouped by source, target, protocol, most deviating input and every categorical
        input's class (by target alone when sources are spoofed; by source, then by the
        deviation alone when targets are too), so explaining costs the same
        for ten packets or ten thousand, while a scanner's SYN is not told it has the flags of
        the reset it was grouped with. A categorical top input's own value (a port number)
        also keys the group: it is what the words tell first.
        """
        if len(index) == 0:
            return [], []
        top = np.argmax(scores.errors[index], axis=1)
        n_num = len(self.detector.checkpoint.numeric_names)
        sub = packets.take(index)
        codes = categorical_codes(sub)  # [m, n_categorical], few values each
        told = self.detector.categorical_values(sub, codes)
        value = np.where(top >= n_num, told[np.arange(len(index)), np.maximum(top - n_num, 0)], 0)
        # all classes in one number (their vocabularies multiply to under 2**63): a narrow key
        # sorts faster
        classes = np.ravel_multi_index(tuple(codes.T), self.detector.checkpoint.config.vocab_sizes)
        target = [packets.dst_hi[index], packets.dst_lo[index], top, value, classes]
        keys = np.stack([packets.src_hi[index], packets.src_lo[index], *target], axis=1)
        groups, first, inverse = np.unique(keys.astype(np.uint64), axis=0, return_index=True,
                                           return_inverse=True)
        source = [packets.src_hi[index], packets.src_lo[index], top, value, classes]
        for coarser, limit in ((target, MAX_EXPLAINED), (source, MAX_EXPLAINED_BY_TARGET),
                               (source[2:], MAX_EXPLAINED_BY_TARGET)):
            if len(groups) <= limit:
                break
            groups, first, inverse = np.unique(np.stack(coarser, axis=1).astype(np.uint64),
                                               axis=0, return_index=True, return_inverse=True)
        kinds, texts = self.detector.explain(packets, features, scores, index[first])
        inverse = inverse.reshape(-1)
        return [kinds[g] for g in inverse], [texts[g] for g in inverse]

    def _count(self, proto: np.ndarray, status: np.ndarray, anomalies: int) -> None:
        s = self.stats
        tcp, udp = int(np.count_nonzero(proto == 6)), int(np.count_nonzero(proto == 17))
        s.packets += len(proto)
        s.tcp += tcp
        s.udp += udp
        s.other += len(proto) - tcp - udp
        s.undecoded += int(np.count_nonzero((status & FLAG_L3) == 0))
        s.anomalies += anomalies
