"""``python app.py --native``: the UI in a desktop window (pywebview with Qt WebEngine).

NiceGUI opens the window in a child process. Before going native, :func:`prepare` checks that
there is a display and a working Qt (in a throw-away subprocess, so a missing system library
or an unreachable display is one line for the user, never a hang or a window process left
running a headless server). Shutting down ends the window process and its Qt WebEngine
helpers, also on SIGTERM (which by default kills the server and leaves them behind).

The window opens at 1280x800 the first time and at the size it had when it last closed after
that (:class:`WindowMemory`, a small JSON file in the user's config folder). Qt's and
Chromium's warnings (no Vulkan, no D-Bus, the disabled sandbox, page console messages) are
turned off before Qt starts, so the console shows netids' own lines; critical ones remain.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import multiprocessing
import multiprocessing.util
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from netids.parallel.procs import alive, processes

log = logging.getLogger(__name__)

PROBE_SECONDS = 20.0  # a Qt start-up that takes longer than this counts as failed
QT_APT = "libxcb-icccm4 libxcb-keysyms1"  # what Debian/Ubuntu images usually lack for Qt's xcb
INSTALL_HINT = (f'pip install "pywebview[qt]" and, on Debian/Ubuntu, apt install {QT_APT}; '
                "or run without --native and open the printed address in a browser")
# one Qt start in a clean interpreter: the platform plugin and WebEngine must load
_PROBE = ("import sys\n"
          "from qtpy.QtWidgets import QApplication\n"
          "from qtpy import QtWebEngineWidgets  # noqa: F401\n"
          "app = QApplication(sys.argv[:1])\n"
          "print(app.platformName())\n")
_QT_BINDINGS = ("PyQt6", "PySide6", "PyQt5", "PySide2")
DEFAULT_WINDOW = (1280, 800)  # width, height of the first window
WINDOW_LIMITS = (400, 16384)  # a remembered size outside this is ignored
# Qt: debug, info and warning messages off (critical stay), page console messages ("js") off;
# Qt WebEngine's Chromium: fatal messages only
QUIET_QT = {"QT_LOGGING_RULES": "*.debug=false;*.info=false;*.warning=false;js=false",
            "QTWEBENGINE_CHROMIUM_FLAGS": "--log-level=3"}


class NativeError(Exception):
    """Native mode cannot start here (one line saying why and what to do)."""


def prepare(environ: MutableMapping[str, str] | None = None) -> WindowMemory | None:
    """Check the display and Qt, set Qt's environment, and arrange a clean shutdown; return
    the window's remembered size (None in the window process, which re-imports app.py).

    Raises :class:`NativeError` with the one line to show. Call it in the main process
    before ``ui.run(native=True)``.
    """
    if in_window_process():
        return None  # the window process re-imports app.py: it must not check or install again
    env = os.environ if environ is None else environ
    problem = native_problem(env)  # reads Qt's warnings (why it cannot start): not quiet yet
    if problem:
        raise NativeError(problem)
    for name, value in QUIET_QT.items():
        env.setdefault(name, value)
    env.setdefault("PYWEBVIEW_GUI", "qt")  # pywebview would try GTK first
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")  # Chromium's sandbox refuses root
    _arrange_cleanup()
    return WindowMemory.load(window_file(env))


def in_window_process() -> bool:
    """Whether this is NiceGUI's window process: it is spawned with the app's command line
    and re-imports app.py while the parent serves, so the CLI must leave serving (and its
    checks, such as whether the port is free) to the parent."""
    return multiprocessing.current_process().name != "MainProcess"


def window_file(environ: Mapping[str, str]) -> Path:
    """Where the window's size is kept: ``$XDG_CONFIG_HOME/netids/window.json``, by default
    under ``~/.config``.

    >>> window_file({"XDG_CONFIG_HOME": "/cfg"}), window_file({"HOME": "/home/ann"})
    (PosixPath('/cfg/netids/window.json'), PosixPath('/home/ann/.config/netids/window.json'))
    """
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home())
                                                 / ".config")
    return Path(base) / "netids" / "window.json"


@dataclass
class WindowMemory:
    """The desktop window's size: read when it opens, followed as it is resized, written when
    the app shuts down."""

    path: Path
    size: tuple[int, int] = DEFAULT_WINDOW

    @classmethod
    def load(cls, path: Path) -> WindowMemory:
        """The size saved at ``path``; the default when there is none or it is unreadable."""
        try:
            saved = json.loads(path.read_text())
            size = (int(saved["width"]), int(saved["height"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls(path)
        return cls(path, size if _sane(size) else DEFAULT_WINDOW)

    def resized(self, width: int, height: int) -> None:
        if _sane((width, height)):
            self.size = (int(width), int(height))

    def save(self) -> None:
        """Write the size (atomically); a folder that cannot be written is only logged."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"width": self.size[0], "height": self.size[1]}) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot remember the window size in %s: %s", self.path, exc)


def _sane(size: tuple[int, int]) -> bool:
    low, high = WINDOW_LIMITS
    return all(low <= n <= high for n in size)


