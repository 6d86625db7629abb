"""Rules in headless Chromium (NiceGUI ``screen``): an event of the bundled sample marked as
expected from its detail dialog (source widened to a subnet) writes a rule; the Rules page
lists it, as text, with its counts, and removes it."""

from __future__ import annotations

from nicegui.testing import Screen
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from sqlmodel import Session

from netids.store.queries import query_events
from netids.store.rules import Rule, add_rule, list_rules
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    AppPaths,
    app_paths,
    controller_of_app,
    wait_until,
)
from tests.ui.test_browser import WIDE, analyse_sample_fully, grid_column, js, open_page, press


def rules_now() -> list:
    with Session(controller_of_app().engine) as session:
        return list_rules(session=session)


def test_mark_as_expected_then_remove_on_the_rules_page(screen: Screen,
                                                         app_paths: AppPaths) -> None:  # noqa: F811
    open_page(screen, "/")
    analyse_sample_fully(screen)
    c = controller_of_app()
    assert c.store is not None and c.store.flush(10)
    with Session(c.engine) as session:
        scan = next(e for e in query_events(session=session, limit=None)
                    if e.kind == "port scan" and e.src == "10.77.0.66")
    open_page(screen, "/history", WIDE)
    wait_until(lambda: grid_column(screen, "kind"), 10, "stored events")
    rows = screen.selenium.find_elements(By.CSS_SELECTOR, ".ag-center-cols-container .ag-row")
    next(r for r in rows if "port scan" in r.text and "10.77.0.66" in r.text).click()
    screen.should_contain("Mark as expected")
    press(screen, "Mark as expected")
    wait_until(lambda: "Expires after days" in screen.selenium.page_source, 20, "the rule dialog")
    src = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Source (ad'
                                                 'dress")]]//input')
    assert src.get_attribute("value") == "10.77.0.66"
    src.send_keys(Keys.CONTROL, "a", Keys.NULL, Keys.BACKSPACE, "10.77.0.0/24")
    press(screen, "Save rule")
    screen.should_contain("Rule saved")
    wait_until(lambda: len(rules_now()) == 1, 10, "the rule in the database")
    (rule,) = rules_now()
    assert (rule.src, rule.dst, rule.dst_port, rule.kind) == (
        "10.77.0.0/24", scan.dst, scan.dst_port, "port scan")

    with Session(c.engine) as session:  # hostile text, as packets and people may write it
        add_rule(Rule(kind="<img src=x onerror=window.pwned=1>", note="<b>lab</b>"),
                 session=session)
    open_page(screen, "/rules", WIDE)
    screen.should_contain("port scan from 10.77.0.0/24")
    screen.should_contain("<img src=x onerror=window.pwned=1> from any host")
    screen.should_contain("<b>lab</b>")
    assert js(screen, "return window.pwned === undefined")
    assert not screen.selenium.find_elements(By.CSS_SELECTOR, ".nicegui-content img")
    screen.selenium.find_element(By.XPATH, '//div[contains(@class, "q-card")][contains(., '
                                           '"port scan from 10.77.0.0/24")]//button').click()
    screen.should_contain("Rule removed")
    wait_until(lambda: [r.id for r in rules_now()] == [rule.id + 1], 10, "the rule removed")
    screen.should_not_contain("port scan from 10.77.0.0/24")
