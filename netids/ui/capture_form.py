"""The interface picker, capture-filter box and bundled sample shared by the dashboard and
training pages; interfaces and filters are the controller's to list and check.

Also what those pages may read from disk: a typed path only inside the captures folder
(:func:`capture_in_folder`), and uploads kept in a private folder per process until their
analysis ends (:func:`keep_upload`, :func:`discard_when_done`, :func:`clean_uploads`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from nicegui import events, ui

from netids.config import PROJECT_ROOT, FileSettings
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
# -- files from disk --------------------------------------------------------------------------
def outside_message(folder: Path) -> str:
    """The one refusal for every path outside the captures folder, existing or not."""
    return (f"Only files in the captures folder ({folder}) can be analysed: copy the file "
            "there and give its name.")


def capture_in_folder(text: str, folder: Path) -> Path | None:
    """The file ``text`` names inside ``folder`` (a relative name is taken inside it), with
    symlinks and ``..`` resolved; None when that lands outside the folder, whether or not
    anything is there. Nothing is opened or read here."""
    try:
        root = folder.resolve()
        path = (root / text).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte, a name too long
        return None
    return path if path != root and path.is_relative_to(root) else None


def chosen_capture(text: str, files: FileSettings) -> Path | None:
    """The capture file typed into a path field, or None after telling the user why not."""
    path = capture_in_folder(text, files.captures_dir)
    if path is None:
        ui.notify(outside_message(files.captures_dir), type="negative", multi_line=True)
        return None
    if not path.is_file():
        ui.notify(f"There is no file {path.relative_to(files.captures_dir.resolve())} in the "
                  f"captures folder ({files.captures_dir}).", type="negative", multi_line=True)
        return None
    return path


def size_in_words(size: int) -> str:
    """A size in the largest unit that divides it.

    >>> size_in_words(1024**3), size_in_words(512 * 1024**2), size_in_words(1500)
    ('1 GiB', '512 MiB', '1500 bytes')
    """
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def too_large_message(limit: int) -> str:
    return (f"That file is larger than the upload limit of {size_in_words(limit)}: copy it "
            "into the captures folder and give its name instead.")


def process_uploads(files: FileSettings) -> Path:
    """This process's folder for uploads (owner only), made on first use."""
    folder = files.uploads_dir / str(os.getpid())
    files.uploads_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


class PcapUpload(ui.upload):
    """``ui.upload`` that lets go of its handlers (and so of its page) when it is deleted.

    NiceGUI serves each upload from a route whose endpoint closes over the element, and
    FastAPI keeps up to 4,096 endpoints it has classified in an LRU cache (FastAPI 0.165's
    ``fastapi.dependencies.models``) after the route is removed. Through the upload handler,
    a bound method of its page, every dashboard view stayed alive with its charts and event
    table long after NiceGUI deleted its client: about 0.4 MiB per page view.
    """

    def _handle_delete(self) -> None:
        super()._handle_delete()
        self._begin_upload_handlers.clear()
        self._upload_handlers.clear()
        self._multi_upload_handlers.clear()


async def keep_upload(e: events.UploadEventArguments, files: FileSettings) -> Path:
    """Save an uploaded file, readable by its owner only, in a fresh folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=process_uploads(files)))
    target = folder / (Path(e.file.name).name or "upload.pcap")
    target.touch(mode=0o600)
    await e.file.save(target)
    return target


async def discard_when_done(controller: Controller, path: Path) -> None:
    """Delete an uploaded file's folder once the analysis reading it has ended."""
    try:
        await controller.wait()
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def prepare_folders(files: FileSettings) -> None:
    """At start: make the captures folder (so the path fields have a place to point to) and
    delete the uploads of processes that are gone."""
    try:
        files.captures_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot make the captures folder %s: %s", files.captures_dir,
                    exc.strerror or exc)
    clean_uploads(files)


def clean_uploads(files: FileSettings) -> int:
    """Delete the uploads of processes that are gone (left by a crash or a kill); returns how
    many folders went."""
    try:
        folders = [p for p in files.uploads_dir.iterdir() if p.is_dir()]
    except OSError:
        return 0
    gone = [p for p in folders if not _running(p.name) or p.name == str(os.getpid())]
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    if gone:
        log.info("deleted %d folder(s) of old uploads in %s", len(gone), files.uploads_dir)
    return len(gone)


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
