"""The history page: the stored anomaly log, filtered, paged and sorted by the database, and
beside it the stored connections (:mod:`netids.ui.connections`).

Every query goes through the store's query functions, in a session from the controller, in
``run.io_bound``; the browser only ever holds one page of rows. Sorting a column in the grid
re-queries the database, so the order is over all matching events, not just the page shown.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nicegui import events, ui

from netids.controller import Controller
from netids.store.export import export_events
from netids.store.queries import (
    EventFilter,
    count_events,
    events_per_minute,
    list_sensors,
    query_events,
    top_sources,
    top_targets,
)
from netids.ui import charts, event_detail, theme
from netids.ui.connections import Connections
from netids.ui.frame import is_dark, on_dark_change
from netids.ui.paged import PagedView, address_problem, parse_time

PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPv6", "ARP", "IGMP", "GRE", "ESP", "IPv4", "IPv6", "other")


def page(controller: Controller, view: str = "events", event: str = "") -> None:
    """Two views: the stored events, and the stored connections (``view="connections"``,
    narrowed to those behind ``event`` when it names one)."""
    with ui.tabs().classes("w-full justify-start") as tabs:
        ui.tab("events", "Events", icon="report").mark("tab-events")
        ui.tab("connections", "Connections", icon="lan").mark("tab-connections")
    chosen = "connections" if view == "connections" else "events"
    with ui.tab_panels(tabs, value=chosen).classes("w-full"):
        with ui.tab_panel("events").classes("p-0 gap-4"):
            History(controller)
        with ui.tab_panel("connections").classes("p-0 gap-4"):
            Connections(controller, event=event)


@dataclass(slots=True)
class Page:
    rows: list[dict]
    total: int
    per_minute: list[tuple[datetime, int, int]]
    sources: list[tuple[str, int, int]]
    targets: list[tuple[str, int, int]]
    sensors: list[str]


class History(PagedView):
    noun = "events"
    default_sort = "last_seen"

    def __init__(self, controller: Controller) -> None:
        super().__init__(controller, EventFilter())
        self.data: Page | None = None
        if not controller.has_database():
            ui.label(f"The event history needs the database: {controller.db_error or 'not open'}")\
                .classes("text-negative").mark("history-unavailable")
        self._filters()
        with ui.row().classes("w-full gap-4 flex-nowrap max-lg:flex-wrap"):
            self.minute_chart = ui.echart(charts.minute_options()) \
                .classes("flex-[2] min-w-[320px] h-60").mark("minute-chart")
            self.sources_chart = ui.echart(charts.top_options("Top sources", "#8b5cf6")) \
                .classes("flex-1 min-w-[260px] h-60").mark("sources-chart")
            self.targets_chart = ui.echart(charts.top_options("Top targets", "#ef4444")) \
                .classes("flex-1 min-w-[260px] h-60").mark("targets-chart")
        with ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.label("Stored events").classes("text-lg font-semibold")
                self.summary = ui.label("").classes("text-sm opacity-80").mark("history-summary")
                ui.label("times in UTC · levels at each event's own threshold") \
                    .classes("text-xs opacity-70")
                ui.space()
                self.prev = ui.button(icon="chevron_left", on_click=lambda: self.turn(-1)) \
                    .props("flat round").mark("history-prev")
                self.page_label = ui.label("").classes("text-sm").mark("history-page")
                self.next = ui.button(icon="chevron_right", on_click=lambda: self.turn(1)) \
                    .props("flat round").mark("history-next")
            options = theme.event_grid_options(wrap_times=True, sensor=True, column_filters=False,
                                               empty="No stored events match")
            self.grid = ui.aggrid(options, theme="quartz") \
                .classes("w-full h-[480px] nid-events").mark("history-grid")
            self.grid.on("cellClicked", self._open_event)
            self.grid.on("sortChanged", self._sort_changed)
            theme.legend()
        ui.timer(0.05, self.reload, once=True)
        on_dark_change(lambda: self._draw_charts(self.data) if self.data else None)

    def _filters(self) -> None:
        with ui.card().classes("w-full"), ui.row().classes("w-full items-start gap-3"):
            self.since = ui.input("From (UTC)").props('type="datetime-local" stack-label') \
                .classes("w-52").mark("filter-since")
            self.until = ui.input("To (UTC)").props('type="datetime-local" stack-label') \
                .classes("w-52").mark("filter-until")
            self.sensor = ui.select({"": "any sensor"}, value="", label="Sensor") \
                .classes("w-36").mark("filter-sensor")
            self.src = ui.input("Source address or CIDR", validation=address_problem) \
                .classes("w-52").mark("filter-src")
            self.dst = ui.input("Destination address or CIDR", validation=address_problem) \
                .classes("w-52").mark("filter-dst")
            self.proto = ui.select({"": "any", **{p: p for p in PROTOCOLS}}, value="",
                                   label="Protocol").classes("w-28").mark("filter-proto")
            self.kind = ui.input("Kind").classes("w-32").mark("filter-kind")
            self.min_score = ui.number("Min score", min=0, max=1, step=0.01, format="%.2f") \
                .classes("w-28").mark("filter-score")
            severities = {s: f"{s} or worse" for s in self.c.severities()}
            self.severity = ui.select({"": "any", **severities}, value="", label="Severity") \
                .classes("w-40").mark("filter-severity")
            with ui.row().classes("items-center gap-2 self-center"):
                ui.button("Apply", icon="filter_alt", on_click=self.apply).mark("filter-apply")
                ui.button("Clear", on_click=self.clear).props("flat").mark("filter-clear")
                ui.button("CSV", icon="download", on_click=lambda: self.export("csv")) \
                    .props("outline").mark("export-csv")
                ui.button("JSON lines", icon="download", on_click=lambda: self.export("jsonl")) \
                    .props("outline").mark("export-jsonl")

    # -- commands ------------------------------------------------------------------------------
    async def clear(self) -> None:
        for box in (self.since, self.until, self.src, self.dst, self.kind):
            box.set_value("")
        for choice in (self.sensor, self.proto, self.severity):
            choice.set_value("")
        self.min_score.set_value(None)
        await self.apply()

    async def _open_event(self, e: events.GenericEventArguments) -> None:
        data = (e.args or {}).get("data") or {}
        if data.get("id"):
            await event_detail.show(self.c, str(data["id"]))

    async def sort_by(self, column: str, descending: bool) -> None:
        """Order all matching events by ``column`` (a grid field) and show the first page."""
        await super().sort_by(GRID_TO_DB.get(column, column), descending)

    # -- blocking helpers (run.io_bound) ---------------------------------------------------------
    def _query(self) -> Page:
        f = self.filter
        with self.c.session() as session:
            rows = query_events(session=session, filter=f, sort=self.sort,
                                descending=self.descending, offset=self.offset,
                                limit=self.page_size)
            return Page(
                rows=[history_row(e) for e in rows],
                total=count_events(session=session, filter=f),
                per_minute=events_per_minute(session=session, filter=f),
                sources=top_sources(session=session, filter=f, limit=8),
                targets=top_targets(session=session, filter=f, limit=8),
                sensors=[s.name for s in list_sensors(session=session)],
            )

    def _export(self, fmt: str) -> tuple[bytes, int]:
        out = io.StringIO()
        with self.c.session() as session:
            n = export_events(out, fmt, session=session, filter=self.filter)
        return out.getvalue().encode(), n

    def _file_name(self, fmt: str, stamp: str) -> str:
        return f"netids-events-{stamp}.{fmt}"

    # -- display ---------------------------------------------------------------------------------
    def _show(self, data: Page) -> None:
        self.data = data
        sensors = {"": "any sensor", **{s: s for s in data.sensors}}
        if self.sensor.options != sensors:
            self.sensor.set_options(sensors, value=self.sensor.value
                                    if self.sensor.value in sensors else "")
        first = self.offset + 1 if data.total else 0
        last = min(self.offset + self.page_size, data.total)
        self.summary.set_text(f"{data.total:,} events match")
        self.page_label.set_text(f"{first:,}–{last:,} of {data.total:,}")
        self.prev.set_enabled(self.offset > 0)
        self.next.set_enabled(last < data.total)
        self.grid.options["rowData"] = data.rows
        self._show_sort(GRID_TO_DB)
        for col in self.grid.options["columnDefs"]:
            if col["field"] == "sensor":  # one sensor: its column only takes the why's room
                col["hide"] = len(data.sensors) <= 1
        self.grid.update()
        self._draw_charts(data)

    def _draw_charts(self, data: Page) -> None:
        dark = is_dark()
        minute = self.minute_chart.options
        charts.apply_chart_theme(minute, dark)
        minute["xAxis"]["data"] = [m.strftime("%m-%d %H:%M") for m, _, _ in data.per_minute]
        minute["series"][0]["data"] = [n for _, n, _ in data.per_minute]
        self.minute_chart.update()
        for chart, top, many in ((self.sources_chart, data.sources, "many sources"),
                                 (self.targets_chart, data.targets, "many targets")):
            charts.apply_chart_theme(chart.options, dark)
            top = list(reversed(top))
            chart.options["yAxis"]["data"] = [name or many for name, _, _ in top]
            chart.options["series"][0]["data"] = [n for _, n, _ in top]
            chart.update()

    def _read_filter(self) -> EventFilter:
        for box in (self.src, self.dst):
            problem = address_problem(box.value or "")
            if problem:
                raise ValueError(problem)
        score = self.min_score.value
        if score is not None and not 0 <= float(score) <= 1:
            raise ValueError("the minimum score is between 0 and 1")
        return EventFilter(
            since=parse_time(self.since.value),
            until=parse_time(self.until.value),
            sensor=self.sensor.value or None,
            src=(self.src.value or "").strip() or None,
            dst=(self.dst.value or "").strip() or None,
            proto=self.proto.value or None,
            kind=(self.kind.value or "").strip() or None,
            min_score=float(score) if score is not None else None,
            min_severity=self.severity.value or None,
        )


GRID_TO_DB = {"score": "score_max", "nines": "score_max", "level": "score_max"}


def history_row(e: Any) -> dict[str, Any]:
    """One row of a stored event (a row of ``query_events``)."""
    return {
        **theme.event_cells(e),
        "first_seen": _when(e.first_seen),
        "last_seen": _when(e.last_seen),
        "sensor": e.sensor,
        "level": Controller.grade(e.score_max, e.threshold, e.kind),  # at its own threshold
        "css": theme.row_class(e.score_max, e.threshold, e.kind),
    }


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

