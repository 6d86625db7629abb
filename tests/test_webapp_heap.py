"""The app takes what start-up built out of the garbage collector's scans, so that a full
collection under live traffic does not hold the event loop (and every page) for long."""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import pytest
from nicegui import Client
from nicegui.testing import User

from tests.support import app_paths  # noqa: F401 - app_paths: autouse, the app's argv


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


async def test_a_page_never_connected_is_dropped_and_a_connected_one_stays(
        user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    webapp = sys.modules["netids.webapp"]  # the running app's (the fixture imports it afresh)
    monkeypatch.setattr(webapp, "UNCONNECTED_SECONDS", 1.0)
    fetched = await user.http_client.get("/")  # a script's fetch: no websocket ever comes
    assert fetched.status_code == 200
    lonely = {c.id for c in Client.instances.values() if not c.has_socket_connection}
    assert lonely
    await asyncio.sleep(1.5)
    await user.open("/")  # a browser's view, built after the fetch's page is 1.5 s old
    await user.should_see("Live capture")
    assert not lonely & Client.instances.keys()
    assert any(c.has_socket_connection for c in Client.instances.values())
