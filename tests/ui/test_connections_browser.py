"""The history page's Connections view in headless Chromium (NiceGUI ``screen`` fixture):
connections the app stored while analysing a capture, filtered by the database, packet and
sensor text shown as text, and the connections behind an event opened from its detail."""

from __future__ import annotations

from datetime import UTC, datetime

from nicegui.testing import Screen
from selenium.webdriver.common.by import By
from sqlalchemy import Engine
from sqlmodel import Session

from netids.store.conn_queries import ConnFilter, count_connections
from netids.store.queries import query_events
from netids.store.tables import Connection, address_key
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    AppPaths,
    app_paths,
    controller_of_app,
    wait_until,
)
from tests.ui.test_browser import WIDE, analyse_sample_fully, grid_column, js, open_page, press


def hostile_row() -> Connection:
    now = datetime.now(UTC)
    return Connection(uid="C<img src=x onerror=window.pwned=1>", sensor="<b>edge</b>", ts=now,
                      last_ts=now, orig_h="192.0.2.7", orig_key=address_key("192.0.2.7"),
                      orig_p=5, resp_h="192.0.2.9", resp_key=address_key("192.0.2.9"),
                      resp_p=6, proto="tcp", service="<i>odd</i>", conn_state="S0",
                      history="S", orig_pkts=1, orig_ip_bytes=40, resp_pkts=0,
                      resp_ip_bytes=0)



SAMPLE_CONNECTIONS = 8705  # records of the bundled lab sample (tests/store/test_connections.py)

def see(screen: Screen, text: str) -> None:
    """``text`` on the page within 15 s: counting thousands of connections takes a while on a
    busy machine (NiceGUI's should_contain waits 3 s)."""
    wait_until(lambda: text in screen.selenium.page_source, 15, repr(text))


def all_written(engine: Engine) -> None:
    """Wait until every connection of the bundled sample is stored: the last ones are
    written when the stream ends, after its events."""
    def count() -> int:
        with Session(engine) as session:
            return count_connections(session=session)
    wait_until(lambda: count() == SAMPLE_CONNECTIONS, 15, "the sample's connections")

def test_connections_view_lists_filters_and_escapes(screen: Screen,
                                                    app_paths: AppPaths) -> None:  # noqa: F811
    open_page(screen, "/")
    analyse_sample_fully(screen)
    c = controller_of_app()
    assert c.store is not None and c.store.flush(10)
    all_written(c.engine)
    with Session(c.engine) as session:
        session.add(hostile_row())
        session.commit()
        total = count_connections(session=session)
        rej = count_connections(session=session, filter=ConnFilter(state="REJ",
                                                                   host="10.77.0.0/24"))
    assert total == SAMPLE_CONNECTIONS + 1 and 0 < rej < total
    open_page(screen, "/history?view=connections", WIDE)
    see(screen, f"{total:,} connections match")
    screen.should_contain("<i>odd</i>")  # packet and sensor text as text, never as HTML
    screen.should_contain("<b>edge</b>")
    assert js(screen, "return window.pwned === undefined")
    assert not screen.selenium.find_elements(By.CSS_SELECTOR, ".nicegui-aggrid img")
    host = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Host address'
                                                  '")]]//input')
    host.send_keys("10.77.0.0/24")
    screen.selenium.find_element(By.XPATH, '//label[.//div[text()="State"]]').click()
    screen.selenium.find_element(By.XPATH, '//div[contains(@class, "q-menu")]//div[contains('
                                           '@class, "q-item")][.//span[text()="REJ"]]').click()
    press(screen, "Apply")
    see(screen, f"{rej:,} connections match")
    wait_until(lambda: set(grid_column(screen, "conn_state")) == {"REJ"}, 10, "only REJ rows")
    assert all(h.startswith("10.77.0.") for h in grid_column(screen, "orig_h"))


def test_an_event_opens_the_connections_behind_it(screen: Screen,
                                                  app_paths: AppPaths) -> None:  # noqa: F811
    open_page(screen, "/")
    analyse_sample_fully(screen)
    c = controller_of_app()
    assert c.store is not None and c.store.flush(10)
    all_written(c.engine)
    with Session(c.engine) as session:
        flood = max((e for e in query_events(session=session, limit=None)
                     if e.kind == "flood" and e.proto == "TCP"), key=lambda e: e.packets)
        behind = count_connections(session=session, filter=ConnFilter(event=flood.id))
    assert behind > 100
    open_page(screen, "/history", WIDE)
    wait_until(lambda: grid_column(screen, "kind"), 10, "stored events")
    cells = screen.selenium.find_elements(By.CSS_SELECTOR, '.ag-row [col-id="packets"]')
    next(cell for cell in cells if cell.text.replace(",", "") == str(flood.packets)).click()
    screen.should_contain(f"Connections behind this event ({behind:,})")
    press(screen, f"Connections behind this event ({behind:,})")
    see(screen, f"{behind:,} connections match")
    screen.should_contain(f"Connections behind the event flood: {flood.src}")
    wait_until(lambda: set(grid_column(screen, "resp_p")) == {str(flood.dst_port)}, 10,
               "the flood's connections")
    press(screen, "Show all connections")
    with Session(c.engine) as session:
        total = count_connections(session=session)
    see(screen, f"{total:,} connections match")
