"""One score per packet: the larger of its header score and its connection's behaviour score
at that moment (issue 17, item 4).

A behaviour share ``s`` (a detector's evidence as a share of its alert threshold, looked up by
:class:`~netids.detect.behaviour_evidence.BehaviourEvidence`) maps onto the packet score scale
in *nines* (``-log10(1 - score)``): ``s`` times the threshold's nines, so ``s = 1`` is the
threshold ``t`` exactly, more evidence ranks higher, and half the evidence is half the nines.
The packet's score is the larger of the two; a packet anomalous only through behaviour gets
the behaviour kind and words, and is marked ``by_behaviour`` so event aggregation leaves it to
the behaviour detectors' own event (no second, packet-model event for the same thing).

Each packet reads what was known at its own time: a batch's connection records are observed
first, each known from the moment its connection closed (records arrive when connections
end), so the 11th guess of a password guesser scores past the threshold and the first ones
only as far as the evidence had grown, whatever the batch size.

    behaviour = StreamBehaviour()                 # or the event sink's, which stores events
    for scored in batches:
        scored, nines = behaviour.rescore(scored)  # observes the batch's connections too
    behaviour.finish()
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from netids.detect.answered import Answered
from netids.detect.behaviour import BehaviourConfig, BehaviourDetectors
from netids.detect.behaviour_base import BehaviourAlert
from netids.detect.behaviour_evidence import KIND_NAMES, BehaviourEvidence
from netids.detect.calibration import scores_of
from netids.detect.conn_columns import ConnRecords
from netids.detect.conn_fold import FloodFold
from netids.detect.packets import format_ip
from netids.detect.scored import ScoredBatch
from netids.detect.tracking import ConnFeed

_WORDS = ("", "its source's failed connections (host/port pairs) are {:.1f}x what makes a "
              "scanner",
          "its client's login-like sessions to this server and service are {:.1f}x what makes "
          "password guessing",
          "its pair's connections are {:.1f}x the regularity that makes beaconing")


def behaviour_scores(share: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(score, nines) of behaviour shares at ``threshold``: ``s`` times the threshold's
    nines, so a share of 1 scores ``threshold`` exactly and less stays below it. Scores stay
    below 1, as calibrated scores do: a threshold of 1 flags nothing.

    >>> s, n = behaviour_scores(np.array([0.0, 0.5, 1.0, 2.0]), 0.999)
    >>> s.tolist(), np.round(n, 3).tolist()
    ([0.0, 0.9683772233983162, 0.999, 0.999999], [0.0, 1.5, 3.0, 6.0])
    >>> bool(behaviour_scores(np.array([50.0]), 1.0)[0][0] < 1.0)
    True
    """
    share = np.asarray(share, dtype=np.float64)
    nines_t = -math.log10(max(1.0 - threshold, 1e-300))
    nines = share * nines_t
    score = -np.expm1(-nines * math.log(10.0))
    below = np.nextafter(threshold, 0.0)
    score = np.where(share >= 1.0, np.maximum(score, threshold), np.minimum(score, below))
    score = np.minimum(score, np.nextafter(1.0, 0.0))  # calibration's ceiling
    return np.where(share > 0.0, score, 0.0), nines


def score_nines(scores: np.ndarray) -> np.ndarray:
    """Nines of calibrated scores (a score of 1 as 17 nines: float64's last step below 1)."""
    return -np.log10(np.maximum(1.0 - np.asarray(scores, dtype=np.float64), 1e-17))


