"""The app takes what start-up built out of the garbage collector's scans, so that a full
collection under live traffic does not hold the event loop (and every page) for long."""

from __future__ import annotations

import gc
import time

from nicegui.testing import User

from tests.support import app_paths  # noqa: F401 - autouse: the app's command line


def collect_seconds() -> float:
    start = time.perf_counter()
    gc.collect()
    return time.perf_counter() - start


async def test_a_full_collection_after_start_up_scans_only_what_came_since(user: User) -> None:
    await user.open("/")
    await user.should_see("Live capture")
    assert gc.get_freeze_count() > 50_000  # modules, the model, NiceGUI's registries
    settled = min(collect_seconds() for _ in range(3))
    gc.unfreeze()  # as it was before: every object in every full collection
    everything = min(collect_seconds() for _ in range(3))
    gc.freeze()
    assert settled < everything / 3
