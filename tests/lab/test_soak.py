"""A short soak in the lab, as bench/soak.py runs the long one: the real app monitors the lab's
bridge (``--interface br0 --netns ...``) while normal traffic, a spoofed flood, a wide scan
and a burst of malformed packets cross it. Every attack must become an event, memory must
stay flat after warm-up, and the dashboard must answer throughout."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from netids.config import PROJECT_ROOT
from netids.lab.network import PREFIX, lab_namespaces
from tests.support import free_port

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

FLAT_MIB = 64.0  # RSS growth allowed from the end of the warm-up to the end (as bench_flood)


@pytest.mark.slow
def test_a_short_soak_reports_every_attack_with_flat_memory_and_a_live_dashboard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "bench"))
    soak = importlib.import_module("soak")
    config = soak.SoakConfig(seconds=60, period=60, first=8, idle=6, warmup=30)

    result = soak.run_soak(config, tmp_path, free_port())

    assert [r.attack.name for r in result.runs] == [
        "spoofed flood", "wide scan", "malformed burst"]
    kinds = sorted({e.kind for m in result.matches for e in m})
    assert not result.missed(), f"attacks without an event: {result.missed()} (seen: {kinds})"
    busy = [m for t, m in result.rss if t >= result.traffic_start + config.warmup]
    assert len(busy) >= 5
    assert max(busy) - busy[0] <= FLAT_MIB, f"RSS grew {busy[0]:.0f} -> {max(busy):.0f} MiB"
    http = [s for _, s in result.http]
    assert len(http) >= 25 and max(http) < float("inf"), "a dashboard request went unanswered"
    assert sorted(http)[len(http) // 2] <= config.max_latency
    assert result.browser and all(live < float("inf") for _, _, live in result.browser), \
        "Chromium did not show the live dashboard"
    assert result.app_exit in (0, 130)  # stopped by Ctrl-C, cleanly
    assert "Traceback" not in (tmp_path / "app.log").read_text()
    assert lab_namespaces(f"{PREFIX}{os.getpid()}-") == []
