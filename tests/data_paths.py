"""Where the shared captures live, and the skip used when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from netids.config import PROJECT_ROOT

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def shared_data() -> Path:
    """The shared capture folder, or skip the test saying why."""
    if not (SHARED_DATA / "MANIFEST.tsv").exists():
        pytest.skip(f"shared captures not found at {SHARED_DATA}")
    return SHARED_DATA


def all_captures() -> list[Path]:
    return sorted(p for p in shared_data().rglob("*") if p.suffix in (".pcap", ".pcapng"))
