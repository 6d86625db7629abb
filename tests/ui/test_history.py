"""The history page (``user`` fixture): stored events filtered, paged and exported by the
database, charts of events over time and top sources/targets, and database trouble."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nicegui.testing import User
from sqlmodel import Session

from netids.store.export import read_export
from netids.store.queries import EventFilter, count_events, query_events
from netids.ui import history
from netids.ui.theme import FLAGGED
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    SAMPLE,
    AppPaths,
    app_paths,
    controller_of_app,
    until,
)


async def fill(user: User) -> int:
    """Analyse the bundled sample through the app's controller and wait until it is stored."""
    await user.open("/")
    c = controller_of_app()
    await c.start_file(SAMPLE)
    await c.wait()
    assert c.store is not None and c.store.flush(10)
    with Session(c.engine) as session:
        return count_events(session=session)


def rows(user: User) -> list[dict]:
    return user.find(marker="history-grid").elements.pop().options["rowData"]


async def test_stored_events_are_listed_with_charts(user: User) -> None:
    total = await fill(user)
    assert total > 0
    await user.open("/history")
    await user.should_see(f"{total:,} events match", retries=20)
    assert len(rows(user)) == min(total, history.History.page_size)
    newest = [r["last_seen"] for r in rows(user)]
    assert newest == sorted(newest, reverse=True)
    minute = user.find(marker="minute-chart").elements.pop().options["series"][0]["data"]
    assert sum(minute) == total
    sources = user.find(marker="sources-chart").elements.pop().options
    assert sources["series"][0]["data"] and sources["yAxis"]["data"]


async def test_filters_narrow_the_list_in_the_database(user: User) -> None:
    total = await fill(user)
    c = controller_of_app()
    with Session(c.engine) as session:
        some = query_events(session=session, limit=1)[0]
    await user.open("/history")
    await user.should_see(f"{total:,} events match", retries=20)
    user.find(marker="filter-proto").elements.pop().set_value(some.proto)
    user.find(marker="filter-kind").type(some.kind)
    user.find(marker="filter-apply").click()
    expected = EventFilter(proto=some.proto, kind=some.kind)
    with Session(c.engine) as session:
        n = count_events(session=session, filter=expected)
    await user.should_see(f"{n:,} events match", retries=20)
    await until(lambda: len(rows(user)) == min(n, history.History.page_size) and all(
        r["proto"] == some.proto and r["kind"] == some.kind for r in rows(user)), 5,
        "only matching rows")
    user.find(marker="filter-clear").click()
    await user.should_see(f"{total:,} events match", retries=20)
    cidr = (some.dst or some.src) + ("/24" if ":" not in (some.dst or some.src) else "/64")
    box = "filter-dst" if some.dst else "filter-src"
    user.find(marker=box).type(cidr)
    user.find(marker="filter-severity").elements.pop().set_value("anomalous")
    user.find(marker="filter-score").elements.pop().set_value(0.5)
    user.find(marker="filter-since").type("2000-01-01T00:00")
    user.find(marker="filter-until").type("2100-01-01T00:00")
    user.find(marker="filter-apply").click()
    key = "dst" if some.dst else "src"
    expected = EventFilter(**{key: cidr}, min_severity="anomalous", min_score=0.5)
    with Session(c.engine) as session:
        n = count_events(session=session, filter=expected)
    assert n >= 1
    await user.should_see(f"{n:,} events match", retries=20)
    await until(lambda: len(rows(user)) == min(n, history.History.page_size) and all(
        r["level"] in FLAGGED and r["score"] >= 0.5 for r in rows(user)), 5,
        "only matching rows")


async def test_a_bad_address_filter_is_explained(user: User) -> None:
    await user.open("/history")
    user.find(marker="filter-src").type("10.0.0.300/8")
    await user.should_see("not an address or CIDR")
    user.find(marker="filter-apply").click()
    await user.should_see("not an address or CIDR: '10.0.0.300/8'")


