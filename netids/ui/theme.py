"""Severity colours, the small CSS the pages share, and the event tables' columns and rows.

Rows of the event tables are coloured by how anomalous they are *at the current threshold*:
an event whose highest score reaches the threshold is "anomalous" (red); below it, a score
from ``Controller.suspicious_at()`` is "suspicious" (orange); lower scores are "normal", shaded
from white to yellow as the score rises. Moving the threshold therefore recolours the table.

>>> display_severity(0.95, 0.9), display_severity(0.95, 0.99), display_severity(0.2, 0.99)
('anomalous', 'suspicious', 'normal')
>>> row_class(0.95, 0.99), row_class(0.1, 0.99), row_class(0.45, 0.99)
('nid-suspicious', 'nid-normal-1', 'nid-normal-4')
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from netids.controller import Controller

SUSPICIOUS_AT = Controller.suspicious_at()
NORMAL_SHADES = 5  # white -> yellow steps for scores below SUSPICIOUS_AT

SEVERITY_COLORS = {"normal": "#fde047", "suspicious": "#f97316", "anomalous": "#dc2626"}

CSS = """
.nid-anomalous { background-color: rgba(220, 38, 38, 0.30) !important; }
.nid-suspicious { background-color: rgba(249, 115, 22, 0.28) !important; }
.nid-normal-0 { background-color: rgba(255, 255, 255, 0) !important; }
.nid-normal-1 { background-color: rgba(253, 224, 71, 0.08) !important; }
.nid-normal-2 { background-color: rgba(253, 224, 71, 0.16) !important; }
.nid-normal-3 { background-color: rgba(253, 224, 71, 0.26) !important; }
.nid-normal-4 { background-color: rgba(253, 224, 71, 0.38) !important; }
.nid-counter .q-card__section { padding: 8px 14px; }
.nid-count { font-size: 1.6rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.nid-mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }
"""


def display_severity(score: float, threshold: float) -> str:
    """'anomalous' at or above the threshold, else 'suspicious' or 'normal' by score."""
    if score >= threshold:
        return "anomalous"
    return "suspicious" if score >= SUSPICIOUS_AT else "normal"


def row_class(score: float, threshold: float) -> str:
    """CSS class of a table row (see CSS above)."""
    status = display_severity(score, threshold)
    if status != "normal":
        return f"nid-{status}"
    step = min(NORMAL_SHADES - 1, int(max(score, 0.0) / SUSPICIOUS_AT * NORMAL_SHADES))
    return f"nid-normal-{step}"


ROW_CLASSES = ("nid-anomalous", "nid-suspicious",
               *(f"nid-normal-{i}" for i in range(NORMAL_SHADES)))


def row_class_rules() -> dict[str, str]:
    """AG Grid ``rowClassRules`` giving each row the class in its ``css`` field; unlike
    ``getRowClass`` they are re-evaluated when a row's data changes (threshold moved)."""
    return {f":{name}": f"params => params.data.css === '{name}'" for name in ROW_CLASSES}


def event_cells(e: Any) -> dict[str, Any]:
    """The cells a live event (from ``Controller.live.events``) and a stored one (a row of
    ``query_events``) fill alike, by the column ids of :func:`event_grid_options`; times and
    severity differ."""
    return {
        "id": e.id,
        "src": e.src or f"{e.src_count} sources",
        "src_port": e.src_port,
        "dst": e.dst or f"{e.dst_count} targets",
        "dst_port": e.dst_port,
        "proto": e.proto,
        "kind": e.kind,
        "packets": e.packets,
        "score": round(e.score_max, 6),
        "explanation": e.explanation,
    }


def event_grid_options(*, status: tuple[str, str], time_width: int, sensor: bool,
                       column_filters: bool, empty: str) -> dict[str, Any]:
    """AG Grid options of an event table (live and history), coloured by severity."""
    columns: list[tuple[str, str, dict[str, Any]]] = [
        ("last_seen", "Last seen (UTC)", {"sort": "desc", "minWidth": time_width}),
        ("first_seen", "First seen (UTC)", {"minWidth": time_width}),
        (*status, {"minWidth": 105}),
        ("score", "Score", {"minWidth": 95, "type": "numericColumn"}),
        ("kind", "Kind", {"minWidth": 110}),
        ("src", "Source", {"minWidth": 130}),
        ("src_port", "Src port", {"minWidth": 90, "type": "numericColumn"}),
        ("dst", "Destination", {"minWidth": 130}),
        ("dst_port", "Dst port", {"minWidth": 90, "type": "numericColumn"}),
        ("proto", "Proto", {"minWidth": 80}),
        ("packets", "Packets", {"minWidth": 90, "type": "numericColumn"}),
        *([("sensor", "Sensor", {"minWidth": 90})] if sensor else []),
        ("explanation", "Why", {"minWidth": 260, "tooltipField": "explanation"}),
    ]
    return {
        "columnDefs": [{"field": f, "headerName": h, **extra} for f, h, extra in columns],
        "defaultColDef": {"sortable": True, "resizable": True,
                          **({"filter": True} if column_filters else {})},
        "rowData": [],
        ":getRowId": "params => params.data.id",
        "rowClassRules": row_class_rules(),
        "animateRows": False,
        "suppressCellFocus": True,
        "overlayNoRowsTemplate": empty,
    }


def event_rows(updates: Iterable[Any], threshold: float, limit: int) -> list[dict]:
    """Live table rows (``Controller.live.events``): the latest state of each event, newest
    first, at most ``limit``."""
    latest: dict[str, Any] = {}
    for u in updates:
        latest[u.id] = u
    newest = sorted(latest.values(), key=lambda u: (u.last_seen, u.first_seen), reverse=True)
    return [event_row(u, threshold) for u in newest[:limit]]


def event_row(u: Any, threshold: float) -> dict:
    """One row of a live event (``Controller.live.events``): plain values only (AG Grid shows
    them as text)."""
    return {
        **event_cells(u),
        "first_seen": _time(u.first_seen),
        "last_seen": _time(u.last_seen),
        "status": display_severity(u.score_max, threshold),
        "css": row_class(u.score_max, threshold),
    }


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%m-%d %H:%M:%S")
