"""Level colours, the legend, the small CSS the pages share, and the event tables' columns and
rows.

Rows of the event tables are coloured by their level (``Controller.grade``): under the
threshold an event is 'normal' or 'suspicious'; at or past it 'low', 'medium', 'high' or
'critical' by how far past the threshold it scores, in nines, and whether its kind names an
attack pattern. The live table grades at the current threshold, so moving the slider
recolours it; the history grades each event at the threshold it was detected with.

>>> row_class(0.95, 0.9, "unusual size"), row_class(0.95, 0.99, "flood")
('nid-low', 'nid-suspicious')
>>> row_class(0.99999, 0.999, "port scan"), row_class(0.1, 0.99, "flood")
('nid-high', 'nid-normal')
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from nicegui import ui

from netids.controller import Controller

GRADES = Controller.grades  # in rising order
FLAGGED = GRADES[2:]  # the levels at or past the threshold
# (colour, what the level means): the legend under each event table
LEVELS = {
    "critical": ("#9f1239", "an attack pattern 3+ nines past the threshold"),
    "high": ("#dc2626", "3+ nines past, or an attack pattern 1+ past"),
    "medium": ("#f97316", "1+ nine past, or an attack pattern just past"),
    "low": ("#f59e0b", "just past the threshold (under 10x rarer)"),
    "suspicious": ("#facc15", "under the threshold, score 0.5 or more"),
    "normal": ("#94a3b8", "under 0.5"),
}
# badge colours of the stored severity (event detail)
SEVERITY_COLORS = {"normal": "#94a3b8", "suspicious": "#facc15", "anomalous": "#dc2626"}
ALPHA = {"critical": 0.42, "high": 0.30, "medium": 0.26, "low": 0.20, "suspicious": 0.16,
         "normal": 0.0}


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


CSS = "".join(
    f".nid-{name} {{ background-color: {_rgba(colour, ALPHA[name])} !important; "
    f"box-shadow: inset 4px 0 0 {colour}; }}\n"
    f".nid-chip-{name} {{ background-color: {colour}; }}\n"
    for name, (colour, _) in LEVELS.items()) + """
.nid-counter .q-card__section { padding: 8px 14px; }
.nid-count { font-size: 1.6rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.nid-mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }
.nid-chip { display: inline-block; width: 12px; height: 12px; border-radius: 3px; }
.nid-events { --ag-cell-horizontal-padding: 6px; --ag-header-column-resize-handle-width: 1px; }
.nid-events .ag-header-cell-menu-button { position: absolute; right: 2px; }
.nid-events .ag-header-cell:not(:hover) .ag-header-cell-menu-button { display: none; }
.nid-events .ag-cell { display: flex; align-items: center; line-height: 1.35; }
.nid-events .ag-right-aligned-cell { justify-content: flex-end; }
.nid-events .nid-address { word-break: break-all; }
.nid-events .nid-why { padding-top: 5px; padding-bottom: 5px; }
.nid-events .nid-why .ag-cell-value { display: -webkit-box; -webkit-line-clamp: 2;
  -webkit-box-orient: vertical; overflow: hidden; }
.nid-upload { width: 100%; max-height: none; box-shadow: none; background: transparent;
  border: 1px dashed rgba(127, 127, 127, 0.6); border-radius: 6px; }
.nid-upload .q-uploader__header { background: transparent; color: inherit; }
.nid-upload .q-uploader__subtitle { display: none; }
.nid-upload .q-uploader__list { min-height: 0; padding: 0; }
"""


def row_class(score: float, threshold: float, kind: str) -> str:
    """CSS class of a table row (see CSS above): its level at ``threshold``."""
    return f"nid-{Controller.grade(score, threshold, kind)}"


def row_class_rules() -> dict[str, str]:
    """AG Grid ``rowClassRules`` giving each row the class in its ``css`` field; unlike
    ``getRowClass`` they are re-evaluated when a row's data changes (threshold moved)."""
    return {f":nid-{name}": f"params => params.data.css === 'nid-{name}'" for name in GRADES}


