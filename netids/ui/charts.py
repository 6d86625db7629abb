"""The ECharts options of every page's charts, and their dark/light colours.

Pages build a chart from one of these dicts and later mutate ``chart.options`` from a timer
(NiceGUI's way); nothing here touches the browser.
"""

from __future__ import annotations

import math

TIME_AXIS = {"type": "time", "axisLabel": {"hideOverlap": True}, "splitNumber": 4}
MAX_NINES = 16.0  # a float's 1 - score has no digits left past this


def apply_chart_theme(options: dict, dark: bool) -> None:
    """Set an ECharts option dict's text and grid-line colours for dark or light mode."""
    text = "#e5e7eb" if dark else "#374151"
    lines = "#374151" if dark else "#e5e7eb"
    options["backgroundColor"] = "transparent"
    options["textStyle"] = {"color": text}
    if "title" in options:
        options["title"].setdefault("textStyle", {})["color"] = text
    if "legend" in options:
        options["legend"]["textStyle"] = {"color": text}
    for axis in ("xAxis", "yAxis"):
        if axis in options:
            options[axis]["axisLabel"] = {**options[axis].get("axisLabel", {}), "color": text}
            options[axis]["splitLine"] = {"lineStyle": {"color": lines}}


# -- the live dashboard ------------------------------------------------------------------------
def rate_options() -> dict:
    return {**_base("Packets per second"), "xAxis": TIME_AXIS,
            "yAxis": {"type": "value", "minInterval": 1},
            "series": [{"type": "line", "name": "packets", "showSymbol": False, "data": [],
                        "areaStyle": {"opacity": 0.15}, "color": "#3b82f6"}]}


def protocol_options() -> dict:
    return {**_base("Protocols"), "xAxis": {"type": "category", "data": []},
            "yAxis": {"type": "value"},
            "series": [{"type": "bar", "name": "packets", "data": [], "color": "#14b8a6"}]}


def score_options() -> dict:
    return {**_base("Highest anomaly score per second, in nines (3 = 0.999)"), "xAxis": TIME_AXIS,
            "yAxis": {"type": "value", "min": 0},
            "series": [{"type": "line", "name": "max score", "showSymbol": False, "data": [],
                        "color": "#ef4444",
                        "markLine": {"symbol": "none", "silent": True,
                                     "lineStyle": {"type": "dashed", "color": "#f59e0b"},
                                     "label": {"formatter": "threshold {c}",
                                               "position": "insideEndTop"},
                                     "data": []}}]}


def nines(score: float) -> float:
    """A calibrated score on the threshold slider's scale: ``-log10(1 - score)``, so 0.99,
    0.999 and 0.9999 are 2, 3 and 4, not one flat line at the top of a 0..1 axis.

    >>> [nines(s) for s in (0.0, 0.99, 0.999, 0.9999, 1.0)]
    [0.0, 2.0, 3.0, 4.0, 16.0]
    """
    return round(min(math.log10(1.0 / max(1.0 - score, 1e-16)), MAX_NINES), 3)


def _base(title: str) -> dict:
    return {
        "animation": False,
        "backgroundColor": "transparent",
        "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 13}},
        "grid": {"left": 50, "right": 18, "top": 40, "bottom": 30},
        "tooltip": {"trigger": "axis"},
    }


# -- history and training ----------------------------------------------------------------------
def minute_options() -> dict:
    return {"animation": False, "backgroundColor": "transparent",
            "title": {"text": "Events per minute", "left": 8, "top": 4,
                      "textStyle": {"fontSize": 13}},
            "grid": {"left": 45, "right": 15, "top": 40, "bottom": 30},
            "tooltip": {"trigger": "axis"}, "xAxis": {"type": "category", "data": []},
            "yAxis": {"type": "value", "minInterval": 1},
            "series": [{"type": "bar", "name": "events", "data": [], "color": "#f59e0b",
                        "barMaxWidth": 40}]}


def top_options(title: str, color: str) -> dict:
    return {"animation": False, "backgroundColor": "transparent",
            "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 13}},
            "grid": {"left": 110, "right": 15, "top": 40, "bottom": 25},
            "tooltip": {"trigger": "axis"}, "xAxis": {"type": "value", "minInterval": 1},
            "yAxis": {"type": "category", "data": []},
            "series": [{"type": "bar", "name": "events", "data": [], "color": color}]}


def loss_options() -> dict:
    return {"animation": False, "backgroundColor": "transparent",
            "title": {"text": "Loss per epoch", "left": 8, "top": 4,
                      "textStyle": {"fontSize": 13}},
            "legend": {"top": 4, "right": 10},
            "grid": {"left": 55, "right": 15, "top": 40, "bottom": 30},
            "tooltip": {"trigger": "axis"},
            "xAxis": {"type": "category", "name": "epoch", "data": []},
            "yAxis": {"type": "log"},
            "series": [{"type": "line", "name": "training", "data": [], "color": "#3b82f6"},
                       {"type": "line", "name": "validation", "data": [], "color": "#f59e0b"}]}
