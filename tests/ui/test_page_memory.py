"""Page views that never open a websocket (a script, a health check, a crawler fetching `/`)
must not keep memory once NiceGUI deletes their client: the real app, its pages fetched over
HTTP through the app's own ASGI stack, then NiceGUI's own pruning of never-connected clients."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from nicegui import Client
from nicegui.app.app import prune_user_storage
from nicegui.storage import Storage
from nicegui.testing import User

from netids.ui import frame
from tests.support import app_paths  # noqa: F401 - app_paths is an autouse fixture

VIEWS = 20


async def fetch_without_socket(user: User, path: str, views: int) -> list[Client]:
    """Fetch ``path`` ``views`` times over HTTP, as urllib would: no websocket follows."""
    before = set(Client.instances)
    for _ in range(views):
        response = await user.http_client.get(path)
        assert response.status_code == 200
    return [c for cid, c in Client.instances.items() if cid not in before]


@pytest.mark.parametrize("path", ["/", "/history"])
async def test_pages_fetched_without_a_websocket_are_freed_when_pruned(user: User,
                                                                       path: str) -> None:
    hooks_before = len(frame._dark_hooks)
    clients = await fetch_without_socket(user, path, VIEWS)
    assert len(clients) == VIEWS
    assert len(frame._dark_hooks) == hooks_before + VIEWS
    # every element of every view: the charts, the event table, the upload, the timers
    elements = [weakref.ref(e) for c in clients for e in c.elements.values()]
    views = [weakref.ref(c) for c in clients]
    del clients

    Client.prune_instances(client_age_threshold=0)  # what NiceGUI does 60 s after the fetch
    assert not any(v().id in Client.instances for v in views if v() is not None)
    assert len(frame._dark_hooks) == hooks_before
    kept = await alive_after(elements, seconds=5.0)  # timers end at their next tick
    # FastAPI's endpoint cache keeps each upload element (a bounded LRU cache): the bare
    # element, without its handlers, so none of its page (charts, event table, timers)
    kept = [name for name in kept if name != "PcapUpload"]
    assert kept == [], f"{len(kept)} elements of deleted pages still alive: {sorted(set(kept))}"
    assert [v for v in views if v() is not None] == []


async def test_page_views_without_a_cookie_leave_no_storage_files(user: User) -> None:
    """Each fetch without a cookie is a new browser: a view that changes no preference must
    not leave a user-storage file behind (a health check every 2 s would leave 43,200 a day)."""
    def files() -> int:
        return len(list(Storage.path.glob("storage-user-*.json")))

    before = files()
    await fetch_without_socket(user, "/", VIEWS)
    await fetch_without_socket(user, "/history", VIEWS)
    Client.prune_instances(client_age_threshold=0)
    await prune_user_storage(force=True)  # closes (and so flushes) every user's storage
    assert files() == before


async def alive_after(refs: list[weakref.ref], seconds: float) -> list[str]:
    """The types of the objects still alive after ``seconds``, or as soon as none is."""
    for _ in range(int(seconds / 0.25)):
        gc.collect()
        kept = [type(obj).__name__ for obj in (r() for r in refs) if obj is not None]
        if not kept:
            break
        await asyncio.sleep(0.25)
    return kept