class PacketBehaviour:
    """Merges the behaviour evidence into scored batches, counting what it flagged; then
    answers take the score of what they answer (:mod:`netids.detect.answered`)."""

    def __init__(self, evidence: BehaviourEvidence) -> None:
        self.evidence = evidence
        self.answers = Answered()
        self._kind_codes: dict[tuple[str, bool], int] = {}  # (kind, by behaviour alone)
        self.flagged = 0  # packets anomalous through behaviour alone
        self.raised = 0  # packets whose score behaviour raised

    def rescore(self, scored: ScoredBatch,
                nines: np.ndarray | None = None) -> tuple[ScoredBatch, np.ndarray | None]:
        """``scored`` with each packet's score the larger of its own and its behaviour score,
        then each answer's raised to what it answers, and the final nines; (``scored``, None)
        when nothing was raised. ``nines``: the header scores' own (the pipeline's verdicts),
        else taken from the scores. The batch's records are noted first, between
        ``evidence.start()`` and this call."""
        header = score_nines(scored.scores) if nines is None else nines
        merged, final = self._behaviour(scored, header)
        merged, answered = self._answers(merged, header if final is None else final)
        return merged, final if answered is None else answered

    def _answers(self, scored: ScoredBatch,
                 nines: np.ndarray) -> tuple[ScoredBatch, np.ndarray | None]:
        """``scored`` with answers raised, and its nines (None: none raised). An answer
        made anomalous takes the kind of what it answers, and is left to the behaviour
        detectors' event when that was anomalous through behaviour alone."""
        alone = (np.zeros(len(scored), bool) if scored.by_behaviour is None
                 else scored.by_behaviour)
        codes = np.full(len(scored), -1, np.int64)
        codes[scored.anomalous] = [
            self._kind_codes.setdefault((k, bool(b)), len(self._kind_codes))
            for k, b in zip(scored.kinds, alone[scored.anomalous].tolist(), strict=True)]
        raised, kind = self.answers.raise_answers(scored.packets, nines, codes)
        up = raised > nines
        if not up.any():
            return scored, None
        scores = np.where(up, scores_of(raised), scored.scores)
        new = up & (scores >= scored.threshold) & ~scored.anomalous
        named = list(self._kind_codes)
        p, extra, alone = scored.packets, {}, alone.copy()
        for i in np.flatnonzero(new).tolist():
            what, alone[i] = named[kind[i]] if kind[i] >= 0 else ("anomalous", False)
            extra[i] = (what if kind[i] >= 0 else "unusual traffic",
                        f"answers a packet flagged as {what} from "
                        f"{format_ip(p.dst_hi[i], p.dst_lo[i])}")
        final = _with_anomalies(scored, scores, new, extra)
        return dataclasses.replace(final, by_behaviour=alone), raised

    def _behaviour(self, scored: ScoredBatch,
                   header: np.ndarray) -> tuple[ScoredBatch, np.ndarray | None]:
        share, kind = self.evidence.lookup(scored.packets)
        if not share.any():
            return scored, None
        b_scores, b_nines = behaviour_scores(share, scored.threshold)
        raised = b_nines > header
        if not raised.any():
            return scored, None
        alone = raised & (b_scores >= scored.threshold) & ~scored.anomalous
        extra = {int(i): (KIND_NAMES[int(kind[i])],
                          "behaviour: " + _WORDS[int(kind[i])].format(share[i]))
                 for i in np.flatnonzero(alone)}
        self.flagged += int(alone.sum())
        self.raised += int(raised.sum())
        final = _with_anomalies(scored, np.where(raised, b_scores, scored.scores), alone, extra)
        return dataclasses.replace(final, by_behaviour=alone), np.where(raised, b_nines, header)


def _with_anomalies(scored: ScoredBatch, scores: np.ndarray, new: np.ndarray,
                    extra: dict[int, tuple[str, str]]) -> ScoredBatch:
    """``scored`` with ``scores``, and packets ``new`` anomalous too, each with the kind and
    words ``extra`` gives it."""
    anomalous = scored.anomalous | new
    kinds = np.empty(len(scored), dtype=object)
    texts = np.empty(len(scored), dtype=object)
    kinds[scored.anomalous], texts[scored.anomalous] = scored.kinds, scored.explanations
    for i, (k, text) in extra.items():
        kinds[i], texts[i] = k, text
    return dataclasses.replace(scored, scores=scores, anomalous=anomalous,
                               kinds=kinds[anomalous].tolist(),
                               explanations=texts[anomalous].tolist())


def packet_only(scored: ScoredBatch) -> ScoredBatch:
    """``scored`` with the anomalies of behaviour alone left out: what packet events are
    made of (the behaviour detectors raise their own)."""
    alone = scored.by_behaviour
    if alone is None or not alone.any():
        return scored
    index = scored.anomaly_index
    keep = ~alone[index]
    return dataclasses.replace(
        scored, anomalous=scored.anomalous & ~alone,
        kinds=[k for k, y in zip(scored.kinds, keep, strict=True) if y],
        explanations=[e for e, y in zip(scored.explanations, keep, strict=True) if y])


class StreamBehaviour:
    """The connection layer and the behaviour detectors of one stream, for packet scores
    alone (``score`` without a database, ``evaluate``): no events, nothing stored."""

    def __init__(self, conns: ConnFeed | None = None, config: BehaviourConfig | None = None,
                 alerted: Callable[[list[BehaviourAlert]], None] | None = None) -> None:
        """``alerted``: told the detectors' alerts as they come (``evaluate`` counts the
        false ones); without it they are dropped."""
        self.conns = conns or ConnFeed()
        self.fold = FloodFold()  # a flood's one-shots are no evidence (conn_fold.py)
        self.detectors = BehaviourDetectors(config)
        self.packets = PacketBehaviour(self.detectors.evidence)
        self.alerted = alerted

    def rescore(self, scored: ScoredBatch,
                nines: np.ndarray | None = None) -> tuple[ScoredBatch, np.ndarray | None]:
        """Follow the batch's connections (the records it completes become evidence), then
        :meth:`PacketBehaviour.rescore` it."""
        self.detectors.evidence.start()
        self._observe(self.fold.keep(self.conns.update(scored)))
        return self.packets.rescore(scored, nines)

    def finish(self) -> None:
        """The stream ended: every connection still open is evidence too."""
        self._observe(self.fold.keep(self.conns.flush()))

    def _observe(self, records: ConnRecords) -> None:
        if len(records):
            alerts = self.detectors.update(records, self.conns.tracker.now)
            if alerts and self.alerted is not None:
                self.alerted(alerts)
