"""Helpers for the LAN-mode and native-mode tests: the app as a real process, a real browser.

The app runs exactly as a user starts it (``python app.py ...``) in its own session, with its
own users file, database and models folder; nothing of netids is imported or mocked here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from netids.config import DEFAULT_MODEL, PROJECT_ROOT
from netids.parallel.procs import processes

SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"
START_SECONDS = 60.0  # the app imports torch and opens the database: allow a slow machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child app: no pytest or NiceGUI test variables (NiceGUI would
    think it runs under pytest and pick the screen-test port), no credentials from outside."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "NICEGUI_")) and k not in {
               "NETIDS_ADMIN_PASSWORD_HASH", "NETIDS_USERS_FILE", "NETIDS_REQUIRE_LOGIN"}}
    env.update(extra)
    return env


def model_for_tests() -> Path:
    """The shipped model: a model that fails to load must fail these tests too, not be
    replaced behind their back."""
    assert DEFAULT_MODEL.exists(), f"{DEFAULT_MODEL} must ship with the project"
    return DEFAULT_MODEL


def add_user(users_file: Path, name: str, role: str, password: str) -> None:
    """``python app.py users add NAME --role ROLE --password-stdin`` (the real command)."""
    subprocess.run([sys.executable, "app.py", "users", "add", name, "--role", role,
                    "--password-stdin"], input=password + "\n", text=True, cwd=PROJECT_ROOT,
                   env=clean_env(NETIDS_USERS_FILE=str(users_file)), check=True,
                   capture_output=True, timeout=60)


class AppProcess:
    """``python app.py ARGS`` in its own session; ``stop()`` ends it and everything it started."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=PROJECT_ROOT,
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.session = self.proc.pid  # session id of the app and all its children

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"app did not answer {url} within {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the app, wait for it, then make sure nothing of its session is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        deadline = time.monotonic() + 5  # orphans get a moment to notice and exit by themselves
        while (leftovers := session_processes(self.session)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in leftovers:  # do not leak into other tests, but report it
            _kill(pid)
        self._log.close()
        if leftovers:
            raise AssertionError(f"processes left behind: {leftovers}")
        return int(self.proc.returncode)


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of the live processes in session ``sid``."""
    return {p.pid: p.cmd for p in processes() if p.sid == sid and p.alive}


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium driven by Selenium (no network, no Selenium Manager)."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        import pytest

        pytest.skip("needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--disable-gpu", "--window-size=1280,900",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
