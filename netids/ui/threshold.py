"""The dashboard's threshold slider, which moves in "nines", and a threshold in words."""

from __future__ import annotations

import math

SLIDER_TOP = 5.0  # the slider's right end: threshold 1 - 10**-5, one normal packet in 100,000
SLIDER_STEP = 0.05  # about 12% more or fewer false alarms a step


def slider_position(threshold: float) -> float:
    """Where the slider sits for a threshold: ``-log10(1 - threshold)``, the number of nines,
    on the slider's grid. Calibrated thresholds that matter (1% down to 0.001% of normal
    traffic above) all sit above 0.99: on a linear 0..1 slider they would share its last pixel.

    >>> slider_position(0.0), slider_position(0.9), slider_position(0.999), slider_position(1.0)
    (0.0, 1.0, 3.0, 5.0)
    """
    nines = -math.log10(max(1.0 - threshold, 10.0 ** -SLIDER_TOP))
    return round(round(min(max(nines, 0.0), SLIDER_TOP) / SLIDER_STEP) * SLIDER_STEP, 2)


def slider_threshold(position: float) -> float:
    """The threshold at a slider position (inverse of :func:`slider_position`).

    >>> slider_threshold(0.0), slider_threshold(2.0), slider_threshold(3.5)
    (0.0, 0.99, 0.999684)
    """
    return round(1.0 - 10.0 ** -min(max(position, 0.0), SLIDER_TOP), 6)


def format_threshold(threshold: float) -> str:
    """Threshold text with the digits that tell thresholds near 1 apart.

    >>> [format_threshold(t) for t in (0.5, 0.498813, 0.999, 0.9995, 0.999684, 0.99999)]
    ['0.500', '0.499', '0.999', '0.9995', '0.99968', '0.99999']
    """
    nines = -math.log10(max(1.0 - threshold, 1e-9))
    text = f"{threshold:.{min(max(3, math.floor(nines + 1e-9) + 2), 6)}f}"
    while len(text) > 5 and text.endswith("0"):
        text = text[:-1]
    return text


def adapted_text(scale: float, learned: int) -> str:
    """The line under the threshold once it follows this network ('' until it has moved).

    >>> adapted_text(1.27, 10_424)
    'threshold adapted to this network: ×1.27 after 10,424 clean packets'
    >>> adapted_text(1.0, 10_424)
    ''
    """
    if scale <= 1.0:
        return ""
    return f"threshold adapted to this network: ×{scale:.2f} after {learned:,} clean packets"


def adapted_tooltip(scale: float) -> str:
    """What the adapted line means, on hover."""
    return (f"This network's clean traffic sits higher than the model's training traffic: "
            f"every raw error is divided by {scale:.2f} before calibration, so the threshold "
            "keeps its promised share of false alarms here. It moves by at most 2× an hour, "
            "between 1× and 8×, learns only from packets of hosts with no recent flag, and is "
            "kept across restarts; --fixed-threshold turns it off.")


def false_alarm_text(threshold: float) -> str:
    """What a calibrated threshold means, in false alarms.

    >>> false_alarm_text(0.999), false_alarm_text(0.0)
    ('≈ 0.1% of normal traffic flagged', 'all traffic flagged')
    """
    share = 1.0 - threshold
    if share >= 1.0:
        return "all traffic flagged"
    return f"≈ {share * 100:.2g}% of normal traffic flagged"
