"""Fixtures and helpers shared by the UI tests (``tests/test_ui_*.py``).

The app runs as users start it: NiceGUI's ``user`` and ``screen`` fixtures execute ``app.py``
(``main_file`` in pyproject.toml) with the command line set here, so every test has its own
SQLite database, models folder and the shipped model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from netids.capture.pcapfile import read_batches, write_pcap
from netids.config import PROJECT_ROOT
from netids.detect.frames import LINKTYPE_ETHERNET

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try the network
if "CHROME_BINARY_LOCATION" not in os.environ and shutil.which("chromium"):
    os.environ["CHROME_BINARY_LOCATION"] = str(shutil.which("chromium"))

SAMPLE = PROJECT_ROOT / "netids" / "samples" / "lab_sample.pcap"
# the browser tests' pictures: screenshots/ (not in git) on every run; docs/, which the README
# shows, only when asked (NETIDS_UPDATE_DOCS=1), so a test run leaves the tree clean
SHOTS = PROJECT_ROOT / ("docs" if os.environ.get("NETIDS_UPDATE_DOCS") == "1" else "screenshots")


@dataclass
class AppPaths:
    db_url: str
    db_path: Path
    models_dir: Path
    model: Path


@pytest.fixture(autouse=True)  # autouse: set before ``user``/``screen`` run app.py
def app_paths(tmp_path: Path, trained_model: Path, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    """Command line of the app under test: its own database and models folder, and the model
    that ships (tests/conftest.py)."""
    db = tmp_path / "ui.sqlite"
    models = tmp_path / "models"
    models.mkdir()
    paths = AppPaths(f"sqlite:///{db}", db, models, trained_model)
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", paths.db_url, "--model",
                                      str(trained_model), "--models-dir", str(models)])
    return paths


def controller_of_app():
    """The controller of the running app (tests wait on it; they assert on what is shown)."""
    from nicegui import app

    return app.state.controller


def small_pcap(path: Path, packets: int) -> Path:
    """The first ``packets`` frames of the bundled sample, as a pcap file."""
    frames: list[tuple[float, bytes, int]] = []
    for batch in read_batches(SAMPLE):
        for i in range(len(batch)):
            frames.append((float(batch.ts[i]), batch.frame(i), int(batch.wirelen[i])))
            if len(frames) >= packets:
                break
        if len(frames) >= packets:
            break
    write_pcap(path, frames, linktype=LINKTYPE_ETHERNET)
    return path


async def until(condition: Callable[[], bool], timeout: float = 20.0,
                what: str = "condition") -> None:
    """Wait (letting the app run) until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Blocking :func:`until` for ``screen`` tests (the app runs in its own thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
