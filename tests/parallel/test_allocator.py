"""Freed memory goes back to the kernel in the live app: glibc keeps freed blocks scattered
through its heaps, and the live pipeline hands their pages back every few seconds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from netids.config import Settings
from netids.controller import Controller
from tests.support import SAMPLE

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
