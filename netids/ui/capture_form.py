"""The interface picker and capture-filter box shared by the dashboard and training pages."""

from __future__ import annotations

import logging

from nicegui import ui

from netids.capture.bpf import compile_filter
from netids.capture.interfaces import list_interfaces
from netids.capture.source import CaptureError

log = logging.getLogger(__name__)


def interface_options() -> dict[str, str]:
    """Picker entries: 'any' (all interfaces) and every interface with its addresses."""
    options = {"any": "all interfaces"}
    try:
        for i in list_interfaces():
            extra = f" ({', '.join(i.addresses)})" if i.addresses else ""
            options[i.name] = f"{i.name}{extra}" + ("" if i.up else " – down")
    except OSError as exc:  # the picker still offers "all interfaces"
        log.warning("cannot list interfaces: %s", exc)
    return options


def filter_problem(expr: str) -> str | None:
    """Why a BPF filter is invalid, in plain words, or None when it compiles (or is empty)."""
    if not expr or not expr.strip():
        return None
    try:
        compile_filter(expr.strip())
    except CaptureError as exc:
        return str(exc)
    return None


def capture_target(interface: str | None, bpf: str | None) -> tuple[str | None, str | None] | None:
    """(interface or None for all, filter or None) from the form's values; None, after telling
    the user why, when the filter does not compile."""
    expr = (bpf or "").strip() or None
    problem = filter_problem(expr or "")
    if problem:
        ui.notify(problem, type="negative")
        return None
    return (None if interface in (None, "", "any") else interface), expr
