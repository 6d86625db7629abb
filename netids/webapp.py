"""The NiceGUI app: builds the pages around one :class:`~netids.controller.Controller` and
serves them.

``build(controller)`` registers the pages and ties the controller's life to the app's
(``app.on_startup(controller.open)``, ``app.on_shutdown(controller.close)``); ``serve(settings)``
does that and calls ``ui.run``. Importing this module starts nothing.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from nicegui import Client, app, ui

from netids.capture.source import CaptureError
from netids.config import Settings
from netids.controller import Controller
from netids.native import WindowMemory
from netids.ui import dashboard, frame, history, rules, training
from netids.ui.capture_form import prepare_folders, too_large_message
from netids.ui.http_guards import SecurityHeaders, UploadLimit

log = logging.getLogger(__name__)

# a page whose browser has not connected its websocket within this many seconds is dropped
# when the next dashboard is built (NiceGUI waits 60 s): a browser connects within a second
# or two, while a page fetched by a script that never connects (a health check, the soak's
# fetches) held its whole dashboard and made every full garbage collection longer
UNCONNECTED_SECONDS = 15.0

# LAN security hook, called once while the app is built: by default
# ``netids.ui.login.install_auth(settings, host=settings.host)``, which keeps the app's
# ``Auth`` in ``app.state.auth`` (the role check and header items the frame asks) and (beyond
# loopback) puts the login gate in front of every page, upload and socket message; it raises
# ``LanConfigError`` when a login is needed and no account exists.
AuthHook = Callable[[Settings], object]


def build(controller: Controller, *, auth: AuthHook | None = None) -> None:
    """Register the pages and the controller's start-up and shut-down."""
    app.state.controller = controller  # for tests and add-ons; pages get it passed
    app.on_startup(controller.open)
    app.on_shutdown(controller.close)
    files = controller.settings.files
    app.on_startup(lambda: prepare_folders(files))
    if controller.settings.monitor is not None:
        app.on_startup(lambda: start_monitoring(controller))
    app.on_startup(settle_heap)  # after the model and the database are loaded
    app.on_shutdown(gc.unfreeze)
    app.add_middleware(UploadLimit, limit=files.upload_limit,
                       message=too_large_message(files.upload_limit))
    install_auth(controller.settings, auth)
    app.add_middleware(SecurityHeaders)  # outermost: the gate's redirects and refusals too

    @ui.page("/")
    def dashboard_page() -> None:
        prune_unconnected()  # before building another: page fetches come faster than 60 s
        with frame.frame("Live"):
            dashboard.page(controller)

    @ui.page("/history")
    def history_page(view: str = "events", event: str = "") -> None:
        with frame.frame("History"):
            history.page(controller, view, event[:64])

    @ui.page("/training")
    def training_page() -> None:
        with frame.frame("Training"):
            training.page(controller)

    @ui.page("/rules")
    def rules_page() -> None:
        with frame.frame("Rules"):
            rules.page(controller)


def settle_heap() -> None:
    """Take what start-up built (modules, the model, torch's and NiceGUI's registries: some
    400,000 objects that live as long as the app) out of the garbage collector's scans.

    Under live traffic a full collection ran every few seconds over all of them, finding almost
    nothing, and held the event loop (and so every page) each time; frozen, it scans only what
    traffic and page views made since. Frozen objects are still freed when unreferenced.
    """
    gc.collect()
    gc.freeze()


def prune_unconnected() -> None:
    """Drop pages not connected after :data:`UNCONNECTED_SECONDS` (NiceGUI's own timer drops
    them after 60 s)."""
    Client.prune_instances(client_age_threshold=UNCONNECTED_SECONDS)


async def start_monitoring(controller: Controller) -> None:
    """``--interface``: monitor from start-up; a failure is one line in the log and on the
    dashboard, and the app keeps serving (the form can start another capture)."""
    settings = controller.settings
    try:
        await controller.start_live(settings.monitor, netns=settings.monitor_netns)
    except CaptureError as exc:
        controller.live.error = controller.live.message = f"--interface {settings.monitor}: {exc}"
        log.error("%s", controller.live.message)


def install_auth(settings: Settings, auth: AuthHook | None = None) -> None:
    """Plug in LAN security: the given hook, else the login gate of ``netids.ui.login``.

    Either keeps this app's ``netids.ui.gate.Auth`` in ``app.state.auth``; a previous app's
    is forgotten first (none installed: everybody is admin).
    """
    app.state.auth = None
    if auth is None:
        from netids.ui import login

        login.install_auth(settings, host=settings.host)
    else:
        auth(settings)


def serve(settings: Settings, *, native: bool = False, storage_secret: str | None = None,
          show: bool = False, auth: AuthHook | None = None,
          window: WindowMemory | None = None) -> None:
    """Build the app around a new controller and run it (returns when the server stops).
    ``window``: the desktop window's remembered size, followed and saved (native mode)."""
    from netids.ui import login

    controller = Controller(settings)
    build(controller, auth=auth)
    if native and window is not None:
        app.native.on("resized", lambda e: window.resized(e.args["width"], e.args["height"]))
        app.on_shutdown(window.save)
    ui.run(
        host=settings.host,
        port=settings.port,
        title="netids",
        favicon="🛡️",
        native=native,
        window_size=window.size if native and window is not None else None,
        reload=False,
        show=show,
        storage_secret=storage_secret or login.storage_secret(settings),
        show_welcome_message=True,
    )
