"""The interface picker, capture-filter box and bundled sample shared by the dashboard and
training pages; interfaces and filters are the controller's to list and check."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nicegui import ui

from netids.config import PROJECT_ROOT
from netids.controller import CaptureError, Controller
from netids.ui.frame import require_admin

log = logging.getLogger(__name__)

SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"  # 30 s of lab traffic
PROGRESS_SECONDS = 0.5  # how often the file progress bar is redrawn


def interface_options(controller: Controller) -> dict[str, str]:
    """Picker entries: 'any' (all interfaces) and every interface with its addresses."""
    options = {"any": "all interfaces"}
    try:
        for i in controller.interfaces():
            extra = f" ({', '.join(i.addresses)})" if i.addresses else ""
            options[i.name] = f"{i.name}{extra}" + ("" if i.up else " – down")
    except OSError as exc:  # the picker still offers "all interfaces"
        log.warning("cannot list interfaces: %s", exc)
    return options


def filter_problem(controller: Controller, expr: str | None) -> str | None:
    """Why a BPF filter is invalid, in plain words, or None when it compiles (or is empty)."""
    if not expr or not expr.strip():
        return None
    return controller.filter_problem(expr.strip())


def capture_target(controller: Controller, interface: str | None,
                   bpf: str | None) -> tuple[str | None, str | None] | None:
    """(interface or None for all, filter or None) from the form's values; None, after telling
    the user why, when the filter does not compile."""
    expr = (bpf or "").strip() or None
    problem = filter_problem(controller, expr)
    if problem:
        ui.notify(problem, type="negative")
        return None
    return (None if interface in (None, "", "any") else interface), expr


async def start_capture(controller: Controller, interface: str | None, bpf: str | None,
                        start: Callable[[str | None, str | None], Awaitable[None]],
                        failed: Callable[[str], None]) -> bool:
    """Start what the form describes with ``start(interface, filter)``: admins only, a filter
    that compiles, and a refusal told through ``failed``. True when it started."""
    if not require_admin():
        return False
    target = capture_target(controller, interface, bpf)
    if target is None:
        return False
    try:
        await start(*target)
    except CaptureError as exc:
        failed(str(exc))
        return False
    return True


def file_progress(controller: Controller) -> None:
    """How far the analysis of a file is: a bar and its packets, share, rate and time left,
    the figures ``score`` prints on a terminal. Hidden while no file is analysed."""
    with ui.column().classes("w-full gap-1").mark("file-progress") as box:
        bar = ui.linear_progress(value=0, show_value=False).props("rounded size=8px")
        text = ui.label("").classes("text-xs opacity-80").mark("file-progress-text")

    def refresh() -> None:
        progress = controller.live.progress
        box.set_visibility(progress is not None)
        if progress is not None:
            bar.set_value(progress.fraction or 0.0)
            text.set_text(("Done · " if progress.finished else "") + progress.describe())

    ui.timer(PROGRESS_SECONDS, refresh)
    refresh()
