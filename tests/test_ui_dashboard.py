"""The dashboard as a user drives it (NiceGUI ``user`` fixture): real app, model, files, DB."""

from __future__ import annotations

from pathlib import Path

from nicegui import ui
from nicegui.testing import User

from tests.ui_support import SAMPLE, AppPaths, app_paths, controller_of_app, until  # noqa: F401


async def test_the_dashboard_shows_controls_counters_and_charts(user: User,
                                                                app_paths: AppPaths) -> None:
    await user.open("/")
    await user.should_see("Start monitoring")
    await user.should_see("Try the bundled sample")
    await user.should_see(marker="threshold")
    for key in ("packets", "tcp", "udp", "other", "rate", "drops"):
        await user.should_see(marker=f"count-{key}")
    for chart in ("rate-chart", "protocol-chart", "score-chart"):
        await user.should_see(marker=chart)
    assert user.find(marker="interface").elements.pop().options["any"] == "all interfaces"
