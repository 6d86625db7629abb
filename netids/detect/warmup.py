"""A sensor that just started asks for more evidence.

When a stream starts, every host, conversation and MAC address is new to the context, and
conversations are joined in the middle: the first seconds look like a sweep, a scan or odd
sizes to any model, whatever network it learnt. Measured on five held-out cases, most false
flags of a capture fell in its first 10 s (docs/drift.md). So for ``WARMUP_SECONDS`` after
the stream's first packet a packet's score is discounted: ``WARMUP_NINES`` nines at the
first packet (one in a million normal packets instead of one in a thousand at the default
threshold), falling linearly to none. 10 s is ten half-lives of the context's 1 s window
and one of its 10 s window. A flood or a fast scan scores tens of nines and is still
flagged; what is given up is the weakest evidence in a sensor's first seconds.

A live capture discounts its start (the sensor starts inside a running network);
``score`` and ``evaluate`` judge a capture file from its first packet (``evaluate --warm-up``
discounts, as ``bench/drift.py`` does): a short attack capture often starts with its attack,
and its scan must not be discounted away.
"""

from __future__ import annotations

import numpy as np

WARMUP_SECONDS = 10.0
WARMUP_NINES = 3.0


def warmup_discount(ts: np.ndarray, started: float | None) -> np.ndarray | None:
    """Nines to take off each packet's score (None: the stream is past its warm-up, or its
    start is not known). ``started``: the stream's first packet time.

    >>> warmup_discount(np.array([100.0, 105.0, 110.0]), 100.0).tolist()
    [3.0, 1.5, 0.0]
    >>> warmup_discount(np.array([200.0]), 100.0) is None
    True
    """
    if started is None or len(ts) == 0 or ts.min() - started >= WARMUP_SECONDS:
        return None
    return WARMUP_NINES * np.clip(1.0 - (ts - started) / WARMUP_SECONDS, 0.0, 1.0)
