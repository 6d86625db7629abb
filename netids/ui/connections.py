"""The history page's Connections view: stored connection records (Zeek's conn.log fields),
filtered, paged and sorted by the database, exported as Zeek TSV or CSV.

Opened from an event's detail it lists the connections behind that event (same protocol,
endpoints and ports, overlapping in time: :mod:`netids.store.conn_queries`). Like the events
view, every query runs in ``run.io_bound`` and the browser holds one page of rows; cells are
plain text (AG Grid escapes them), never HTML.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from nicegui import ui

from netids.controller import Controller
from netids.store.conn_export import export_connections
from netids.store.conn_queries import (
    COUNT_CAP,
    ConnFilter,
    count_connections,
    query_connections,
)
from netids.store.queries import get_event, list_sensors
from netids.ui.paged import PagedView, address_problem, parse_time

STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR",
          "OTH")
COLUMNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ts", "Start (UTC)", {"sort": "desc"}),
    ("duration", "Duration s", {"type": "numericColumn"}),
    ("orig_h", "Originator", {}),
    ("orig_p", "Port", {"type": "numericColumn"}),
    ("resp_h", "Responder", {}),
    ("resp_p", "Port", {"type": "numericColumn"}),
    ("proto", "Proto", {}),
    ("service", "Service", {}),
    ("conn_state", "State", {"headerTooltip": "Zeek's conn_state"}),
    ("history", "History", {"headerTooltip": "Zeek's history letters"}),
    ("orig_pkts", "Orig pkts", {"type": "numericColumn"}),
    ("resp_pkts", "Resp pkts", {"type": "numericColumn"}),
    ("orig_bytes", "Orig bytes", {"type": "numericColumn"}),
    ("resp_bytes", "Resp bytes", {"type": "numericColumn"}),
    ("ended", "Ended", {}),
    ("sensor", "Sensor", {}),
    ("uid", "uid", {}),
)


@dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    total: int  # COUNT_CAP + 1 means "more than COUNT_CAP"
    sensors: list[str]
    event: str  # the event named by the filter, in words ('' when none or gone)


class Connections(PagedView):
    """The view; ``event``: an event id whose connections to show first."""

    noun = "connections"

    def __init__(self, controller: Controller, event: str = "") -> None:
        super().__init__(controller, ConnFilter(event=event or None))
        self._filters()
        self.behind = ui.row().classes("w-full items-center gap-2")
        with ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.label("Stored connections").classes("text-lg font-semibold")
                self.summary = ui.label("").classes("text-sm opacity-80").mark("conn-summary")
                ui.space()
                self.prev = ui.button(icon="chevron_left", on_click=lambda: self.turn(-1)) \
                    .props("flat round").mark("conn-prev")
                self.page_label = ui.label("").classes("text-sm").mark("conn-page")
                self.next = ui.button(icon="chevron_right", on_click=lambda: self.turn(1)) \
                    .props("flat round").mark("conn-next")
            self.grid = ui.aggrid({
                "columnDefs": [{"field": f, "headerName": h, **x} for f, h, x in COLUMNS],
                "defaultColDef": {"sortable": True, "resizable": True, "minWidth": 50},
                "rowData": [], ":getRowId": "params => params.data.uid",
                "animateRows": False, "suppressCellFocus": True,
                "overlayNoRowsTemplate": "No stored connections match",
                ":onRowDataUpdated": "p => p.api.autoSizeAllColumns()",
            }, theme="quartz").classes("w-full h-[480px] nid-events").mark("conn-grid")
            self.grid.on("sortChanged", self._sort_changed)
        ui.timer(0.05, self.reload, once=True)

    def _filters(self) -> None:
        with ui.card().classes("w-full"), ui.row().classes("w-full items-start gap-3"):
            self.since = ui.input("From (UTC)").props('type="datetime-local" stack-label') \
                .classes("w-52").mark("conn-since")
            self.until = ui.input("To (UTC)").props('type="datetime-local" stack-label') \
                .classes("w-52").mark("conn-until")
            self.sensor = ui.select({"": "any sensor"}, value="", label="Sensor") \
                .classes("w-36").mark("conn-sensor")
            self.host = ui.input("Host address or CIDR", validation=address_problem) \
                .classes("w-52").mark("conn-host")
            self.proto = ui.select({"": "any", "tcp": "tcp", "udp": "udp", "icmp": "icmp"},
                                   value="", label="Protocol").classes("w-28").mark("conn-proto")
            self.state = ui.select({"": "any", **{s: s for s in STATES}}, value="",
                                   label="State").classes("w-28").mark("conn-state")
            self.text = ui.input("uid, service or history").classes("w-44").mark("conn-text")
            with ui.row().classes("items-center gap-2 self-center"):
                ui.button("Apply", icon="filter_alt", on_click=self.apply).mark("conn-apply")
                ui.button("Clear", on_click=self.clear).props("flat").mark("conn-clear")
                ui.button("Zeek TSV", icon="download", on_click=lambda: self.export("zeek")) \
                    .props("outline").mark("conn-export-zeek")
                ui.button("CSV", icon="download", on_click=lambda: self.export("csv")) \
                    .props("outline").mark("conn-export-csv")

    # -- commands ------------------------------------------------------------------------------
    async def clear(self) -> None:
        for box in (self.since, self.until, self.host, self.text):
            box.set_value("")
        for choice in (self.sensor, self.proto, self.state):
            choice.set_value("")
        self.filter = ConnFilter(event=self.filter.event)
        await self.apply()

    async def forget_event(self) -> None:
        self.filter = ConnFilter()
        await self.apply()

    # -- blocking helpers (run.io_bound) ---------------------------------------------------------
    def _query(self) -> Page:
        f = self.filter
        with self.c.session() as session:
            rows = query_connections(session=session, filter=f, sort=self.sort,
                                     descending=self.descending, offset=self.offset,
                                     limit=self.page_size)
            event = get_event(f.event, session=session) if f.event else None
            return Page(
                rows=[connection_row(c) for c in rows],
                total=count_connections(session=session, filter=f),
                sensors=[s.name for s in list_sensors(session=session)],
                event=f"{event.kind}: {event.src or 'many sources'} → "
                      f"{event.dst or 'many targets'} ({event.proto})" if event else "",
            )

    def _export(self, fmt: str) -> tuple[bytes, int]:
        out = io.StringIO()
        with self.c.session() as session:
            n = export_connections(out, fmt, session=session, filter=self.filter)
        return out.getvalue().encode(), n

    def _file_name(self, fmt: str, stamp: str) -> str:
        return f"netids-conn-{stamp}.{'log' if fmt == 'zeek' else 'csv'}"

    # -- display ---------------------------------------------------------------------------------
    def _show(self, data: Page) -> None:
        sensors = {"": "any sensor", **{s: s for s in data.sensors}}
        if self.sensor.options != sensors:
            self.sensor.set_options(sensors, value=self.sensor.value
                                    if self.sensor.value in sensors else "")
        self._show_event(data.event)
        more = data.total > COUNT_CAP
        total = f"{COUNT_CAP:,}+" if more else f"{data.total:,}"
        last = self.offset + len(data.rows)
        self.summary.set_text(f"{total} connections match")
        self.page_label.set_text(f"{self.offset + 1 if data.rows else 0:,}–{last:,} of {total}")
        self.prev.set_enabled(self.offset > 0)
        self.next.set_enabled(last < data.total)
        self.grid.options["rowData"] = data.rows
        self._show_sort()
        self.grid.update()

    def _show_event(self, words: str) -> None:
        self.behind.clear()
        if not self.filter.event:
            return
        with self.behind:
            ui.icon("link")
            ui.label(f"Connections behind the event {words}" if words else
                     "That event is no longer stored.").mark("conn-event")
            ui.button("Show all connections", on_click=self.forget_event).props("flat dense") \
                .mark("conn-all")

    def _read_filter(self) -> ConnFilter:
        problem = address_problem(self.host.value or "")
        if problem:
            raise ValueError(problem)
        return ConnFilter(
            since=parse_time(self.since.value), until=parse_time(self.until.value),
            sensor=self.sensor.value or None, host=(self.host.value or "").strip() or None,
            proto=self.proto.value or None, state=self.state.value or None,
            text=(self.text.value or "").strip() or None, event=self.filter.event,
        )


def connection_row(c: Any) -> dict[str, Any]:
    """One grid row of a stored connection: numbers as numbers, text as text."""
    return {
        "uid": c.uid, "ts": c.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        "duration": None if c.duration is None else round(c.duration, 3),
        "orig_h": c.orig_h, "orig_p": c.orig_p, "resp_h": c.resp_h, "resp_p": c.resp_p,
        "proto": c.proto, "service": c.service or "", "conn_state": c.conn_state,
        "history": c.history or "", "orig_pkts": c.orig_pkts, "resp_pkts": c.resp_pkts,
        "orig_bytes": c.orig_bytes, "resp_bytes": c.resp_bytes,
        "ended": "in progress" if c.in_progress else c.ended, "sensor": c.sensor,
    }

