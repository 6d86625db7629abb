"""``python app.py --native``: a real desktop window under Xvfb, and the one-line refusals.

Each run is a real app process in its own session; afterwards no process of that session may
be left (the window process, Qt WebEngine's zygotes and renderers included).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netids.config import PROJECT_ROOT
from tests.support import (
    AppProcess,
    clean_env,
    free_port,
    model_for_tests,
    session_processes,
    wait_until,
)

pytestmark = pytest.mark.slow
SCREENSHOTS = PROJECT_ROOT / "screenshots"


def _run_native(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[int, str],
                                               float]:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "app.py", "--native", "--port", str(free_port())],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    left = session_processes(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), left, elapsed


def test_no_display_is_one_line_and_a_non_zero_exit() -> None:
    env = clean_env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    done, left, elapsed = _run_native(env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: --native needs a graphical display")
    assert "without --native" in lines[0]
    assert not left
    assert elapsed < 60


def test_a_display_nobody_serves_is_one_line_too() -> None:
    if importlib.util.find_spec("webview") is None:
        pytest.skip('needs pywebview[qt] (pip install "pywebview[qt]")')
    unused = next(n for n in range(150, 250) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    done, left, elapsed = _run_native(clean_env(DISPLAY=f":{unused}"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot open display :{unused}" in lines[0]
    assert not left


# NiceGUI's window process, as it starts: spawned with the app's command line, it re-imports
# app.py as __mp_main__ while the parent already serves the port
_WINDOW_PROCESS = """
import multiprocessing, runpy, socket, sys
if __name__ == "__main__":
    server = socket.create_server(("127.0.0.1", 0))
    sys.argv = ["app.py", "--native", "--port", str(server.getsockname()[1])]
    child = multiprocessing.get_context("spawn").Process(
        target=runpy.run_path, args=("app.py",), kwargs={"run_name": "__mp_main__"})
    child.start()
    child.join(60)
    sys.exit(child.exitcode)
"""


def test_the_window_process_leaves_serving_and_its_port_to_the_parent() -> None:
    # it used to run the CLI's checks again and, whenever the parent had bound the port
    # first (a loaded machine), exit with "cannot serve on ... port: Address already in use"
    # instead of opening the window
    done = subprocess.run([sys.executable, "-c", _WINDOW_PROCESS], cwd=PROJECT_ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=90)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private X server (1280x800, 24 bit); yields its DISPLAY."""
    if not shutil.which("Xvfb") or not shutil.which("import"):
        pytest.skip("needs xvfb and imagemagick")
    if importlib.util.find_spec("webview") is None:
        pytest.skip('needs pywebview[qt] (pip install "pywebview[qt]")')
    read, write = _pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import os

    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    assert number, "Xvfb did not report a display"
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


def _pipe() -> tuple[int, int]:
    import os

    return os.pipe()


def _screenshot(display: str, out: Path) -> tuple[int, float]:
    """Grab the whole screen; returns (distinct colours, standard deviation 0..1)."""
    subprocess.run(["import", "-display", display, "-window", "root", str(out)], check=True,
                   capture_output=True, timeout=30)
    stats = subprocess.run(["convert", str(out), "-format", "%k %[fx:standard_deviation]",
                            "info:"], check=True, capture_output=True, text=True, timeout=30)
    colours, deviation = stats.stdout.split()
    return int(colours), float(deviation)


def _window_geometry(display: str) -> tuple[int, int, int] | None:
    """(X window id, width, height) of the window titled netids (or "netids · page")."""
    tree = subprocess.run(["xwininfo", "-display", display, "-root", "-tree"],
                          capture_output=True, text=True, timeout=10).stdout
    for line in tree.splitlines():
        found = re.match(r'\s*(0x[0-9a-f]+) "netids[^"]*": .*?(\d+)x(\d+)\+', line)
        if found:
            return int(found[1], 16), int(found[2]), int(found[3])
    return None


def _resize(display: str, window: int, width: int, height: int) -> None:
    """Resize an X window as a window manager would (libX11's XResizeWindow)."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XResizeWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_uint, ctypes.c_uint]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(display.encode())
    assert connection, f"cannot open {display}"
    x11.XResizeWindow(connection, window, width, height)
    x11.XFlush(connection)
    x11.XCloseDisplay(connection)


def test_the_window_shows_the_dashboard_at_1280x800_remembers_its_size_and_leaves_nothing(
        xvfb: str, tmp_path: Path) -> None:
    """Two starts, as a person would see them: the first window at 1280x800 is resized and
    closed with Ctrl-C (SIGINT), the second opens at that size and is ended with SIGTERM.
    Either way the window and Qt's helpers go too, and Qt prints no warnings."""
    config = tmp_path / "config"
    env = clean_env(DISPLAY=xvfb, XDG_CONFIG_HOME=str(config))
    for name in ("QT_LOGGING_RULES", "QTWEBENGINE_CHROMIUM_FLAGS"):
        env.pop(name, None)
    logs = []
    runs = [((1280, 800), signal.SIGINT), ((1000, 640), signal.SIGTERM)]
    for run, (expected, stop_signal) in enumerate(runs):
        app = AppProcess(["--native", "--port", str(free_port()), "--db",
                          f"sqlite:///{tmp_path / 'native.sqlite'}", "--model",
                          str(model_for_tests()), "--models-dir", str(tmp_path)],
                         env, tmp_path / f"native-{run}.log")
        try:
            wait_until(lambda a=app: a.proc.poll() is not None or _window_geometry(xvfb), 180,
                       "the window")
            assert app.proc.poll() is None, app.log()
            window, width, height = _window_geometry(xvfb)
            assert (width, height) == expected
            _shows_the_dashboard(app, xvfb, tmp_path / f"native-{run}.png")
            if run == 0:
                shutil.copy(tmp_path / "native-0.png", SCREENSHOTS / "native_window.png")
                _resize(xvfb, window, 1000, 640)
                wait_until(lambda: _window_geometry(xvfb)[1:] == (1000, 640), 10, "resize")
                time.sleep(1)  # the resize event reaches the server
        finally:
            code = app.stop(stop_signal, timeout=30)  # raises if anything of its session is left
        assert code == 128 + stop_signal
        logs.append(app.log())
        if run == 0:
            saved = json.loads((config / "netids" / "window.json").read_text())
            assert saved == {"width": 1000, "height": 640}
    lines = [line for log in logs for line in log.splitlines() if line.strip()]
    noise = [line for line in lines if not line.startswith("NiceGUI ready to go")
             and "shutdown is possibly blocked" not in line]  # NiceGUI's own notice
    assert noise == [], "\n".join(noise)  # no Qt warnings, no traceback, no "Vue failed"


def _shows_the_dashboard(app: AppProcess, display: str, shot: Path) -> None:
    """The window draws the dashboard (a page of many colours), through Qt WebEngine."""
    wait_until(lambda: app.proc.poll() is not None or _screenshot(display, shot)[0] > 500,
               timeout=90, what="the window to draw the dashboard")
    assert app.proc.poll() is None, app.log()
    time.sleep(2)  # let the charts and counters settle for the picture (Qt would warn by now)
    colours, deviation = _screenshot(display, shot)
    assert colours > 500 and deviation > 0.1, (colours, deviation)
    SCREENSHOTS.mkdir(exist_ok=True)
    tree = session_processes(app.session)
    assert any("QtWebEngineProcess" in cmd for cmd in tree.values()), tree
