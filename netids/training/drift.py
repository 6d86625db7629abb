"""What a detector flags on normal traffic at its own threshold, and the events that makes.

ROC-AUC and detection at a fixed false-alarm rate (:mod:`netids.training.evaluate`) set their
cut from the evaluated capture's own normal scores: they say how well a method *ranks*, not
what it does when it runs. A running detector decides with the threshold it was calibrated
for (``Detector.threshold``, 0.999: a thousandth of normal traffic above it), and a person
reads the *events* its flags become. On traffic the model has not seen (the same network
later, another run, another network) both can drift far from the calibration; this module
measures them:

- the share of normal packets flagged at the threshold (calibrated score >= threshold);
- false events: the anomalies of normal packets run through the real event aggregation
  (:class:`~netids.detect.events.EventAggregator`, batch by batch as ``score --db`` and the
  live app do through ``EventSink``), attack packets never counted as anomalous, per hour of
  the capture's time span;
- the same for a baseline scored packet by packet (IsolationForest at its own threshold), its
  flags grouped into events by the same aggregator with the model's kind for each packet.

One pass over the capture, in pipeline batches, gives all of it plus the scores the ranking
metrics need: the nines the detector reports, warm-up included.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from netids.capture.pcapfile import read_batches
from netids.detect.behaviour_base import BehaviourAlert
from netids.detect.detector import Detector, Scores
from netids.detect.event_records import EventConfig, EventUpdate
from netids.detect.events import EventAggregator
from netids.detect.frames import FrameBatch
from netids.detect.packet_behaviour import StreamBehaviour, packet_only
from netids.detect.packets import PacketBatch, is_ip, parse_ip
from netids.detect.pipeline import Pipeline
from netids.detect.scored import ScoredBatch

WITH_BEHAVIOUR = "netids + behaviour"  # the scores `score` writes and the app flags
BaselineScorer = Callable[[PacketBatch, np.ndarray], np.ndarray]  # (packets, features) -> scores


@dataclass
class OwnThreshold:
    """What one method flags among the normal packets of a capture at its own threshold."""

    method: str
    threshold: float
    normal: int  # normal packets in the capture
    flagged: int  # of them, at or above the threshold
    events: int  # events made of flagged normal packets alone
    hours: float  # the capture's time span

    @property
    def share(self) -> float:
        """Flagged share of the normal packets (nan without any)."""
        return self.flagged / self.normal if self.normal else float("nan")

    @property
    def events_per_hour(self) -> float:
        return self.events / self.hours if self.hours > 0 else float("nan")


@dataclass
class Judged:
    """One capture judged batch by batch as the pipeline judges it."""

    packets: PacketBatch
    nines: np.ndarray  # float64 [n], the model's scores in nines as it reports them, a
    # sensor's warm-up included (ranking metrics)
    scores: np.ndarray  # float32 [n], calibrated 0..1
    own: list[OwnThreshold]  # the model first, as the app flags (with behaviour), the baseline
    baseline: np.ndarray | None = None  # float [n], the baseline's scores
    false_flags: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind,
    # explanation) of the model's flagged normal packets
    flagged_at: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their times
    event_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # first_seen of
    # each of the model's false events
    behaviour: np.ndarray | None = None  # float64 [n], nines with behaviour merged in


class EventCounter:
    """Counts the events a stream of scored batches makes, exactly as ``EventSink`` folds
    them (aggregate the batch, close what its last packet's time has passed, close the rest
    at the end), without storing anything."""

    def __init__(self, config: EventConfig | None = None) -> None:
        self.aggregator = EventAggregator(config)
        self.first_seen: dict[str, float] = {}  # event id -> its first packet's time

    def add(self, scored: ScoredBatch) -> None:
        updates = self.aggregator.add(scored)
        if len(scored):
            updates += self.aggregator.flush(float(scored.packets.ts[-1]))
        self._note(updates)

    def finish(self) -> int:
        """Close every open event; return how many events there were."""
        self._note(self.aggregator.flush())
        return len(self.first_seen)

    def _note(self, updates: list[EventUpdate]) -> None:
        for u in updates:
            self.first_seen[u.id] = min(u.first_seen, self.first_seen.get(u.id, u.first_seen))


def normal_only(scored: ScoredBatch, attack: np.ndarray) -> ScoredBatch:
    """``scored`` with the anomalies of attack packets (``attack`` bool [n]) taken back, so
    only the false alarms on normal packets make events."""
    if not attack.any():
        return scored
    kept = ~attack[scored.anomaly_index]
    return dataclasses.replace(
        scored,
        anomalous=scored.anomalous & ~attack,
        kinds=[k for k, keep in zip(scored.kinds, kept, strict=True) if keep],
        explanations=[e for e, keep in zip(scored.explanations, kept, strict=True) if keep],
    )


def span_hours(ts: np.ndarray) -> float:
    """Time from the first to the last packet, in hours.

    >>> span_hours(np.array([100.0, 1900.0, 3700.0]))
    1.0
    """
    return float(ts.max() - ts.min()) / 3600.0 if len(ts) else 0.0


class _AsTheAppFlags:
    """The packet scores with behaviour and answers merged in, as ``score`` writes them and
    the app flags, and what they flag among normal packets: packet events as the event sink
    makes them (anomalies of behaviour alone left to the detectors), and each behaviour alert
    whose source sent no attack packet as one false event more."""

    def __init__(self) -> None:
        self.alerts: list[BehaviourAlert] = []
        self.stream = StreamBehaviour(alerted=self.alerts.extend)
        self.events = EventCounter()
        self.flagged = 0
        self.nines: list[np.ndarray] = []
        self.attackers: set[tuple[int, int]] = set()  # source addresses of attack packets

    def add(self, scored: ScoredBatch, nines: np.ndarray, attack: np.ndarray) -> ScoredBatch:
        """Merge one batch's behaviour in; its normal packets as the app flags them."""
        merged, raised = self.stream.rescore(scored, nines)
        self.nines.append(nines if raised is None else raised)
        normal = normal_only(merged, attack)
        self.events.add(packet_only(normal))
        self.flagged += int(normal.anomalous.sum())
        if attack.any():
            p = scored.packets
            pairs = np.unique(np.stack([p.src_hi[attack], p.src_lo[attack]], axis=1), axis=0)
            self.attackers.update(map(tuple, pairs.tolist()))
        return normal

    def own(self, threshold: float, normal: int, hours: float) -> OwnThreshold:
        """The figures at ``threshold``, once the stream has ended."""
        self.stream.finish()
        false = sum(not is_ip(a.source) or parse_ip(a.source) not in self.attackers
                    for a in self.alerts)
        return OwnThreshold(WITH_BEHAVIOUR, threshold, normal, self.flagged,
                            self.events.finish() + false, hours)


