"""The shared page frame: header with navigation, dark/light toggle, and the admin check.

Every control that changes state (start/stop, filter, threshold, training, model activation)
asks :func:`is_admin` first, and its handler :func:`require_admin`. Both ask the app's
:class:`~netids.ui.gate.Auth` (``app.state.auth``, made by ``netids.ui.login.install_auth``):
without LAN mode everybody is admin; with it, a viewer may only read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from nicegui import app, context, ui
from nicegui.elements.mixins.disableable_element import DisableableElement

from netids.ui import theme
from netids.ui.gate import current_auth

E = TypeVar("E", bound=DisableableElement)

PAGES = (("/", "Live", "monitor_heart"), ("/history", "History", "history"),
         ("/training", "Training", "model_training"), ("/rules", "Rules", "rule"))


def is_admin() -> bool:
    """Whether the current user may change state; True when no auth is installed."""
    auth = current_auth()
    return True if auth is None else auth.role() == "admin"


def require_admin() -> bool:
    """:func:`is_admin`, telling a viewer in plain words when it is not."""
    if is_admin():
        return True
    ui.notify("Only an admin can do that: you are signed in as a viewer.", type="warning")
    return False


def admin_only(element: E) -> E:
    """Disable a control for viewers (its handler checks :func:`require_admin` as well)."""
    if not is_admin():
        element.disable()
        element.tooltip("admin only")
    return element


def is_dark() -> bool:
    return bool(app.storage.user.get("dark", False))


def on_dark_change(callback: Callable[[], None]) -> None:
    """Call ``callback`` when this page's user switches dark/light (charts recolour)."""
    _dark_hooks.setdefault(context.client.id, []).append(callback)


_dark_hooks: dict[str, list[Callable[[], None]]] = {}


def _toggle_dark(dark: ui.dark_mode, button: ui.button, tip: ui.tooltip) -> None:
    dark.toggle()
    app.storage.user["dark"] = bool(dark.value)  # other tabs of this user follow (binding)
    _show_mode_switch(button, tip, bool(dark.value))
    for callback in _dark_hooks.get(context.client.id, []):
        callback()


def _show_mode_switch(button: ui.button, tip: ui.tooltip, dark: bool) -> None:
    """The toggle shows the mode it switches to: a sun in dark mode, a moon in light."""
    button.props["icon"] = "light_mode" if dark else "dark_mode"
    button.props["aria-label"] = f"switch to {'light' if dark else 'dark'} mode"
    button.update()
    tip.set_text(f"switch to {'light' if dark else 'dark'} mode")


@contextmanager
def frame(title: str) -> Iterator[None]:
    """Header, navigation and the dark toggle; the page content goes inside the ``with``."""
    ui.add_css(theme.CSS)
    # read only: a view that never toggles writes no storage file (a fetch without a cookie
    # is a new user each time, and its file would stay on disk)
    dark = ui.dark_mode(is_dark()).bind_value_from(app.storage.user, "dark")
    ui.page_title(f"netids · {title}")
    client_id = context.client.id
    context.client.on_delete(lambda: _dark_hooks.pop(client_id, None))
    with ui.header(elevated=True).classes("items-center gap-4 px-4 py-2 bg-slate-800"):
        ui.icon("shield", size="28px").classes("text-amber-400")
        ui.label("netids").classes("text-xl font-semibold tracking-wide")
        with ui.row().classes("gap-1"):
            for path, label, icon in PAGES:
                ui.button(label, icon=icon, on_click=lambda p=path: ui.navigate.to(p)).props(
                    f"flat no-caps color=white {'outline' if label == title else ''}"
                ).mark(f"nav-{label.lower()}")
        ui.space()
        auth = current_auth()
        for extra in auth.header_extras if auth is not None else ():
            extra()
        with ui.button(on_click=lambda: _toggle_dark(dark, toggle, tip)) \
                .props("flat round color=white").classes("nid-dark-toggle").mark("dark-toggle") \
                as toggle:
            tip = ui.tooltip("")
        _show_mode_switch(toggle, tip, bool(dark.value))
    with ui.column().classes("w-full max-w-screen-2xl mx-auto p-4 gap-4"):
        yield
