"""The threshold follows the network: the calibration is refitted, within bounds, on recent
traffic that raised no event.

A model calibrated on one network flags far more than its promised share on another, or on
the same one later (docs/drift.md). :class:`ThresholdAdapter` keeps a bounded sample of the
raw errors of recent *clean* packets and moves the calibration so that its body quantile
(the calibrator's ``tail_prob``, 0.99) sits where this network's clean traffic puts it; the
trained tail above it is kept. The move is a single factor on raw errors (``scale``): the
calibrated score of a packet is the trained calibration's score of ``raw / scale``.

Guards, so that an attack cannot teach itself normal:

- only packets under the threshold are learned, and none to or from a host that had a
  flagged packet in the last ``hot_window`` seconds (an open event's hosts);
- nothing is learned from a batch whose flagged share is above ``max_flag_share``, nor for
  ``hot_window`` seconds after one, nor from shed batches (overload), nor in the first
  ``warmup`` seconds of a stream (the context statistics are still settling);
- ``scale`` never goes below 1 (the threshold never gets *more* sensitive than trained) nor
  above ``max_scale``, and moves by at most a factor ``rate_per_hour`` per hour of packet
  time.

Pure and deterministic (a seeded sample, packet time only). A refit takes effect ``lag``
batches later, so that ``score`` judging batches ahead in worker processes gives the same
verdicts as judging them one by one.

>>> import numpy as np
>>> adapter = ThresholdAdapter(anchor=1.0, config=AdaptConfig(warmup=0.0, min_samples=100))
>>> rng = np.random.default_rng(0)
>>> for t in range(0, 7200, 10):           # two hours of a network with 3x the trained errors
...     raw = 3.0 * rng.lognormal(size=200) / np.exp(2.33)   # 0.99 quantile at about 3
...     adapter.observe(t + np.arange(200) / 20, raw, np.zeros(200, bool), np.zeros(200, np.uint64),
...                     np.zeros(200, np.uint64))
>>> 2.5 < adapter.scale < 3.5, adapter.learned > 100_000
(True, True)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class AdaptConfig:
    """How far and how fast the calibration may follow the network."""

    period: float = 60.0  # seconds of packet time between refits
    per_period: int = 2_000  # clean raw errors sampled per period at most
    periods: int = 30  # periods the sample covers (30 min at the defaults)
    min_samples: int = 5_000  # clean packets needed before the first refit
    warmup: float = 120.0  # seconds from a stream's start learned nothing (context settling)
    max_scale: float = 8.0  # the raw error at the threshold never rises past 8x the trained
    rate_per_hour: float = 2.0  # ... nor by more than this factor per hour of packet time
    hot_window: float = 60.0  # a host with a flagged packet this recent is not learned from
    max_hot: int = 4_096  # hosts remembered as hot; past it, learning freezes (a flood)
    max_flag_share: float = 0.02  # a batch flagging more than this freezes learning
    lag: int = 8  # batches between a refit and the first batch judged by it
    seed: int = 0

    def __post_init__(self) -> None:
        assert self.period > 0 and self.per_period >= 1 and self.periods >= 1
        assert self.max_scale >= 1.0 and self.rate_per_hour >= 1.0 and self.lag >= 0


@dataclass(frozen=True, slots=True)
class AdapterState:
    """What a restart keeps of an adapter: its factor and the clean sample behind it, so the
    app does not start over from the trained calibration each time it starts."""

    scale: float
    learned: int  # clean packets learned from, over the adapter's whole life
    samples: tuple[np.ndarray, ...]  # clean raw errors, one array per period, oldest first


class ThresholdAdapter:
    """Learns the scale of clean raw errors of one traffic stream, batch by batch in order."""

    def __init__(self, anchor: float, quantile: float = 0.99,
                 config: AdaptConfig | None = None) -> None:
        """``anchor``: the trained calibration's raw error at its body ``quantile``."""
        self.config = config or AdaptConfig()
        self.anchor, self.quantile = float(anchor), float(quantile)
        self.scale = 1.0  # the latest refit's factor on raw errors
        self._initial = 1.0  # the factor the first ``lag`` batches are judged with
        self.learned = 0  # clean packets learned from so far
        self._after: deque[float] = deque(maxlen=4 * self.config.lag + 4)  # scale after each
        self.observed = 0  # batches observed so far (the last len(_after) scales are kept)
        self._samples: deque[np.ndarray] = deque(maxlen=self.config.periods)
        self._period: list[np.ndarray] = []  # this period's sample, in pieces
        self._period_seen = 0  # clean packets seen this period (sampled or not)
        self._start = self._period_end = self._refit_at = math.nan
        self._frozen_until = -math.inf
        self._hot = np.zeros(0, np.uint64)  # hashes of hot hosts
        self._hot_t = np.zeros(0)  # their last flagged packet's time
        self._rng = np.random.default_rng(self.config.seed)

    def scale_for(self, batch: int) -> float:
        """The scale batch number ``batch`` (0-based, in stream order) is judged with: the
        one after batch ``batch - lag`` was observed, whenever it is asked for, so batches
        judged ahead of their turn get the verdicts they get judged one by one."""
        seen = batch - self.config.lag  # batches observed before its scale was set
        if seen <= 0:
            return self._initial
        back = self.observed - seen
        assert 0 <= back < len(self._after), "a batch judged more than lag batches ahead"
        return self._after[-1 - back]

    def summary(self) -> str:
        """One line for people: '' until the threshold has moved."""
        if self.scale <= 1.0:
            return ""
        return (f"threshold adapted to this network: {self.learned:,} packets learned, "
                f"raw error at the threshold {self.scale:.2f}x the trained one")

    def state(self) -> AdapterState:
        """The factor and the sample, to be restored after a restart (:meth:`restore`)."""
        pieces = [*self._samples, *([np.concatenate(self._period)] if self._period else [])]
        return AdapterState(self.scale, self.learned, tuple(p.copy() for p in pieces))

    def restore(self, state: AdapterState) -> None:
        """Continue from ``state`` (a stream not observed yet): its factor, within this
        adapter's bounds, judges from the first batch; its sample takes part in the refits.

        >>> a = ThresholdAdapter(anchor=1.0)
        >>> a.restore(AdapterState(1.27, 10_424, (np.ones(3),)))
        >>> a.scale_for(0), a.learned, a.state().samples[0].tolist()
        (1.27, 10424, [1.0, 1.0, 1.0])
        """
        assert self.observed == 0, "restore before the first batch"
        self.scale = self._initial = min(max(float(state.scale), 1.0), self.config.max_scale)
        self.learned = int(state.learned)
        self._samples.extend(np.asarray(p, np.float64) for p in state.samples)

    def observe(self, ts: np.ndarray, raw: np.ndarray, anomalous: np.ndarray,
                src_hash: np.ndarray, dst_hash: np.ndarray, shed: bool = False) -> None:
        """Learn from one judged batch, in stream order; ``raw`` unscaled raw errors, the
        hashes those of each packet's source and destination address."""
        if len(ts):
            self._learn(np.asarray(ts, np.float64), np.asarray(raw, np.float64),
                        np.asarray(anomalous, bool), src_hash, dst_hash, shed)
        self.observed += 1
        self._after.append(self.scale)

    def _learn(self, ts: np.ndarray, raw: np.ndarray, anomalous: np.ndarray,
               src_hash: np.ndarray, dst_hash: np.ndarray, shed: bool) -> None:
        cfg, now = self.config, float(ts[-1])
        if math.isnan(self._start):
            self._start, self._period_end = float(ts[0]), float(ts[0]) + cfg.period
            self._refit_at = float(ts[0])
        overflow = self._heat(np.concatenate([src_hash[anomalous], dst_hash[anomalous]]),
                              np.concatenate([ts[anomalous], ts[anomalous]]), now)
        if shed or anomalous.mean() > cfg.max_flag_share or overflow:
            self._frozen_until = now + cfg.hot_window
        if now >= self._frozen_until:  # frozen, nothing is sampled: no need to sort it out
            clean = ~anomalous & ~np.isin(src_hash, self._hot) & ~np.isin(dst_hash, self._hot)
            clean &= ts >= self._start + cfg.warmup
            self._sample(raw[clean & np.isfinite(raw)])
        if now >= self._period_end:
            self._close_period(now)

    def _heat(self, hosts: np.ndarray, ts: np.ndarray, now: float) -> bool:
        """Remember the hosts of flagged packets; forget those idle past ``hot_window``.
        Past ``max_hot`` hosts (a flood of spoofed sources) only the most recent are kept, so
        the set stays bounded and each batch's sort small; True if that happened (the caller
        freezes learning, so the hosts let go are never mistaken for clean ones)."""
        hot = np.concatenate([self._hot, hosts.astype(np.uint64)])
        hot_t = np.concatenate([self._hot_t, ts])
        keep = hot_t >= now - self.config.hot_window
        hot, hot_t = hot[keep], hot_t[keep]
        order = np.lexsort((-hot_t, hot))  # per host, its latest time first
        hot, hot_t = hot[order], hot_t[order]
        first = np.ones(len(hot), bool)
        first[1:] = hot[1:] != hot[:-1]
        hot, hot_t = hot[first], hot_t[first]
        overflow = len(hot) > self.config.max_hot
        if overflow:
            newest = np.argpartition(-hot_t, self.config.max_hot)[:self.config.max_hot]
            hot, hot_t = hot[np.sort(newest)], hot_t[np.sort(newest)]
        self._hot, self._hot_t = hot, hot_t
        return overflow

    def _sample(self, raw: np.ndarray) -> None:
        """Reservoir-sample this period's clean raw errors, ``per_period`` at most."""
        cap, seen = self.config.per_period, self._period_seen
        self._period_seen += len(raw)
        self.learned += len(raw)
        held = sum(len(p) for p in self._period)
        room = max(cap - held, 0)
        if room:
            self._period.append(raw[:room].copy())
        rest = raw[room:]
        if len(rest) == 0:
            return
        pool = np.concatenate(self._period)
        at = self._rng.integers(0, seen + room + np.arange(1, len(rest) + 1))
        hit = at < cap
        pool[at[hit]] = rest[hit]
        self._period = [pool]

    def _close_period(self, now: float) -> None:
        """Keep this period's sample and refit from the last ``periods`` of them."""
        cfg = self.config
        if self._period:
            self._samples.append(np.concatenate(self._period))
        self._period, self._period_seen = [], 0
        self._period_end = now + cfg.period
        sample = np.concatenate(list(self._samples)) if self._samples else np.zeros(0)
        if len(sample) < cfg.min_samples:
            return
        target = float(np.quantile(sample, self.quantile)) / self.anchor
        hours = max(now - self._refit_at, 0.0) / 3600.0
        step = cfg.rate_per_hour ** hours
        self._refit_at = now
        self.scale = min(max(target, self.scale / step, 1.0), self.scale * step, cfg.max_scale)