def legend() -> ui.row:
    """The colour legend of the event tables: each level, its colour and what it means."""
    with ui.row().classes("nid-legend w-full items-center gap-x-4 gap-y-1 text-xs") \
            .mark("level-legend") as row:
        ui.label("Level:").classes("font-semibold")
        for name, (_, meaning) in LEVELS.items():
            with ui.row().classes("items-center gap-1 no-wrap").mark(f"legend-{name}"):
                ui.element("span").classes(f"nid-chip nid-chip-{name}")
                ui.label(name).classes("font-medium")
                ui.label(meaning).classes("opacity-70")
        ui.label("A nine is a factor of 10: 3 nines past 0.999 is 0.999999. Attack patterns: "
                 "scans, sweeps, floods, spoofing, malformed packets.").classes("opacity-70")
    return row


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
        "nines": round(Controller.nines(e.score_max), 1),
        "explanation": e.explanation,
    }


# long (IPv6) addresses wrap inside a bounded column instead of pushing "Why" off screen
ADDRESS = {"maxWidth": 170, "wrapText": True, "autoHeight": True, "cellClass": "nid-address"}
# a date and time on two lines (the why's two lines make rows that tall anyway)
WRAPPED_TIME = {"maxWidth": 104, "wrapText": True, "autoHeight": True}


def event_grid_options(*, sensor: bool, column_filters: bool, wrap_times: bool,
                       empty: str) -> dict[str, Any]:
    """AG Grid options of an event table (live and history), coloured by level.

    Every column but "Why" is sized to its content and header when rows arrive (until the
    user resizes one by hand); "Why" takes the rest of the width and wraps, its full text also
    on hover.
    """
    times: dict[str, Any] = {"headerTooltip": "packet time, UTC",
                             **(WRAPPED_TIME if wrap_times else {})}
    columns: list[tuple[str, str, dict[str, Any]]] = [
        ("last_seen", "Last seen", {"sort": "desc", **times}),
        ("first_seen", "First seen", times),
        ("level", "Level", {}),
        ("score", "Score", {"type": "numericColumn"}),
        ("nines", "Nines", {"type": "numericColumn",
                            "headerTooltip": "-log10(1 - score): 3 is 0.999, 6 is 0.999999"}),
        ("kind", "Kind", {}),
        ("src", "Source", ADDRESS),
        ("src_port", "Port", {"type": "numericColumn", "headerTooltip": "source port"}),
        ("dst", "Destination", ADDRESS),
        ("dst_port", "Port", {"type": "numericColumn", "headerTooltip": "destination port"}),
        ("proto", "Proto", {}),
        ("packets", "Packets", {"type": "numericColumn"}),
        *([("sensor", "Sensor", {})] if sensor else []),
        ("explanation", "Why", {"flex": 1, "minWidth": 180, "wrapText": True,
                                "autoHeight": True, "cellClass": "nid-why",
                                "tooltipField": "explanation"}),
    ]
    sized = [f for f, _, _ in columns if f != "explanation"]
    return {
        "columnDefs": [{"field": f, "headerName": h, **extra} for f, h, extra in columns],
        "defaultColDef": {"sortable": True, "resizable": True, "minWidth": 50,
                          **({"filter": True} if column_filters else {})},
        "rowData": [],
        ":getRowId": "params => params.data.id",
        "rowClassRules": row_class_rules(),
        "animateRows": False,
        "columnMenu": "legacy",  # menu (and filter) icons only on hover: headers keep the room
        "suppressCellFocus": True,
        "tooltipShowDelay": 300,
        "autoSizePadding": 5,  # pixels beside a column's widest cell (AG Grid's default 20)
        "overlayNoRowsTemplate": empty,
        "context": {"userSized": False},
        ":onColumnResized": "p => { if (p.source === 'uiColumnResized' && p.finished) "
                            "p.context.userSized = true; }",
        ":onRowDataUpdated": f"p => {{ if (!p.context.userSized) "
                             f"p.api.autoSizeColumns({sized}); }}",
        ":onFirstDataRendered": f"p => p.api.autoSizeColumns({sized})",
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
        "level": Controller.grade(u.score_max, threshold, u.kind),
        "css": row_class(u.score_max, threshold, u.kind),
    }


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%m-%d %H:%M:%S")
