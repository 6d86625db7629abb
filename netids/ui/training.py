"""The training page: capture normal traffic (live or a file), stop and train with a live loss
curve, read the final report, and activate or roll back model versions.

It reads :attr:`Controller.training` on a throttled timer and calls the controller's
training commands; a failed training leaves the previous model active and says why.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from nicegui import run, ui

from netids.controller import CaptureError, Controller, TrainingError
from netids.ui import charts
from netids.ui.capture_form import (
    SAMPLE,
    chosen_capture,
    filter_problem,
    interface_options,
    start_capture,
)
from netids.ui.frame import admin_only, is_admin, is_dark, on_dark_change, require_admin

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.5
PHASE_TEXT = {
    "idle": "Not capturing. Capture normal traffic first: a few minutes of an ordinary day, "
            "or a capture file of it (at least 8,000 packets).",
    "capturing": "Capturing normal traffic…",
    "training": "Training…",
    "review": "Trained, not active yet: it may be unreliable (see why), activate it or keep the "
              "previous model.",
    "declined": "Trained, not activated: the previous model stays active. The new one is "
                "listed below if you change your mind.",
    "done": "Done: the new model is active.",
    "failed": "Training failed: the previous model stays active.",
}


def page(controller: Controller) -> None:
    TrainingPage(controller)


class TrainingPage:
    def __init__(self, controller: Controller) -> None:
        self.c = controller
        self.seen = -1
        self.seen_phase = controller.training.phase
        with ui.row().classes("w-full gap-4 items-stretch flex-wrap"):
            self._capture_card()
            self._train_card()
        with ui.row().classes("w-full gap-4 items-stretch flex-nowrap max-lg:flex-wrap"):
            with ui.card().classes("flex-[3] min-w-[360px]"):
                self.loss_chart = ui.echart(charts.loss_options()).classes("w-full h-72") \
                    .mark("loss-chart")
            with ui.card().classes("flex-[2] min-w-[320px]"):
                ui.label("Final report").classes("text-lg font-semibold")
                self.report = ui.label("").classes("whitespace-pre-wrap text-sm") \
                    .mark("training-report")
                self.concerns = ui.label("").classes("text-warning whitespace-pre-wrap text-sm") \
                    .mark("training-concerns")
                self.error = ui.label("").classes("text-negative whitespace-pre-wrap") \
                    .mark("training-error")
        self.review_dialog = self._review_dialog()
        with ui.card().classes("w-full"):
            with ui.row().classes("w-full items-center"):
                ui.label("Model versions").classes("text-lg font-semibold")
                self.active = ui.label("").classes("text-sm opacity-80").mark("active-model")
            self.versions = ui.column().classes("w-full gap-1").mark("model-versions")
        ui.timer(REFRESH_SECONDS, self.refresh)
        self.refresh()
        on_dark_change(self.redraw)
        ui.timer(0.05, self.show_versions, once=True)

    def _capture_card(self) -> None:
        with ui.card().classes("flex-1 min-w-[380px]"):
            ui.label("1 · Capture normal traffic").classes("text-lg font-semibold")
            with ui.row().classes("w-full items-start gap-2"):
                self.interface = admin_only(ui.select(interface_options(self.c), value="any",
                                                      label="Interface")
                                            .classes("min-w-[180px]").mark("train-interface"))
                self.bpf = admin_only(ui.input("Capture filter (BPF)",
                                               validation=lambda v: filter_problem(self.c, v))
                                      .classes("flex-1").mark("train-bpf"))
            admin_only(ui.button("Start capture for training", icon="fiber_manual_record",
                                 on_click=self.start_capture).mark("train-start-capture"))
            with ui.row().classes("w-full items-center gap-2"):
                self.path = admin_only(ui.input("…or a pcap / pcapng file of normal traffic "
                                                "in the captures folder")
                                       .classes("flex-1").mark("train-path"))
                admin_only(ui.button("Use file", icon="description", on_click=self.use_file)
                           .mark("train-use-file"))
            with ui.row().classes("items-center gap-3"):
                ui.label("Packets collected").classes("text-sm opacity-70")
                self.packets = ui.label("0").classes("nid-count").mark("train-packets")
            self.phase = ui.label("").classes("text-sm").mark("train-phase")

    def _train_card(self) -> None:
        with ui.card().classes("flex-1 min-w-[320px]"):
            ui.label("2 · Train").classes("text-lg font-semibold")
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
            epochs = self.c.default_train_config().epochs
            self.name = admin_only(ui.input("Name of the new model", value=f"model-{stamp}")
                                   .classes("w-full").mark("train-name"))
            self.epochs = admin_only(ui.number("Max epochs (stops early when it stops "
                                               "improving)", value=epochs, min=1,
                                               max=200, step=1, format="%d")
                                     .classes("w-full").mark("train-epochs"))
            with ui.row().classes("gap-2"):
                self.train_button = admin_only(ui.button("Stop & train", icon="model_training",
                                                         on_click=self.stop_and_train)
                                               .props("color=primary").mark("train-go"))
                self.cancel_button = admin_only(ui.button("Cancel", on_click=self.cancel)
                                                .props("flat").mark("train-cancel"))

    def _review_dialog(self) -> ui.dialog:
        """Asks before a model with concerns becomes active; says why it may be unreliable."""
        with ui.dialog().props("persistent") as dialog, \
                ui.card().classes("max-w-xl").mark("review-dialog"):
            ui.label("The new model may be unreliable").classes("text-lg font-semibold")
            self.review_text = ui.label().classes("whitespace-pre-wrap text-sm") \
                .mark("review-concerns")
            ui.label("Activate it anyway, or keep the current model and capture more varied "
                     "normal traffic.").classes("text-sm opacity-80")
            with ui.row():
                admin_only(ui.button("Activate anyway", on_click=self.accept)
                           .props("color=warning").mark("review-activate"))
                ui.button("Keep the current model", on_click=self.decline) \
                    .props("flat").mark("review-keep")
        return dialog

    # -- commands ------------------------------------------------------------------------------
    async def start_capture(self) -> None:
        if await start_capture(self.c, self.interface.value, self.bpf.value,
                               self.c.start_training_capture, _refused):
            self.refresh()

    async def use_file(self) -> None:
        if not require_admin():
            return
        text = (self.path.value or "").strip()
        path = chosen_capture(text, self.c.settings.files) if text else SAMPLE
        if path is None:
            return
        try:
            await self.c.start_training_file(path)
        except CaptureError as exc:
            _refused(str(exc))
            return
        self.refresh()

    async def stop_and_train(self) -> None:
        if not require_admin():
            return
        config = self.c.default_train_config()
        epochs = int(self.epochs.value or config.epochs)
        name = (self.name.value or "").strip()
        try:
            task = self.c.stop_and_train(name, replace(config, epochs=max(1, epochs)))
            self.train_button.disable()
            ok = await task
        except TrainingError as exc:
            ui.notify(str(exc), type="negative", multi_line=True)
            return
        finally:
            self.train_button.set_enabled(is_admin())
        self.refresh()
        await self.show_versions()
        if ok and self.c.training.phase == "done":
            ui.notify(f"Model {name} trained and active.", type="positive")

    async def accept(self) -> None:
        if not require_admin():
            return
        self.review_dialog.close()
        name = self.c.training.model
        if await self.c.accept_trained():
            ui.notify(f"Model {name} is active.", type="positive")
        else:
            ui.notify(f"Model {name} not activated: {self.c.live.message}", type="negative",
                      multi_line=True)
        self.refresh()
        await self.show_versions()

    def decline(self) -> None:
        self.review_dialog.close()
        self.c.decline_trained()
        self.refresh()

    def cancel(self) -> None:
        if require_admin():
            self.c.cancel_training()

    async def activate(self, name: str) -> None:
        if not require_admin():
            return
        if await self.c.activate_model(name):
            ui.notify(f"Model {name} is active.", type="positive")
        else:
            ui.notify(f"Model {name} not activated: {self.c.live.message}", type="negative",
                      multi_line=True)
        await self.show_versions()

    # -- display -------------------------------------------------------------------------------
    def redraw(self) -> None:
        self.seen = -1
        self.refresh()

    def refresh(self) -> None:
        t = self.c.training
        if t.generation == self.seen and t.phase == self.seen_phase:
            return
        self.seen = t.generation
        self.packets.set_text(f"{t.packets:,}")
        text = PHASE_TEXT.get(t.phase, t.phase)
        if t.phase == "capturing" and t.source:
            text = _collecting_text(t.source, t.from_file, t.packets, self.c.live.running)
        if t.phase == "training" and t.history:
            text = f"Training… epoch {t.history[-1][0]}"
        self.phase.set_text(text)
        self.report.set_text(t.report)
        self.concerns.set_text(_concerns_text(t.concerns) if t.phase in ("review", "declined",
                                                                          "done") else "")
        self.error.set_text(t.error if t.phase == "failed" else "")
        opts = self.loss_chart.options
        charts.apply_chart_theme(opts, is_dark())
        opts["xAxis"]["data"] = [e for e, _, _ in t.history]
        opts["series"][0]["data"] = [round(v, 5) for _, v, _ in t.history]
        opts["series"][1]["data"] = [round(v, 5) for _, _, v in t.history]
        self.loss_chart.update()
        admin = is_admin()
        self.train_button.set_enabled(admin and t.phase == "capturing")
        self.train_button.set_text("Train" if t.from_file and t.phase == "capturing"
                                   and not self.c.live.running else "Stop & train")
        self.cancel_button.set_enabled(admin and t.phase == "training")
        if t.phase != self.seen_phase:
            self.seen_phase = t.phase
            if t.phase == "failed":
                ui.notify(f"Training failed, the previous model stays active: {t.error}",
                          type="negative", multi_line=True)
            elif t.phase == "review":
                self.review_text.set_text(_concerns_text(t.concerns))
                self.review_dialog.open()

    async def show_versions(self) -> None:
        try:
            versions = await run.io_bound(self.c.model_versions) or []
            cards = await run.io_bound(lambda: [self.c.model_card(v) for v in versions])
        except Exception as exc:  # noqa: BLE001 - database trouble is a notification
            ui.notify(f"Cannot list model versions: {exc}", type="negative")
            return
        if cards is None:  # the app is shutting down
            return
        active = next((v for v in versions if v.active), None)
        self.active.set_text(f"active: {active.name}" if active else
                             "no version recorded (database unavailable?)")
        self.versions.clear()
        with self.versions:
            if not versions:
                ui.label("No model versions recorded yet.").classes("text-sm opacity-70")
            previous = _previous(versions)
            for v, (details, worries) in zip(versions, cards, strict=True):
                self._version_row(v, details, worries, previous)

    def _version_row(self, v, details: dict, worries: list, previous: str | None) -> None:
        with ui.row().classes("w-full items-center gap-3 border-b py-1 no-wrap") \
                .mark(f"version-{v.name}"):
            ui.icon("check_circle" if v.active else "radio_button_unchecked",
                    color="positive" if v.active else "grey")
            with ui.column().classes("gap-0 flex-1"):
                with ui.row().classes("items-center gap-3"):
                    ui.label(v.name).classes("font-medium")
                    ui.label(f"added {v.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC") \
                        .classes("text-xs opacity-70")
                    if worries:
                        ui.icon("warning", color="warning").tooltip(_concerns_text(worries)) \
                            .mark(f"concerns-{v.name}")
                ui.label(_details(details)).classes("text-sm opacity-80") \
                    .mark(f"card-{v.name}")
            if not v.active:
                label = "Roll back" if previous and v.name == previous else "Activate"
                admin_only(ui.button(label, on_click=lambda n=v.name: self.activate(n))
                           .props("outline dense no-caps").mark(f"activate-{v.name}"))


def _previous(versions: list) -> str | None:
    """The version created before the active one: what 'roll back' returns to."""
    ordered = sorted(versions, key=lambda v: v.created_at)
    for i, v in enumerate(ordered):
        if v.active and i > 0:
            return str(ordered[i - 1].name)
    return None


def _details(details: dict) -> str:
    """A model card's figures: what it was trained on, when, and how well it fits.

    >>> print(*_details({"created": "2026-12-04T06:01:37+00:00", "packets": 167484,
    ...       "sources": ["/x/lab.pcap", "b.pcap"], "time_span": {"seconds": 5400},
    ...       "metrics": {"best_val_loss": 0.01806, "best_epoch": 56, "epochs_run": 60,
    ...                   "calibration_packets": 33792}, "threshold": 0.999}
    ...       ).split(" · "), sep=chr(10))
    trained 2026-12-04 06:01 UTC on 167,484 packets (1.5 h of traffic) from lab.pcap, b.pcap
    validation loss 0.0181 (epoch 56 of 60)
    threshold 0.999 from 33,792 held-back packets
    >>> _details({})
    'no training figures recorded'
    """
    parts = []
    trained = details.get("created")
    packets = details.get("packets")
    if trained or packets:
        when = f" {trained[:16].replace('T', ' ')} UTC" if trained else ""
        what = f" on {packets:,} packets" if packets else ""
        seconds = (details.get("time_span") or {}).get("seconds")
        span = f" ({_duration(seconds)} of traffic)" if seconds else ""
        names = [Path(s).name for s in details.get("sources") or []]
        more = f" +{len(names) - 4} more" if len(names) > 4 else ""
        source = f" from {', '.join(names[:4])}{more}" if names else ""
        parts.append(f"trained{when}{what}{span}{source}")
    metrics = details.get("metrics") or {}
    if "best_val_loss" in metrics:
        epochs = (f" (epoch {metrics['best_epoch']} of {metrics['epochs_run']})"
                  if "best_epoch" in metrics and "epochs_run" in metrics else "")
        parts.append(f"validation loss {metrics['best_val_loss']:.4f}{epochs}")
    if "threshold" in details and "calibration_packets" in metrics:
        parts.append(f"threshold {details['threshold']:g} from "
                     f"{metrics['calibration_packets']:,} held-back packets")
    return " · ".join(parts) or "no training figures recorded"


def _duration(seconds: float) -> str:
    """Seconds in the unit a person reads them in.

    >>> _duration(90), _duration(5400), _duration(200000)
    ('2 min', '1.5 h', '2.3 days')
    """
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _collecting_text(source: str, from_file: bool, packets: int, running: bool) -> str:
    """What the page says while normal traffic is gathered: a file is read, not captured.

    >>> _collecting_text("lab.pcap", True, 12000, False)
    'Read 12,000 packets from lab.pcap: name the model and press Train.'
    >>> _collecting_text("eth0", False, 5, True)
    'Capturing normal traffic from eth0…'
    """
    if not from_file:
        return f"Capturing normal traffic from {source}…"
    if running:
        return f"Reading normal traffic from {source}…"
    return f"Read {packets:,} packets from {source}: name the model and press Train."


def _concerns_text(concerns: list) -> str:
    """One line per concern: '• few hosts: only 2 IP addresses took part: ...'."""
    return "\n".join(f"• {c.check}: {c.why}" for c in concerns)


def _refused(message: str) -> None:
    ui.notify(message, type="negative", multi_line=True)