def judge_capture(
    path: str | Path, detector: Detector, attack: Callable[[int, int], np.ndarray], *,
    threshold: float | None = None, baseline: BaselineScorer | None = None,
    baseline_threshold: float = float("inf"), baseline_name: str = "isolation forest",
    batch_size: int = 4096, done: Callable[[FrameBatch], None] | None = None,
    adapt: bool = False, behaviour: bool = False, warmup: bool = False,
) -> Judged:
    """Judge every packet of ``path`` in batches of ``batch_size``, each then told to ``done``.
    ``attack(first, n)`` gives the bool attack labels of packets ``first .. first + n - 1``
    of the file. ``threshold`` overrides the model's own. ``baseline`` scores a featurised
    batch (higher = more anomalous); its flags (>= ``baseline_threshold``) go through the same
    event aggregation, each packet with the kind the model's explanation gives it, so both
    methods' events are grouped alike. ``behaviour``: also what the app flags (header,
    behaviour, answers; its nines, flags, words and event starts are those kept);
    ``warmup``: the capture's first seconds discounted as a live sensor's are."""
    remembering = _Remembering(detector)
    pipeline = Pipeline(cast(Detector, remembering), threshold=threshold, adapt=adapt,
                        warmup=warmup)
    model_events, header_flagged = EventCounter(), 0
    packets, nines, scores, attacks, flagged_at = [], [], [], [], []
    app, false_flags = _AsTheAppFlags() if behaviour else None, Counter[tuple[str, str]]()
    forest = _Baseline(detector, baseline, baseline_threshold, baseline_name) \
        if baseline is not None else None
    for frames in read_batches(path, batch_size):
        frames, batch, feats = pipeline.featurise(frames)
        verdicts = pipeline.judge(batch, feats, pipeline.next_scale(), pipeline.started)
        scored = pipeline.record(frames, batch, feats, verdicts)
        bad = np.asarray(attack(frames.first_index, len(batch)), dtype=bool)
        normal = normal_only(scored, bad)
        model_events.add(normal)
        header_flagged += int(normal.anomalous.sum())
        if app is not None:  # header or behaviour, as `score` has it
            normal = app.add(scored, verdicts.nines, bad)
        flagged_at.append(batch.ts[normal.anomalous])
        false_flags.update(zip(normal.kinds, normal.explanations, strict=True))
        model = remembering.last  # the scores the pipeline judged by
        assert model is not None and len(model) == len(batch)
        for kept, value in ((packets, batch), (nines, model.nines),
                            (scores, verdicts.scores), (attacks, bad)):
            kept.append(value)
        if forest is not None:
            forest.add(scored, model, bad)
        if done is not None:
            done(frames)
    if not packets:
        raise ValueError(f"{path}: the capture holds no packets")
    all_packets, n_normal = PacketBatch.concat(packets), int((~np.concatenate(attacks)).sum())
    hours, flagged = span_hours(all_packets.ts), np.concatenate(flagged_at)
    own = [OwnThreshold("netids transformer", pipeline.threshold, n_normal, header_flagged,
                        model_events.finish(), hours)]
    if app is not None:
        own.append(app.own(pipeline.threshold, n_normal, hours))
    if forest is not None:
        own.append(forest.own(n_normal, hours))
    starts = (model_events if app is None else app.events).first_seen.values()
    return Judged(all_packets, np.concatenate(nines), np.concatenate(scores), own,
                  np.concatenate(forest.scores) if forest is not None else None, false_flags,
                  flagged,
                  np.sort(np.fromiter(starts, np.float64)),
                  np.concatenate(app.nines) if app is not None else None)