async def test_paging_is_done_by_the_database(user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    total = await fill(user)
    assert total > 6
    monkeypatch.setattr(history.History, "page_size", 3)
    await user.open("/history")
    await user.should_see(f"1–3 of {total:,}", retries=20)
    first = [r["id"] for r in rows(user)]
    user.find(marker="history-next").click()
    await user.should_see(f"4–6 of {total:,}", retries=20)
    second = [r["id"] for r in rows(user)]
    assert len(second) == 3 and not set(first) & set(second)
    user.find(marker="history-prev").click()
    await user.should_see(f"1–3 of {total:,}", retries=20)


async def test_export_writes_the_filtered_events(user: User) -> None:
    total = await fill(user)
    await user.open("/history")
    await user.should_see(f"{total:,} events match", retries=20)
    user.find(marker="export-csv").click()
    csv_text = (await user.download.next(timeout=5)).text
    assert csv_text.startswith("timestamp,end,event_id") and len(csv_text.splitlines()) == total + 1
    user.find(marker="filter-severity").elements.pop().set_value("anomalous")
    user.find(marker="export-jsonl").click()
    lines = (await user.download.next(timeout=5)).text.splitlines()
    assert lines and all(json.loads(line)["severity"] == "anomalous" for line in lines)
    assert len(lines) <= total


async def test_clicking_a_stored_event_opens_its_detail(user: User) -> None:
    await fill(user)
    await user.open("/history")
    await until(lambda: len(rows(user)) > 0, 5, "rows")
    row = rows(user)[0]
    user.find(marker="history-grid").trigger("cellClicked", {"data": row, "rowIndex": 0})
    await user.should_see(marker="event-detail", retries=20)
    await user.should_see(row["explanation"])
    user.find(marker="detail-csv").click()
    record = read_export_text((await user.download.next()).text)
    assert record["event_id"] == row["id"]


def read_export_text(text: str) -> dict:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.csv"
        path.write_text(text)
        return read_export(path)[0]


@pytest.fixture
def broken_db(app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
              tmp_path: Path) -> str:
    """A database URL that cannot be opened: a file where a folder should be."""
    (tmp_path / "not-a-dir").write_text("x")
    url = f"sqlite:///{tmp_path / 'not-a-dir' / 'netids.sqlite'}"
    import sys

    argv = list(sys.argv)
    argv[argv.index("--db") + 1] = url
    monkeypatch.setattr(sys, "argv", argv)
    return url


async def test_database_trouble_is_a_notification_and_the_app_stays_up(
        broken_db: str, user: User) -> None:
    await user.open("/")
    await user.should_see("database unavailable")
    await user.should_see("Try the bundled sample")
    c = controller_of_app()
    await c.start_file(SAMPLE)
    await c.wait()
    assert c.live.packets > 0 and c.live.error == ""
    await user.open("/history")
    await user.should_see(marker="history-unavailable")
    user.find(marker="export-csv").click()
    await user.should_see("No database")


async def test_a_locked_database_is_a_notification_and_events_are_written_later(
        user: User, app_paths: AppPaths) -> None:  # noqa: F811
    import sqlite3

    await user.open("/")
    c = controller_of_app()
    lock = sqlite3.connect(app_paths.db_path, timeout=0)
    lock.execute("BEGIN EXCLUSIVE")  # another process holding the database
    try:
        user.find(marker="pcap-path").type(SAMPLE.name)
        user.find(marker="analyse").click()
        await until(lambda: c.store is not None and c.store.stats.failures > 0, 30,
                    "a failed write")
        await user.should_see("Database trouble", retries=30)
        await user.should_see("Try the bundled sample")
    finally:
        lock.rollback()
        lock.close()
    await until(lambda: not c.live.running, 60, "the analysis to end")
    await until(lambda: c.store.stats.pending == 0, 30, "the queued events to be written")
    with Session(c.engine) as session:
        assert count_events(session=session) == len({u.id for u in c.live.events})
