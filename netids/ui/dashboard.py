"""The live dashboard: start/stop, filter, files, threshold, counters, charts, the event table.

Two throttled timers read :attr:`Controller.live` (never packets): counters every
``COUNTER_SECONDS`` and charts plus the event table every ``CHART_SECONDS``, and only when
``live.generation`` moved. So the browser receives aggregates at most a few times a second,
whatever the packet rate.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from nicegui import background_tasks, events, ui

from netids.controller import CaptureError, Controller
from netids.live import LiveState, overload_text
from netids.ui import charts, event_detail, learning_card, theme
from netids.ui.capture_form import (
    SAMPLE,
    PcapUpload,
    chosen_capture,
    discard_when_done,
    file_progress,
    filter_problem,
    interface_options,
    keep_upload,
    size_in_words,
    start_capture,
    too_large_message,
)
from netids.ui.frame import admin_only, is_admin, is_dark, on_dark_change, require_admin
from netids.ui.threshold import (
    SLIDER_STEP,
    SLIDER_TOP,
    adapted_text,
    adapted_tooltip,
    false_alarm_text,
    format_threshold,
    slider_position,
    slider_threshold,
)

log = logging.getLogger(__name__)

COUNTER_SECONDS = 0.5  # counters and status: 2 updates a second
CHART_SECONDS = 1.0  # charts and the event table: 1 update a second
MAX_ROWS = 500  # events kept in the browser's table
PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")


def page(controller: Controller) -> None:
    """Build the dashboard for one browser tab."""
    Dashboard(controller)


class Dashboard:
    def __init__(self, controller: Controller) -> None:
        self.c = controller
        self.seen_generation: tuple[int, int] = (0, -1)  # (id of the LiveState, generation)
        self.seen_counters: tuple[int, int] = (0, -1)
        self.seen_message = (id(controller.live), controller.live.message)
        self.seen_store_error = ""
        self.permission_dialog = self._permission_dialog()
        with ui.row().classes("w-full gap-4 items-stretch flex-wrap"):
            self._controls()
            self._file_card()
        learning_card.card(controller)
        self._counters()
        with ui.row().classes("w-full gap-4 flex-nowrap max-lg:flex-wrap"):
            size = "flex-1 min-w-[300px] h-64"
            self.rate_chart = ui.echart(charts.rate_options()).classes(size).mark("rate-chart")
            self.proto_chart = ui.echart(charts.protocol_options()).classes(size) \
                .mark("protocol-chart")
            self.score_chart = ui.echart(charts.score_options()).classes(size).mark("score-chart")
        self._grid()
        self._startup_notes()
        ui.timer(COUNTER_SECONDS, self.refresh_counters)
        ui.timer(CHART_SECONDS, self.refresh_charts)
        self.refresh_counters()
        self.refresh_charts()
        on_dark_change(lambda: self.refresh_charts(force=True))

    # -- layout ------------------------------------------------------------------------------
    def _controls(self) -> None:
        with ui.card().classes("flex-1 min-w-[380px]"):
            ui.label("Live capture").classes("text-lg font-semibold")
            with ui.row().classes("w-full items-start gap-2"):
                self.interface = ui.select(interface_options(self.c), value="any",
                                           label="Interface") \
                    .classes("min-w-[180px]").mark("interface")
                self.bpf = ui.input("Capture filter (BPF)", placeholder="e.g. tcp or arp",
                                    validation=lambda v: filter_problem(self.c, v)) \
                    .classes("flex-1 min-w-[200px]").props("clearable").mark("bpf")
                admin_only(self.interface)
                admin_only(self.bpf)
            with ui.row().classes("items-center gap-2"):
                self.start_button = admin_only(ui.button("Start monitoring", icon="play_arrow",
                                                         on_click=self.start_live)
                                               .props("color=positive").mark("start"))
                self.stop_button = admin_only(ui.button("Stop", icon="stop", on_click=self.stop)
                                              .props("color=negative outline").mark("stop"))
            with ui.row().classes("w-full items-center gap-3"):
                ui.label("Threshold").classes("text-sm")
                self.threshold = ui.slider(min=0, max=SLIDER_TOP, step=SLIDER_STEP,
                                           value=slider_position(self.c.threshold),
                                           on_change=self.set_threshold) \
                    .classes("flex-1 min-w-[120px]").mark("threshold")
                admin_only(self.threshold)
                with ui.column().classes("gap-0 shrink-0 items-end"):  # number over its words
                    self.threshold_label = ui.label(format_threshold(self.c.threshold)) \
                        .classes("nid-count nid-threshold whitespace-nowrap leading-tight") \
                        .mark("threshold-value")
                    self.false_alarm_label = ui.label(false_alarm_text(self.c.threshold)) \
                        .classes("nid-threshold-meaning text-xs opacity-70 whitespace-nowrap") \
                        .mark("threshold-meaning")
            with ui.label("").classes("nid-threshold-adapted text-xs opacity-70 -mt-2") \
                    .mark("threshold-adapted") as self.adapted:
                self.adapted_tip = ui.tooltip("").props('max-width="28rem"')
            self.status = ui.label("").classes("text-sm opacity-80").mark("status")

    def _file_card(self) -> None:
        with ui.card().classes("flex-1 min-w-[380px]"):
            ui.label("Analyse a capture file").classes("text-lg font-semibold")
            with ui.row().classes("w-full items-center gap-2"):
                self.path = ui.input("Name of a pcap / pcapng file in the captures folder") \
                    .classes("flex-1").mark("pcap-path") \
                    .tooltip(f"captures folder: {self.c.settings.files.captures_dir}")
                admin_only(ui.button("Analyse", icon="insights", on_click=self.analyse_path)
                           .mark("analyse"))
            self.realtime = ui.switch("Play back at capture speed").mark("realtime")
            too_large = too_large_message(self.c.settings.files.upload_limit)
            upload = PcapUpload(label="…or upload one: drop it here or press +", auto_upload=True,
                                max_file_size=self.c.settings.files.upload_limit,
                                on_upload=self.analyse_upload,
                                on_rejected=lambda: ui.notify(too_large, type="warning")) \
                .props(f'accept="{",".join(PCAP_SUFFIXES)}" flat') \
                .classes("nid-upload").mark("upload")
            # the server refused it (it enforces the limit too) or the connection dropped
            failed = (f"The upload failed: refused by the server or cut off (the limit is "
                      f"{size_in_words(self.c.settings.files.upload_limit)}).")
            upload.on("failed", lambda: ui.notify(failed, type="warning"), [])
            admin_only(upload)
            with ui.row().classes("items-center gap-2"):
                admin_only(ui.button("Try the bundled sample", icon="science",
                                     on_click=self.try_sample)
                           .props("color=amber-8 unelevated").mark("try-sample"))
                ui.label("30 s of lab traffic with a sweep, a port scan, a SYN flood and ARP "
                         "spoofing").classes("text-xs opacity-70")
            file_progress(self.c)

    def _counters(self) -> None:
        self.counter_labels: dict[str, ui.label] = {}
        with ui.row().classes("w-full gap-3 flex-wrap"):
            for key, title in (("packets", "Total packets"), ("tcp", "TCP"), ("udp", "UDP"),
                               ("other", "Other"), ("rate", "Packets/s"), ("drops", "Drops"),
                               ("anomalies", "Anomalous packets"),
                               ("events", "Events this session")):
                with ui.card().classes("nid-counter min-w-[120px] flex-1").tight(), \
                        ui.card_section():
                        ui.label(title).classes("text-xs uppercase opacity-70")
                        self.counter_labels[key] = ui.label("0").classes("nid-count") \
                            .mark(f"count-{key}")
        self.overload = ui.label("").classes("text-sm font-semibold text-orange-9") \
            .mark("overload")
        self.overload.set_visibility(False)

    def _grid(self) -> None:
        with ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center"):
                ui.label("Anomaly events").classes("text-lg font-semibold")
                ui.label("newest first · click a row for details · times in UTC · levels "
                         "follow the threshold").classes("text-xs opacity-70")
            options = theme.event_grid_options(wrap_times=False, sensor=False, column_filters=True,
                                               empty="No anomaly events yet")
            self.grid = EventGrid(options, theme="quartz") \
                .classes("w-full h-[420px] nid-events").mark("events-grid")
            self.grid.on("cellClicked", self._open_event)
            theme.legend()

    def _permission_dialog(self) -> ui.dialog:
        python = Path(sys.executable).resolve()
        with ui.dialog() as dialog, ui.card().classes("max-w-xl").mark("permission-dialog"):
            ui.label("No permission to capture packets").classes("text-lg font-semibold")
            ui.label("Capturing live traffic needs the CAP_NET_RAW capability. Do one of these, "
                     "then start netids again:")
            ui.label("1. Run netids as root:")
            ui.label("sudo python app.py").classes("nid-mono")
            ui.label("2. Or allow this Python binary to capture, once:")
            ui.label(f"sudo setcap cap_net_raw,cap_net_admin+eip {python}").classes("nid-mono") \
                .mark("setcap-command")
            ui.label("Analysing pcap files works without it, and so does the bundled sample.") \
                .classes("text-sm opacity-80")
            with ui.row():
                ui.button("Try the bundled sample", on_click=lambda: self._sample_from(dialog)) \
                    .mark("permission-sample")
                ui.button("Close", on_click=dialog.close).props("flat").mark("permission-close")
        return dialog

    async def _sample_from(self, dialog: ui.dialog) -> None:
        dialog.close()
        await self.try_sample()

    def _startup_notes(self) -> None:
        if self.c.model_error:
            ui.notify(f"No model loaded: {self.c.model_error}. Train one on the Training page.",
                      type="warning", multi_line=True)
        if self.c.db_error:
            ui.notify(f"{self.c.db_error}. Events are shown here but not stored.",
                      type="warning", multi_line=True)

    # -- commands ------------------------------------------------------------------------------
    async def start_live(self) -> None:
        if await start_capture(self.c, self.interface.value, self.bpf.value, self.c.start_live,
                               self._capture_failed):
            self.refresh_counters()

    async def stop(self) -> None:
        if require_admin():
            await self.c.stop()
            self.refresh_counters()

    async def analyse_path(self) -> None:
        if not require_admin():
            return
        text = (self.path.value or "").strip()
        if not text:
            ui.notify("Give the name of a pcap or pcapng file first.", type="warning")
            return
        path = chosen_capture(text, self.c.settings.files)
        if path is not None:
            await self.analyse(path)

    async def analyse_upload(self, e: events.UploadEventArguments) -> None:
        if not require_admin():
            return
        try:
            target = await keep_upload(e, self.c.settings.files)
        except OSError as exc:
            ui.notify(f"Cannot keep the upload in {self.c.settings.files.uploads_dir}: "
                      f"{exc.strerror or exc}", type="negative", multi_line=True)
            return
        try:
            await self.analyse(target)
        finally:  # deleted once its analysis ends (or at once when it did not start)
            background_tasks.create(discard_when_done(self.c, target),
                                    name="netids-discard-upload")

    async def try_sample(self) -> None:
        if require_admin():
            await self.analyse(SAMPLE, realtime=True)

    async def analyse(self, path: Path, realtime: bool | None = None) -> None:
        if not path.is_file():
            ui.notify(f"No such file: {path}", type="negative")
            return
        try:
            await self.c.start_file(path, realtime=self.realtime.value if realtime is None
                                    else realtime)
        except CaptureError as exc:
            ui.notify(str(exc), type="negative", multi_line=True)
            return
        self.seen_message = (id(self.c.live), self.c.live.message)
        ui.notify(f"Analysing {path.name}", type="info")
        self.refresh_counters()

    def set_threshold(self, e: events.ValueChangeEventArguments) -> None:
        if float(e.value) == slider_position(self.c.threshold):
            return  # the slider following the threshold, not a person moving it
        value = slider_threshold(float(e.value))
        if not require_admin():
            self.threshold.set_value(slider_position(self.c.threshold))
            return
        self.c.set_threshold(value)
        self._show_threshold(value)

    def _show_threshold(self, value: float) -> None:
        self.threshold_label.set_text(format_threshold(value))
        self.false_alarm_label.set_text(false_alarm_text(value))

    async def _open_event(self, e: events.GenericEventArguments) -> None:
        data = (e.args or {}).get("data") or {}
        if data.get("id"):
            await event_detail.show(self.c, str(data["id"]))

    def _capture_failed(self, message: str) -> None:
        if "CAP_NET_RAW" in message or "permission" in message.lower():
            self.permission_dialog.open()
        else:
            ui.notify(message, type="negative", multi_line=True)

    # -- refresh -------------------------------------------------------------------------------
    def refresh_counters(self) -> None:
        self._check_store()
        live = self.c.live
        marker = (id(live), live.generation)
        if marker == self.seen_counters:
            return
        self.seen_counters = marker
        labels = self.counter_labels
        labels["packets"].set_text(f"{live.packets:,}")
        labels["tcp"].set_text(f"{live.tcp:,}")
        labels["udp"].set_text(f"{live.udp:,}")
        labels["other"].set_text(f"{live.other:,}")
        labels["rate"].set_text(f"{live.packets_per_second:,.0f}" if live.running else "–")
        labels["drops"].set_text(f"{live.kernel_drops + live.queue_drops:,}")
        labels["anomalies"].set_text(f"{live.anomalies:,}")
        labels["events"].set_text(f"{live.session_events:,}")
        self.status.set_text(_status_text(live, self.c))
        self.overload.set_text(overload_text(live))
        self.overload.set_visibility(bool(self.overload.text))
        if self.threshold.value != slider_position(live.threshold):
            self.threshold.set_value(slider_position(live.threshold))
        self._show_threshold(live.threshold)
        self.adapted.set_text(adapted_text(live.adapt_scale, live.adapt_learned))
        self.adapted.set_visibility(bool(self.adapted.text))
        self.adapted_tip.set_text(adapted_tooltip(live.adapt_scale))
        self.start_button.set_enabled(not live.running and self._admin())
        self.stop_button.set_enabled(live.running and self._admin())
        message = (id(live), live.message)
        if message != self.seen_message:
            self.seen_message = message
            if live.error:
                self._capture_failed(live.error)
            elif live.message:
                ui.notify(live.message, type="info")

    def _check_store(self) -> None:
        """Database trouble is told once per new error, also while no packets arrive."""
        error = self.c.store_error()
        if error and error != self.seen_store_error:
            ui.notify(f"Database trouble: {error}. Events are kept in memory and written "
                      "when it works again.", type="warning", multi_line=True)
        self.seen_store_error = error

    def refresh_charts(self, force: bool = False) -> None:
        live = self.c.live
        marker = (id(live), live.generation)
        if marker == self.seen_generation and not force:
            return
        self.seen_generation = marker
        dark = is_dark()
        seconds = [s * 1000.0 for s in live.timeline.seconds]
        rate = self.rate_chart.options
        charts.apply_chart_theme(rate, dark)
        rate["series"][0]["data"] = [list(p) for p in zip(seconds, live.timeline.packets,
                                                          strict=True)]
        self.rate_chart.update()
        protocols = sorted(live.protocols.items(), key=lambda kv: -kv[1])[:10]
        proto = self.proto_chart.options
        charts.apply_chart_theme(proto, dark)
        proto["xAxis"]["data"] = [name for name, _ in protocols]
        proto["series"][0]["data"] = [n for _, n in protocols]
        self.proto_chart.update()
        score = self.score_chart.options
        charts.apply_chart_theme(score, dark)
        score["series"][0]["data"] = [[s, charts.nines(m)] for s, m in
                                      zip(seconds, live.timeline.max_score, strict=True)]
        score["series"][0]["markLine"]["data"] = [{"yAxis": charts.nines(live.threshold),
                                                   "name": "threshold"}]
        score["series"][0]["markLine"]["label"]["formatter"] = \
            f"threshold {format_threshold(live.threshold)}"
        self.score_chart.update()
        self.grid.show(theme.event_rows(live.events, live.threshold, MAX_ROWS))

    def _admin(self) -> bool:
        return is_admin()


class EventGrid(ui.aggrid):
    """The event table: rows are replaced in the browser (AG Grid keeps the user's sort and
    scroll position and matches rows by id) without rebuilding the grid."""

    rows: list[dict]

    def show(self, rows: list[dict]) -> None:
        self.rows = rows  # what the browser shows now
        if self.client.has_socket_connection:
            self.run_grid_method("setGridOption", "rowData", rows)
        else:  # not in a browser yet: the rows go with the grid's first rendering
            self.options["rowData"] = rows


def _status_text(live: LiveState, controller: Controller) -> str:
    if live.running:
        state = f"Monitoring {live.source}"
    elif live.source:
        state = f"Stopped · last: {live.source}"
    else:
        state = "Idle · start monitoring, open a capture file or try the bundled sample"
    store = live.store
    if store is not None and (store.pending > 1000 or store.failures):
        state += f" · database: {store.pending} events waiting"
        if store.last_error:
            state += f" ({store.last_error})"
    if controller.db_error:
        state += " · events not stored (database unavailable)"
    return state
