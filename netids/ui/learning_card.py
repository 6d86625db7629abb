"""The dashboard's learning card: shown from the first live capture without a model trained on
this network until the learned model is active (or learning is skipped or fails).

It reads :attr:`Controller.learning` (progress, what is alerted and held) and, once training
runs, :attr:`Controller.training` (epochs, the report, concerns) on a timer, and offers the
commands: skip learning, train now, and for a model held for review, activate it or keep the
shipped one.
"""

from __future__ import annotations

import time

from nicegui import ui

from netids.controller import Controller
from netids.ui.frame import admin_only, is_admin, require_admin

REFRESH_SECONDS = 0.5
ENDED = {
    "done": "Learned this network: model {model} is active and alerts on every kind.",
    "review": "Learned this network, but model {model} may be unreliable: activate it anyway, "
              "or keep the shipped model.",
}


def card(controller: Controller) -> None:
    """The card, hidden while there is nothing to learn."""
    c = controller
    with ui.card().classes("w-full").mark("learning-card") as box:
        with ui.row().classes("w-full items-center gap-3"):
            ui.icon("school", color="primary").classes("text-2xl")
            headline = ui.label("").classes("text-base font-semibold flex-1") \
                .mark("learning-progress")
            train_now = admin_only(ui.button("Train now", on_click=lambda: _train_now(c))
                                   .props("outline dense no-caps").mark("learning-train-now"))
            skip = admin_only(ui.button("Skip learning", on_click=lambda: _skip(c))
                              .props("flat dense no-caps").mark("learning-skip"))
        bar = ui.linear_progress(value=0, show_value=False).props("rounded size=8px")
        held = ui.label("").classes("text-sm opacity-80").mark("learning-held")
        report = ui.label("").classes("text-sm whitespace-pre-wrap").mark("learning-report")
        with ui.row().classes("gap-2") as review:
            admin_only(ui.button("Activate anyway", on_click=lambda: _accept(c))
                       .props("color=warning dense no-caps").mark("learning-activate"))
            admin_only(ui.button("Keep the shipped model", on_click=lambda: _decline(c))
                       .props("flat dense no-caps").mark("learning-keep"))

    def refresh() -> None:
        s, t = c.learning, c.training
        box.set_visibility(s.phase != "off")
        if s.phase == "off":
            return
        now = time.monotonic()
        if s.phase == "learning":
            text = s.progress_text(now)
        elif s.phase == "training":
            text = "Learning this network: training on what it saw" + (
                f"… epoch {t.history[-1][0]}" if t.history else "…")
        else:
            text = ENDED.get(s.phase, s.message).format(model=t.model)
        headline.set_text(text)
        bar.set_visibility(s.phase in ("learning", "training"))
        bar.set_value(min((now - s.started) / s.seconds, 1.0) if s.phase == "learning" else 1.0)
        held.set_text(s.held_text() if s.holding else "")
        worries = "\n".join(f"- {w.why}" for w in t.concerns) if s.phase == "review" else ""
        report.set_text(t.report + (f"\n{worries}" if worries else "")
                        if s.phase in ("review", "done") else "")
        review.set_visibility(s.phase == "review")
        train_now.set_visibility(s.phase == "learning")
        train_now.set_enabled(is_admin() and c.can_train_learned())
        skip.set_visibility(s.phase in ("learning", "training"))

    ui.timer(REFRESH_SECONDS, refresh)
    refresh()


def _train_now(c: Controller) -> None:
    if require_admin() and not c.train_learned_now():
        ui.notify("Not enough traffic kept yet to train on.", type="warning")


def _skip(c: Controller) -> None:
    if require_admin():
        c.skip_learning()
        ui.notify("Learning skipped: every kind is alerted with the current model.")


async def _accept(c: Controller) -> None:
    if require_admin() and not await c.accept_trained():
        ui.notify(f"Not activated: {c.live.message}", type="negative", multi_line=True)


def _decline(c: Controller) -> None:
    if require_admin():
        c.decline_trained()
