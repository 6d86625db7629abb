"""Freed memory goes back to the kernel in the live app: glibc keeps freed blocks scattered
through its heaps, and the live pipeline hands their pages back every few seconds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from netids.config import Settings
from netids.controller import Controller
from tests.support import SAMPLE, AppProcess, clean_env, free_port

# 4,000 blocks of 64 KiB (from the heap, under glibc's mmap threshold), every tenth kept: the
# kept ones pin the heap, so free() cannot shrink it. RSS in MiB: full, freed, trimmed.
FRAGMENT = """
import sys
from netids.parallel.allocator import return_freed_memory
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
blocks = [bytearray(b"x" * 65536) for _ in range(4000)]
full = rss()
kept = blocks[::10]
del blocks
freed = rss()
assert return_freed_memory()
trimmed = rss()
print(full, freed, trimmed)
"""


def test_returning_freed_memory_shrinks_a_fragmented_heap() -> None:
    out = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    full, freed, trimmed = map(float, out.split())
    assert freed > full - 40  # 225 MiB freed, still held by the process
    assert trimmed < freed - 150  # handed back


async def test_the_live_pipeline_hands_freed_memory_back(tmp_path: Path,
                                                         trained_model: Path) -> None:
    c = Controller(replace(Settings(), db_url=f"sqlite:///{tmp_path / 'c.sqlite'}",
                           model_path=trained_model))
    c.open()
    c.heap.every = 0.0  # after every batch
    await c.start_file(SAMPLE)
    await c.wait()
    assert c.live.error == "" and c.live.packets > 0
    assert c.heap.trims >= 1
    await c.close()


RESTARTED = """
import os
from netids.parallel.allocator import restart_with_jemalloc
restart_with_jemalloc()
print("libjemalloc" in open("/proc/self/maps").read(), os.environ.get("LD_PRELOAD", "-"))
"""


def test_a_process_restarts_once_under_jemalloc_and_does_not_hand_it_on() -> None:
    """jemalloc is installed with the app (scripts/setup.sh); the restarted process has it
    loaded and keeps LD_PRELOAD out of what it runs. NETIDS_MALLOC=glibc keeps glibc's."""
    root = Path(__file__).resolve().parents[2]
    run = [sys.executable, "-c", RESTARTED]
    out = subprocess.run(run, capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.split() == ["True", "-"]
    kept = subprocess.run(run, capture_output=True, text=True, check=True, cwd=root,
                          env={**clean_env(), "NETIDS_MALLOC": "glibc"}).stdout
    assert kept.split() == ["False", "-"]


def test_the_app_serves_under_jemalloc(tmp_path: Path) -> None:
    port = free_port()
    app = AppProcess(["--port", str(port), "--db", f"sqlite:///{tmp_path / 'j.sqlite'}"],
                     clean_env(), tmp_path / "app.log")
    try:
        app.wait_http(f"http://127.0.0.1:{port}/")
        assert "libjemalloc" in Path(f"/proc/{app.proc.pid}/maps").read_text()
    finally:
        app.stop()
