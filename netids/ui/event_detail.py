"""One event in a dialog: what, who, when, how sure and why, its sample packets, and export.

A dialog the dashboard and history pages open, not a page. The event is read from the
database (where its samples are kept); an event the writer has not stored yet, or any event
when the database is unavailable, comes from the controller's recent events. The controller
decodes sample packets from their bytes into one-line summaries, shown as text, and writes
them as a pcap.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from nicegui import run, ui

from netids.controller import Controller
from netids.store.conn_queries import COUNT_CAP, ConnFilter, count_connections
from netids.store.export import FIELDS, event_record, frames_pcap, packet_summaries
from netids.store.queries import event_samples, get_event
from netids.ui import rules, theme


@dataclass(slots=True)
class RawSample:
    ts: float
    data: bytes
    wirelen: int
    linktype: int
    score: float

    def frame(self) -> tuple[float, bytes, int, int]:
        return self.ts, self.data, self.wirelen, self.linktype


@dataclass(slots=True)
class EventDetail:
    record: dict[str, Any]  # the export record (netids.store.export.FIELDS)
    samples: list[RawSample] = field(default_factory=list)
    stored: bool = False  # read from the database
    connections: int = 0  # stored connections behind it (COUNT_CAP + 1: more than COUNT_CAP)


async def show(controller: Controller, event_id: str) -> None:
    """Open the detail dialog of an event."""
    try:
        detail = await run.io_bound(load, controller, event_id)
    except Exception as exc:  # noqa: BLE001 - database trouble is a notification
        ui.notify(f"Cannot read the event from the database: {exc}", type="negative")
        detail = load_recent(controller, event_id)
    if detail is None:
        ui.notify("That event is no longer available.", type="warning")
        return
    dialog(controller, detail).open()


def load(controller: Controller, event_id: str) -> EventDetail | None:
    """The event's newest state: the controller's recent update when it has one (the database
    may be a moment behind), else the stored row; samples from the database (blocking)."""
    recent = load_recent(controller, event_id)
    if not controller.has_database():
        return recent
    with controller.session() as session:
        row = get_event(event_id, session=session)
        if row is None:
            return recent
        samples = [RawSample(s.ts.timestamp(), bytes(s.data), s.wirelen, s.linktype, s.score)
                   for s in event_samples(event_id, session=session)]
        record = event_record(row) if recent is None else recent.record
        conns = count_connections(session=session, filter=ConnFilter(event=event_id))
    if recent is not None and len(recent.samples) > len(samples):
        samples = recent.samples
    return EventDetail(record, samples, stored=True, connections=conns)


def load_recent(controller: Controller, event_id: str) -> EventDetail | None:
    latest: Any = None  # the newest update of the event in Controller.live.events
    samples: list[RawSample] = []
    for u in list(controller.live.events):
        if u.id == event_id:
            latest = u
            samples += [RawSample(s.ts, s.data, s.wirelen, s.linktype, s.score)
                        for s in u.new_samples]
    if latest is None:
        return None
    return EventDetail(update_record(latest, controller.settings.sensor), samples)


def update_record(u: Any, sensor: str) -> dict[str, Any]:
    """The export record of a live event (same fields as a stored one)."""
    return {
        "timestamp": datetime.fromtimestamp(u.first_seen, UTC),
        "end": datetime.fromtimestamp(u.last_seen, UTC),
        "event_id": u.id, "sensor": sensor, "event_type": "anomaly",
        "src_ip": u.src, "src_port": u.src_port, "dest_ip": u.dst, "dest_port": u.dst_port,
        "proto": u.proto, "kind": u.kind, "severity": u.severity, "score": u.score_max,
        "score_mean": u.score_mean, "threshold": u.threshold, "packets": u.packets,
        "src_count": u.src_count, "dest_count": u.dst_count, "explanation": u.explanation,
    }


def dialog(controller: Controller, detail: EventDetail) -> ui.dialog:
    r = detail.record
    src = r["src_ip"] or f"{r['src_count']} sources"
    dst = r["dest_ip"] or f"{r['dest_count']} targets"
    with ui.dialog() as d, ui.card().classes("w-[900px] max-w-[95vw]").mark("event-detail"):
        with ui.row().classes("w-full items-center"):
            ui.badge(r["severity"], color=theme.SEVERITY_COLORS.get(r["severity"], "grey"))
            ui.label(f"{r['kind']}: {src} → {dst}").classes("text-lg font-semibold") \
                .mark("detail-title")
            ui.space()
            ui.button(icon="close", on_click=d.close).props("flat round").mark("detail-close")
        with ui.grid(columns=4).classes("w-full gap-x-6 gap-y-1 text-sm"):
            for label, value in (
                ("First packet", _when(r["timestamp"])), ("Last packet", _when(r["end"])),
                ("Protocol", r["proto"]), ("Packets", f"{r['packets']:,}"),
                ("Source", _endpoint(src, r["src_port"])),
                ("Destination", _endpoint(dst, r["dest_port"])),
                ("Highest score", f"{r['score']:.4f}"), ("Mean score", f"{r['score_mean']:.4f}"),
                ("Threshold then", f"{r['threshold']:.4f}"), ("Sensor", r["sensor"]),
                ("Sources", str(r["src_count"])), ("Targets", str(r["dest_count"])),
            ):
                ui.label(label).classes("opacity-70")
                ui.label(value)
        ui.label("Why").classes("font-semibold mt-2")
        ui.label(r["explanation"] or "(no explanation)").classes("whitespace-pre-wrap") \
            .mark("detail-explanation")
        ui.label(f"Sample packets ({len(detail.samples)})").classes("font-semibold mt-2")
        lines = packet_summaries([s.frame() for s in detail.samples])
        rows = [{"n": i + 1, "time": _when(datetime.fromtimestamp(s.ts, UTC), micro=True),
                 "score": f"{s.score:.4f}", "summary": line}
                for i, (s, line) in enumerate(zip(detail.samples, lines, strict=True))]
        ui.table(columns=[{"name": "n", "label": "#", "field": "n", "align": "left"},
                          {"name": "time", "label": "Time (UTC)", "field": "time",
                           "align": "left"},
                          {"name": "score", "label": "Score", "field": "score"},
                          {"name": "summary", "label": "Packet", "field": "summary",
                           "align": "left", "classes": "nid-mono"}],
                 rows=rows, row_key="n").props("dense flat").classes("w-full") \
            .mark("detail-samples")
        with ui.row().classes("gap-2"):
            stem = f"netids-event-{r['event_id'][:12]}"
            ui.button("Export CSV", icon="download",
                      on_click=lambda: ui.download.content(record_csv(r), f"{stem}.csv")) \
                .props("outline").mark("detail-csv")
            ui.button("Export JSON", icon="download",
                      on_click=lambda: ui.download.content(record_json(r), f"{stem}.json")) \
                .props("outline").mark("detail-json")
            pcap = ui.button("Samples as pcap", icon="download",
                             on_click=lambda: _download_pcap(controller, detail.samples,
                                                             f"{stem}.pcap")) \
                .props("outline").mark("detail-pcap")
            if not detail.samples:
                pcap.disable()
            if detail.stored:
                _connections_button(detail)
            _expected_button(controller, r)
    d.on("hide", d.delete)
    return d


def _expected_button(controller: Controller, record: dict[str, Any]) -> None:
    """Write an allow-list rule from this event (needs the database, where rules live)."""
    if controller.has_database():
        ui.button("Mark as expected", icon="rule",
                  on_click=lambda: rules.mark_expected(controller, record)) \
            .props("outline").mark("detail-expected")


def _connections_button(detail: EventDetail) -> None:
    """To the history's Connections view, narrowed to the connections behind the event."""
    n = detail.connections
    many = f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"
    target = f"/history?view=connections&event={quote(detail.record['event_id'])}"
    ui.button(f"Connections behind this event ({many})", icon="lan",
              on_click=lambda: ui.navigate.to(target)).props("outline") \
        .mark("detail-connections")


def record_csv(record: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: "" if v is None else _text(v) for k, v in record.items()})
    return out.getvalue().encode()


def record_json(record: dict[str, Any]) -> bytes:
    return (json.dumps({k: _text(v) for k, v in record.items()}, ensure_ascii=False)
            + "\n").encode()


async def _download_pcap(controller: Controller, samples: list[RawSample], name: str) -> None:
    frames = [s.frame() for s in samples]
    content = await run.io_bound(frames_pcap, frames) if samples else None
    if content:
        ui.download.content(content, name)


def _text(value: Any) -> Any:
    return value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value


def _when(value: datetime | None, micro: bool = False) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" + (".%f" if micro else ""))


def _endpoint(host: str, port: int | None) -> str:
    return host if port is None else f"{host} port {port}"
