"""Map raw reconstruction errors to calibrated scores 0..1.

The calibrated score of a packet is the share of held-back *normal* packets whose raw error is
lower: threshold ``t`` means "about ``1 - t`` of normal traffic scores above ``t``". Below the
tail quantile this is the empirical CDF (interpolated between stored quantiles); above it an
exponential tail is fitted to the exceedances of ``log(raw)`` (a Pareto tail in raw units), so
scores keep rising smoothly past the largest normal error seen instead of sticking at 1.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> cal = Calibrator.fit(rng.lognormal(size=20000))
>>> fresh = cal.transform(rng.lognormal(size=20000))
>>> abs(float((fresh > 0.99).mean()) - 0.01) < 0.003
True
>>> float(cal.transform(np.array([1e9]))[0]) > 0.9999
True
>>> float(cal.transform(np.array([1e300, np.inf]))[1]) < 1.0
True

Near 1 the score itself runs out of digits (and a float rounds it to 1), so the tail is also
read in *nines*, ``-log10`` of the share of normal traffic scoring as high: 3 nines is one
normal packet in a thousand, 6 one in a million, and past the largest normal error the count
keeps growing with the error instead of stopping at 1.

>>> n = cal.nines(np.array([1e9, 1e12, 1e15]))
>>> bool(n[0] < n[1] < n[2]), round(float(nines_of(0.999)), 6)
(True, 3.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

MIN_CALIBRATION = 1000  # held-back normal packets needed for a meaningful calibration
_EPS = 1e-12
LUT_SIZE = 1024  # points per input in InputSurprise's lookup table
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_LOG_MAX = math.log(np.finfo(np.float64).max)  # an infinite error counts as the largest
_BELOW_ONE = float(np.nextafter(1.0, 0.0))  # the largest float64 below 1
_LN10 = math.log(10.0)
RANGE_WEIGHT = 3.0  # nats per scaled unit past the training range (see SurpriseCombiner)


@dataclass
class Calibrator:
    knots: np.ndarray  # float64 [K], log raw error at probabilities ``probs``, non-decreasing
    probs: np.ndarray  # float64 [K], 0 .. tail_prob
    tail_prob: float  # probability where the fitted tail takes over
    tail_scale: float  # mean exceedance of log(raw) above knots[-1] (exponential tail)
    n: int  # held-back normal packets it was fitted on

    @classmethod
    def fit(cls, raw: np.ndarray, tail_prob: float = 0.99, n_knots: int = 2001) -> Calibrator:
        """Fit on raw errors of held-back normal traffic (never the training packets)."""
        raw = np.asarray(raw, dtype=np.float64)
        raw = raw[np.isfinite(raw)]
        if len(raw) < MIN_CALIBRATION:
            raise ValueError(f"calibration needs at least {MIN_CALIBRATION} normal packets, "
                             f"got {len(raw)}")
        x = np.log(np.maximum(raw, _EPS))
        probs = np.linspace(0.0, tail_prob, n_knots)
        knots = np.quantile(x, probs)
        exceed = x[x > knots[-1]] - knots[-1]
        scale = float(exceed.mean()) if len(exceed) else 1.0
        return cls(knots=knots, probs=probs, tail_prob=tail_prob, tail_scale=max(scale, 1e-3),
                   n=len(raw))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """float64 calibrated scores, same shape as ``raw``, below 1: the tail never reaches 1,
        and a float would round its far end up to it, so a threshold of 1 flags nothing."""
        return scores_of(self.nines(raw))

    def nines(self, raw: np.ndarray) -> np.ndarray:
        """float64 ``-log10(1 - score)``: how rare this high a raw error is on normal traffic,
        in powers of ten; past the tail it grows with ``log(raw)`` without bound, so the far
        tail keeps its order where the score has no digits left."""
        x = np.log(np.maximum(np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=np.inf), _EPS))
        u = self.knots[-1]
        body = -np.log10(1.0 - np.interp(x, self.knots, self.probs))
        tail = (-math.log10(1.0 - self.tail_prob)
                + (np.minimum(np.maximum(x, u), _LOG_MAX) - u) / (self.tail_scale * _LN10))
        return np.where(x > u, tail, body)

    def state(self) -> dict:
        return {"knots": self.knots.tolist(), "probs": self.probs.tolist(),
                "tail_prob": self.tail_prob, "tail_scale": self.tail_scale, "n": self.n}

    @classmethod
    def from_state(cls, state: dict) -> Calibrator:
        knots = np.asarray(state["knots"], dtype=np.float64)
        probs = np.asarray(state["probs"], dtype=np.float64)
        if knots.shape != probs.shape or len(knots) < 2 or np.any(np.diff(knots) < 0):
            raise ValueError("calibration table is malformed")
        return cls(knots=knots, probs=probs, tail_prob=float(state["tail_prob"]),
                   tail_scale=float(state["tail_scale"]), n=int(state["n"]))


def scores_of(nines: np.ndarray) -> np.ndarray:
    """Calibrated scores ``1 - 10**-nines``, kept below 1.

    >>> scores_of(np.array([0.0, 3.0, 400.0])).tolist() == [0.0, 0.999, float(np.nextafter(1, 0))]
    True
    """
    return np.minimum(-np.expm1(-np.asarray(nines, dtype=np.float64) * _LN10), _BELOW_ONE)


def nines_of(score: float | np.ndarray) -> np.ndarray:
    """The nines of a calibrated score or threshold: ``-log10(1 - score)``."""
    return -np.log10(1.0 - np.asarray(score, dtype=np.float64))


def threshold_for(false_alarm_rate: float) -> float:
    """The calibrated threshold giving ``false_alarm_rate`` on normal traffic.

    >>> threshold_for(0.001)
    0.999
    """
    assert 0.0 < false_alarm_rate < 1.0
    return round(1.0 - false_alarm_rate, 12)


@dataclass
class InputSurprise:
    """How rare each model input's reconstruction error is on normal traffic, in nats.

    Per input, the same empirical-CDF-with-exponential-tail as :class:`Calibrator`, read as a
    surprise ``-log(P(normal error >= e))``: 0 for a typical error, about 6.9 for one normal
    packet in a thousand, growing linearly in ``log(e)`` past the tail. Every input then counts
    on the same scale, whatever its units or its usual noise; :class:`SurpriseCombiner` turns a
    packet's surprises into one anomaly value.

    >>> rng = np.random.default_rng(0)
    >>> s = InputSurprise.fit(rng.lognormal(size=(5000, 2)))
    >>> [round(float(v), 1) for v in s.transform(np.array([[1.0, 1e6]]))[0]]
    [0.7, 42.8]
    """

    knots: np.ndarray  # float64 [k, K], log error at ``probs`` per input
    probs: np.ndarray  # float64 [K]
    tail_prob: float
    tail_scale: np.ndarray  # float64 [k]
    _lut: torch.Tensor | None = field(default=None, repr=False)  # built on first use

    @classmethod
    def fit(cls, errors: np.ndarray, tail_prob: float = 0.99, n_knots: int = 257,
            min_tail_scale: np.ndarray | float = 0.0) -> InputSurprise:
        """``min_tail_scale`` per input: the least log error per nat of surprise past the tail.
        A categorical input's log error is its cross-entropy in nats, and no value can be more
        surprising than it is improbable: 1.0 for those. Without the floor, an input whose top
        percent of training errors is rounding noise (the decoder status is clean on 99.96% of
        packets) extrapolates that noise, and a rare but normal value scores 100 nats."""
        cals = [Calibrator.fit(errors[:, j], tail_prob, n_knots) for j in range(errors.shape[1])]
        scale = np.maximum([c.tail_scale for c in cals], min_tail_scale)
        return cls(knots=np.stack([c.knots for c in cals]), probs=cals[0].probs,
                   tail_prob=tail_prob, tail_scale=scale)

    def transform(self, errors: np.ndarray) -> np.ndarray:
        """float32 [n, k] surprise of each input's error.

        The body is read from a table of ``LUT_SIZE`` points per input, evenly spaced in log
        error, with linear interpolation: one gather for all inputs instead of a search per
        input (the table's own error is far below the calibration's sampling noise). Computed
        with torch, whose element-wise operations use the threads torch is given: on two
        cores this costs half of numpy's single-threaded passes.
        """
        if self._lut is None:
            self._build_lut()
        x = torch.tensor(errors, dtype=torch.float32)  # a copy, worked on in place
        # a missing or infinite error is the largest there is: far past the tail, still finite
        x.nan_to_num_(nan=_FLOAT32_MAX).clamp_(min=_EPS).log_()
        pos = torch.sub(x, self._lo).mul_(self._inv_step).clamp_(0.0, LUT_SIZE - 1.001)
        at = pos.to(torch.int32)  # the table point below (pos is not negative)
        pos -= at  # the fraction between two table points
        at = at.add_(self._row).view(-1)  # index into the flattened table
        # index_select, not take: 2.4x faster here
        body = self._lut.index_select(0, at).view(pos.shape)
        body += self._slope.index_select(0, at).view(pos.shape).mul_(pos)
        # past the table: the fitted tail
        tail = x.sub_(self._hi).mul_(self._inv_scale).add_(self._base)
        return torch.where(tail > self._base, tail, body).numpy()

    def _build_lut(self) -> None:
        lo, hi = self.knots[:, 0], self.knots[:, -1]
        grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, LUT_SIZE)[None, :]
        probs = np.stack([np.interp(grid[j], self.knots[j], self.probs)
                          for j in range(len(self.knots))])
        lut = (-np.log1p(-probs)).astype(np.float32)  # [k, LUT_SIZE]
        slope = np.diff(lut, axis=1, append=lut[:, -1:])  # to the next point; 0 past the last
        self._lut = torch.from_numpy(lut.ravel())
        self._slope = torch.from_numpy(slope.ravel())
        self._row = torch.arange(len(self.knots), dtype=torch.int32).mul_(LUT_SIZE)[None, :]
        self._lo, self._hi = (torch.from_numpy(v.astype(np.float32)) for v in (lo, hi))
        self._inv_step = torch.from_numpy(
            ((LUT_SIZE - 1) / np.maximum(hi - lo, 1e-9)).astype(np.float32))
        self._inv_scale = torch.from_numpy((1.0 / self.tail_scale).astype(np.float32))
        self._base = float(np.float32(-np.log1p(-self.tail_prob)))

    def state(self) -> dict:
        return {"knots": self.knots.tolist(), "probs": self.probs.tolist(),
                "tail_prob": self.tail_prob, "tail_scale": self.tail_scale.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> InputSurprise:
        knots = np.asarray(state["knots"], dtype=np.float64)
        probs = np.asarray(state["probs"], dtype=np.float64)
        scale = np.asarray(state["tail_scale"], dtype=np.float64)
        if knots.ndim != 2 or knots.shape[1] != len(probs) or len(scale) != len(knots):
            raise ValueError("per-input calibration table is malformed")
        return cls(knots=knots, probs=probs, tail_prob=float(state["tail_prob"]),
                   tail_scale=scale)


@dataclass
class SurpriseCombiner:
    """One raw anomaly value per packet from its per-input surprises: the squared Mahalanobis
    distance of the surprise vector from normal traffic's mean.

    Inputs are far from independent (the same statistic over three windows, a host's rate and
    its pair's rate), so a plain sum counts one deviation several times, while an input that
    is quiet on normal traffic and suddenly surprising (a MAC binding that moved, replies
    nobody asked for) is drowned by the noise of the others. The inverse covariance weighs
    each input by how unusual its surprise is *given the others*. A ridge keeps it stable
    when inputs hardly vary in training.

    Surprise reads an error on a log scale, and a rate's error is itself that of a logged
    rate: a DHCP flood bringing 41 new addresses a second behind one MAC, where normal traffic
    never passed 6, is only about two nats more surprising than a normal tail value. So the
    distance past the range of values seen in training (in scaled units, summed over the
    numeric inputs) is added as a distance of its own, ``range_weight`` nats per unit.

    >>> rng = np.random.default_rng(0)
    >>> c = SurpriseCombiner.fit(rng.exponential(size=(5000, 3)))
    >>> typical, odd = c.combine(np.array([[1.0, 1.0, 1.0], [1.0, 9.0, 1.0]]))
    >>> bool(odd > 10 * typical)
    True
    >>> inside, beyond = c.combine(np.ones((2, 3)), excess=np.array([0.0, 2.0]))
    >>> round(float(beyond - inside), 3)
    36.0
    """

    mean: np.ndarray  # float32 [k], mean surprise of each input on normal traffic
    precision: np.ndarray  # float32 [k, k], inverse of the ridged covariance
    range_weight: float = 0.0  # nats of distance per scaled unit past the training range

    @classmethod
    def fit(cls, surprise: np.ndarray, ridge: float = 1.0,
            range_weight: float = RANGE_WEIGHT) -> SurpriseCombiner:
        s = np.asarray(surprise, dtype=np.float64)
        cov = np.atleast_2d(np.cov(s, rowvar=False)) + ridge * np.eye(s.shape[1])
        return cls(mean=s.mean(axis=0).astype(np.float32),
                   precision=np.linalg.inv(cov).astype(np.float32),
                   range_weight=float(range_weight))

    def combine(self, surprise: np.ndarray, excess: np.ndarray | None = None) -> np.ndarray:
        """float32 [n] raw anomaly values (0 for the typical normal packet) from surprises
        [n, k] and each packet's distance past the training range ``excess`` [n] (scaled
        units; none: 0), computed with torch's threads (numpy's BLAS would keep a spinning
        thread per core of its own). Surprises come as they count
        (:func:`~netids.detect.counted.as_counted`)."""
        d = torch.from_numpy(np.asarray(surprise, dtype=np.float32)) - torch.from_numpy(self.mean)
        raw = torch.linalg.vecdot(d @ torch.from_numpy(self.precision), d)
        if excess is not None and self.range_weight > 0:
            far = torch.from_numpy(np.asarray(excess, dtype=np.float32)) * self.range_weight
            raw += far * far
        return raw.numpy()

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "precision": self.precision.tolist(),
                "range_weight": self.range_weight}

    @classmethod
    def from_state(cls, state: dict) -> SurpriseCombiner:
        mean = np.asarray(state["mean"], dtype=np.float32)
        precision = np.asarray(state["precision"], dtype=np.float32)
        if mean.ndim != 1 or precision.shape != (len(mean), len(mean)):
            raise ValueError("surprise combiner is malformed")
        # checkpoints from before the range term were calibrated without it
        return cls(mean=mean, precision=precision,
                   range_weight=float(state.get("range_weight", 0.0)))