def native_problem(environ: Mapping[str, str]) -> str | None:
    """Why a native window cannot open here (one line), or None when it can."""
    display = environ.get("WAYLAND_DISPLAY") or environ.get("DISPLAY")
    if not display:
        return ("--native needs a graphical display, but DISPLAY and WAYLAND_DISPLAY are not "
                "set: start it from a desktop session, or run without --native and open "
                "the printed address in a browser")
    missing = [name for name in ("webview", "qtpy") if importlib.util.find_spec(name) is None]
    if not any(_has_webengine(binding) for binding in _QT_BINDINGS):
        missing.append("Qt WebEngine")
    if missing:
        return f"--native needs pywebview with Qt ({', '.join(missing)} missing): {INSTALL_HINT}"
    return _probe_qt(environ, display)


def _has_webengine(binding: str) -> bool:
    try:
        return importlib.util.find_spec(f"{binding}.QtWebEngineWidgets") is not None
    except (ImportError, ValueError):
        return False


def _probe_qt(environ: Mapping[str, str], display: str) -> str | None:
    """Start Qt once in a subprocess; a failure becomes one line naming the cause."""
    env = dict(environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
    try:
        proc = subprocess.Popen([sys.executable, "-c", _PROBE], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except OSError as exc:
        return f"--native cannot run the Qt check ({exc}): {INSTALL_HINT}"
    try:
        _, err = proc.communicate(timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        return (f"--native: Qt did not start within {PROBE_SECONDS:.0f} s on display {display}; "
                "run without --native and open the printed address in a browser")
    if proc.returncode == 0:
        return None
    if "could not connect to display" in err or "cannot open display" in err.lower():
        return (f"--native cannot open display {display} (is the X server running and may this "
                "user connect?); or run without --native and open the printed address in a "
                "browser")
    libs = _missing_qt_libraries()
    if libs:
        return (f"--native: Qt cannot start, missing system libraries {', '.join(libs)}: "
                f"{INSTALL_HINT}")
    reason = next((line.strip() for line in err.splitlines() if line.strip()
                   and "qt.qpa" not in line), f"exit status {proc.returncode}")
    return f"--native: Qt cannot start ({reason[:160]}): {INSTALL_HINT}"


def _missing_qt_libraries() -> list[str]:
    """Shared libraries Qt's xcb platform plugin needs but the system lacks (via ldd)."""
    for binding in _QT_BINDINGS:
        spec = importlib.util.find_spec(binding)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for plugin in root.glob("**/platforms/libqxcb.so"):
            try:
                out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True,
                                     timeout=10, check=False).stdout
            except (OSError, subprocess.TimeoutExpired):
                return []
            return sorted(set(re.findall(r"^\s*(\S+) => not found", out, re.MULTILINE)))
    return []


# -- shutdown ----------------------------------------------------------------------------------
_cleanup_arranged = False


def _arrange_cleanup() -> None:
    """End the window and its helpers on every way out: window closed, SIGTERM, SIGINT."""
    global _cleanup_arranged  # noqa: PLW0603
    if _cleanup_arranged:
        return
    _cleanup_arranged = True
    # Closing the window stops the app through NiceGUI, which runs atexit handlers at the end.
    atexit.register(end_window_processes)
    # On SIGTERM/SIGINT uvicorn shuts the app down gracefully, then re-raises the signal with
    # the handler it found: this one. Ending the window any earlier would make NiceGUI's
    # window watcher start a second shutdown in the middle of the first.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_after_shutdown)


def _exit_after_shutdown(signum: int, frame: object) -> None:
    from nicegui import core

    # The app has shut down already. NiceGUI's window watcher thread would see the window end
    # and start a second shutdown (tearing down pools that are gone: a traceback) while we
    # wait for the Qt processes; it calls core.stop_and_exit, so make that a no-op now.
    core.stop_and_exit = lambda: None
    end_window_processes()
    with contextlib.suppress(Exception):  # unlink the window queues' semaphores (no joins)
        multiprocessing.util._run_finalizers(0)  # type: ignore[attr-defined]
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)  # the app has shut down; skip NiceGUI's window watcher thread


def end_window_processes(grace: float = 3.0) -> list[int]:
    """Terminate the native window process and its Qt helpers (children of this process).

    The whole tree is listed first: once the window process dies its helpers are re-parented
    and could no longer be found. Returns the pids that were signalled.
    """
    tree = _descendants(os.getpid())  # pid -> (ppid, command line)
    # the window process is a multiprocessing child; NiceGUI's process pool workers are too,
    # and at shutdown they may go as well. The resource tracker stays: it exits by itself.
    targets = {pid for pid, (_, cmd) in tree.items()
               if "spawn_main" in cmd or "QtWebEngineProcess" in cmd}
    grown = True
    while grown:
        below = {pid for pid, (ppid, _) in tree.items() if ppid in targets} - targets
        targets |= below
        grown = bool(below)
    if not targets:
        return []
    for pid in sorted(targets):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid) for pid in targets):
        time.sleep(0.05)
    for pid in targets:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    log.info("ended %d window process(es)", len(targets))
    return sorted(targets)


def _descendants(root: int) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process below ``root``."""
    table = processes()
    found: dict[int, tuple[int, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for proc in table:
            if proc.ppid == parent and proc.pid not in found:
                found[proc.pid] = (proc.ppid, proc.cmd)
                frontier.append(proc.pid)
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
