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
>>> round(float((fresh > 0.99).mean()), 3)
0.01
>>> float(cal.transform(np.array([1e9]))[0]) > 0.9999
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_CALIBRATION = 1000  # held-back normal packets needed for a meaningful calibration
_EPS = 1e-12


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
        """float32 calibrated scores, same shape as ``raw``."""
        x = np.log(np.maximum(np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=np.inf), _EPS))
        u = self.knots[-1]
        body = np.interp(x, self.knots, self.probs)
        tail = 1.0 - (1.0 - self.tail_prob) * np.exp(-(np.maximum(x, u) - u) / self.tail_scale)
        return np.where(x > u, tail, body).astype(np.float32)

    def raw_at(self, score: float) -> float:
        """The raw error whose calibrated score is ``score`` (inverse of :meth:`transform`)."""
        if score <= self.tail_prob:
            return float(np.exp(np.interp(score, self.probs, self.knots)))
        x = self.knots[-1] - self.tail_scale * np.log((1.0 - score) / (1.0 - self.tail_prob))
        return float(np.exp(x))

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


def threshold_for(false_alarm_rate: float) -> float:
    """The calibrated threshold giving ``false_alarm_rate`` on normal traffic.

    >>> threshold_for(0.001)
    0.999
    """
    assert 0.0 < false_alarm_rate < 1.0
    return round(1.0 - false_alarm_rate, 12)