class _Baseline:
    """A baseline's scores of each batch, and what they flag among normal packets at its own
    threshold, grouped into events with the model's kinds and words."""

    def __init__(self, detector: Detector, scorer: BaselineScorer, threshold: float,
                 name: str) -> None:
        self.detector, self.scorer, self.threshold, self.name = detector, scorer, threshold, name
        self.scores: list[np.ndarray] = []
        self.events, self.flagged = EventCounter(), 0

    def add(self, scored: ScoredBatch, model: Scores, attack: np.ndarray) -> None:
        self.scores.append(np.asarray(self.scorer(scored.packets, scored.features),
                                      dtype=np.float64))
        flags = _judged_by(self.detector, scored, model, self.scores[-1], self.threshold, attack)
        self.events.add(flags)
        self.flagged += int(flags.anomalous.sum())

    def own(self, normal: int, hours: float) -> OwnThreshold:
        return OwnThreshold(self.name, self.threshold, normal, self.flagged,
                            self.events.finish(), hours)


def _judged_by(detector: Detector, scored: ScoredBatch, model: Scores, scores: np.ndarray,
               threshold: float, attack: np.ndarray) -> ScoredBatch:
    """``scored`` as a baseline's ``scores`` judge it at ``threshold``, attacks taken back;
    each anomaly with the kind and words the model gives that packet."""
    flags = (scores >= threshold) & ~attack
    kinds, texts = detector.explain(scored.packets, scored.features, model, np.flatnonzero(flags))
    return dataclasses.replace(scored, scores=scores.astype(np.float32), threshold=threshold,
                               anomalous=flags, kinds=kinds, explanations=texts)


class _Remembering:
    """A detector that remembers the scores of its last ``score_batch`` call, so the scores
    and per-input errors behind a pipeline's verdicts are read, not computed twice."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self.last: Scores | None = None

    def score_batch(self, packets: PacketBatch, features: np.ndarray,
                    scale: float = 1.0, started: float | None = None) -> Scores:
        self.last = self._detector.score_batch(packets, features, scale, started)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self._detector, name)


def format_own(own: Iterable[OwnThreshold]) -> str:
    """A Markdown table of what each method flags at its own threshold."""
    lines = ["| method | own threshold | normal packets | flagged | flagged share | "
             "false events | hours | false events/h |", "|" + "---|" * 8]
    for o in own:
        lines.append(f"| {o.method} | {o.threshold:.6g} | {o.normal} | {o.flagged} | "
                     f"{o.share:.3%} | {o.events} | {o.hours:.3f} | {o.events_per_hour:.1f} |")
    return "\n".join(lines)


NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def top_false_flags(flags: Counter[tuple[str, str]], n: int = 5,
                    by: str = "explanation") -> list[tuple[str, int]]:
    """The ``n`` most frequent kinds (``by="kind"``) or explanations of flagged normal
    packets. Explanations are counted with their numbers replaced by ``#``: "31 packets/s"
    and "29 packets/s" are one reason.

    >>> top_false_flags(Counter({("flood", "31 packets/s"): 2, ("flood", "29 packets/s"): 1}))
    [('flood: # packets/s', 3)]
    """
    counts: Counter[str] = Counter()
    for (kind, text), count in flags.items():
        counts[kind if by == "kind" else f"{kind}: {NUMBER.sub('#', text)}"] += count
    return counts.most_common(n)
