"""Behaviour events in the app (``user`` fixture): analysing the bundled sample in the app
stores the behaviour layer's scan beside the packet model's events, and the history lists it
with its kind, level and why, and can filter by that kind."""

from __future__ import annotations

from nicegui.testing import User

from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    SAMPLE,
    app_paths,
    controller_of_app,
    until,
)


def rows(user: User) -> list[dict]:
    return user.find(marker="history-grid").elements.pop().options["rowData"]


async def test_the_history_shows_the_behaviour_layers_scan(user: User) -> None:
    await user.open("/")
    c = controller_of_app()
    await c.start_file(SAMPLE)
    await c.wait()
    assert c.store is not None and c.store.flush(10)
    await user.open("/history")
    await until(lambda: len(rows(user)) > 0, 10, "rows")
    scans = [r for r in rows(user) if r["kind"] == "vertical scan"]
    assert len(scans) == 1, sorted({r["kind"] for r in rows(user)})
    (scan,) = scans
    assert scan["src"] == "10.77.0.66" and scan["level"] == "high"
    assert "failed to connect to at least 106 host/port pairs" in scan["explanation"]
    assert {"port scan", "vertical scan"} <= {r["kind"] for r in rows(user)}
