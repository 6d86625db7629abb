"""What only a browser shows (NiceGUI ``screen`` fixture, Debian's headless Chromium): live
updates and their rate, AG Grid sorting and colours, the threshold recolouring events, dark
mode, history filtering and export. Also takes the screenshots (see support.SHOTS)."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from pathlib import Path

from nicegui.testing import Screen
from selenium.common.exceptions import ElementClickInterceptedException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from sqlmodel import Session

from netids.store.queries import EventFilter, count_events, query_events
from netids.store.tables import Event, Sensor, address_key
from netids.ui.theme import FLAGGED
from netids.ui.threshold import SLIDER_TOP, slider_position, slider_threshold
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    SAMPLE,
    SHOTS,
    AppPaths,
    app_paths,
    controller_of_app,
    small_pcap,
    wait_until,
)

WIDE = (1280, 1000)
FLAGGED_CSS = {f"nid-{level}" for level in FLAGGED}
TALL = (1280, 1560)  # the whole dashboard, for the docs screenshots (1280 px: a laptop)


def open_page(screen: Screen, path: str, size: tuple[int, int] = WIDE) -> None:
    screen.selenium.set_window_size(*size)
    screen.open(path, timeout=20)  # the first start imports torch and the app


def js(screen: Screen, code: str):
    return screen.selenium.execute_script(code)


def counter(screen: Screen, title: str) -> int:
    label = screen.selenium.find_element(
        By.XPATH, f'//div[text()="{title}"]/following-sibling::div')
    return int(label.text.replace(",", "") or 0)


def grid_column(screen: Screen, col: str, grid: int = 0) -> list[str]:
    """Texts of column ``col`` in the rendered rows of the ``grid``-th grid, in screen order."""
    return js(screen, f"""
        const grid = document.querySelectorAll('.nicegui-aggrid')[{grid}];
        const rows = [...grid.querySelectorAll('.ag-center-cols-container .ag-row')];
        rows.sort((a, b) => +a.getAttribute('row-index') - +b.getAttribute('row-index'));
        return rows.map(r => r.querySelector('[col-id="{col}"]').innerText);
    """)


def row_classes(screen: Screen) -> list[tuple[float, str]]:
    return [(float(s), c) for s, c in js(screen, """
        const grid = document.querySelectorAll('.nicegui-aggrid')[0];
        return [...grid.querySelectorAll('.ag-center-cols-container .ag-row')].map(r =>
            [r.querySelector('[col-id="score"]').innerText,
             [...r.classList].find(c => c.startsWith('nid-')) || '']);
    """)]


def analyse_sample_fully(screen: Screen) -> None:
    """Type the sample's name, analyse at full speed, wait for the end in the browser."""
    box = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Name of a '
                                                 'pcap")]]//input')
    if box.get_attribute("value") != SAMPLE.name:
        box.send_keys(Keys.CONTROL, "a", Keys.NULL, Keys.BACKSPACE, SAMPLE.name)
    before = id(controller_of_app().live)  # each session publishes a new LiveState
    press(screen, "Analyse")
    wait_until(lambda: id(controller_of_app().live) != before, 10, "the analysis to start")
    wait_until(lambda: not controller_of_app().live.running
               and controller_of_app().live.packets > 0, 60, "the analysis")
    wait_until(lambda: counter(screen, "Total packets") == controller_of_app().live.packets, 10,
               "the counter to show every packet")
    wait_until(lambda: len(grid_column(screen, "score")) > 0, 10, "rows in the grid")


def press(screen: Screen, label: str) -> None:
    """Click the button labelled ``label`` (not some other text containing it), once it stands
    still and nothing covers it: a click aimed while a dialog still zooms in lands beside the
    button, on the backdrop, which closes the dialog; a notification sliding in or out takes
    the click on a busy machine, as it would a person's, who clicks again."""
    button = screen.selenium.find_element(
        By.XPATH, f'//button[.//span[normalize-space(text())="{label}"]]')
    deadline = time.monotonic() + 5
    rect = None
    while rect != button.rect and time.monotonic() < deadline:
        rect = button.rect
        time.sleep(0.1)
    while True:
        try:
            button.click()
            return
        except ElementClickInterceptedException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def move_threshold(screen: Screen, target: float) -> None:
    """Move the threshold slider with the keyboard: PageUp/PageDown (10 steps, a factor of
    about 3 in false alarms) while far, arrow keys (one step of 0.05 nines) when near."""
    screen.find_by_css(".q-slider").click()  # focus it (the click moves it on the way)
    slider = screen.selenium.switch_to.active_element
    label = screen.find_by_css(".nid-threshold")
    goal = slider_position(target)
    for _ in range(60):
        at = slider_position(float(label.text))
        if abs(at - goal) < 0.025:
            return
        far = abs(at - goal) > 0.5
        if at < goal:
            slider.send_keys(Keys.PAGE_UP if far else Keys.ARROW_RIGHT)
        else:
            slider.send_keys(Keys.PAGE_DOWN if far else Keys.ARROW_LEFT)
        time.sleep(0.2)
    raise AssertionError(f"the threshold did not reach {target}: {label.text}")


def shot(screen: Screen, name: str) -> None:
    time.sleep(1.2)  # one chart refresh after the last change; charts have no animation
    SHOTS.mkdir(exist_ok=True)
    screen.selenium.save_screenshot(str(SHOTS / name))


def test_dashboard_updates_live_while_a_pcap_plays_at_most_10_updates_a_second(
        screen: Screen) -> None:
    open_page(screen, "/")
    js(screen, """window.nidMessages = [];
                  window.socket.onAny((type) => window.nidMessages.push([Date.now(), type]));""")
    press(screen, "Try the bundled sample")
    screen.should_contain("Monitoring lab_sample.pcap")
    wait_until(lambda: counter(screen, "Total packets") > 0, 10, "packets counted")
    first = counter(screen, "Total packets")
    wait_until(lambda: counter(screen, "Total packets") > first, 10, "the counter to grow")
    wait_until(lambda: len(grid_column(screen, "score")) > 0, 20, "events in the grid")
    assert controller_of_app().live.running, "events appeared while the sample was playing"
    points = js(screen, "return getElement(document.querySelector('.nicegui-echart'))"
                        ".chart.getOption().series[0].data.length")
    assert points > 1
    time.sleep(3)
    stamps = [t for t, _ in js(screen, "return window.nidMessages")]
    per_second: dict[int, int] = {}
    for t in stamps:
        per_second[t // 1000] = per_second.get(t // 1000, 0) + 1
    assert len(stamps) > 5 and max(per_second.values()) <= 10, per_second
    press(screen, "Stop")
    screen.wait_for(lambda: not controller_of_app().live.running)


def test_dark_mode_grid_sorting_and_threshold_colours(screen: Screen) -> None:
    open_page(screen, "/", TALL)
    analyse_sample_fully(screen)
    shot(screen, "dashboard-light.png")

    screen.find_by_css('.ag-center-cols-container .ag-row[row-index="0"] [col-id="kind"]').click()
    screen.should_contain("Sample packets")
    screen.should_contain("Samples as pcap")
    assert " > " in screen.find_by_css(".nid-mono").text  # a decoded one-line summary
    shot(screen, "event-detail.png")
    close = screen.selenium.find_element(
        By.XPATH, '//div[contains(@class, "q-dialog")]//i[text()="close"]/ancestor::button')
    # a click, not a pointer move: the row's "why" tooltip may still cover the button
    screen.selenium.execute_script("arguments[0].click()", close)
    wait_until(lambda: not js(screen, "return [...document.querySelectorAll('.q-dialog')]"
                                      ".some(e => e.offsetParent !== null)"), 5,
               "the dialog to close")

    assert "body--dark" not in screen.find_by_tag("body").get_attribute("class")
    screen.selenium.find_element(By.XPATH, '//i[text()="dark_mode"]/ancestor::button').click()
    wait_until(lambda: "body--dark" in screen.find_by_tag("body").get_attribute("class"), 5,
               "dark mode")
    screen.open("/")  # remembered for this user
    assert "body--dark" in screen.find_by_tag("body").get_attribute("class")
    wait_until(lambda: len(grid_column(screen, "score")) > 0, 10, "rows after reload")
    assert screen.find_by_css(".nicegui-aggrid").get_attribute("data-ag-theme-mode") == "dark"
    shot(screen, "dashboard-dark.png")

    screen.find_by_css('.ag-header-cell[col-id="score"]').click()  # newest first -> by score
    wait_until(lambda: grid_column(screen, "score") == sorted(grid_column(screen, "score"),
                                                             key=float), 5, "ascending scores")
    screen.find_by_css('.ag-header-cell[col-id="score"]').click()
    wait_until(lambda: grid_column(screen, "score") == sorted(grid_column(screen, "score"),
                                                             key=float, reverse=True), 5,
               "descending scores")
    screen.find_by_css('.ag-header-cell[col-id="src"]').click()
    wait_until(lambda: grid_column(screen, "src") == sorted(grid_column(screen, "src")), 5,
               "sources in order")

    move_threshold(screen, 0.0)
    move_threshold(screen, 0.5)  # detect at 0.5: events with a wide range of scores
    analyse_sample_fully(screen)
    screen.find_by_css('.ag-header-cell[col-id="score"]').click()  # lowest scores first
    wait_until(lambda: grid_column(screen, "score") == sorted(grid_column(screen, "score"),
                                                             key=float), 5, "ascending scores")
    wait_until(lambda: [s for s, _ in row_classes(screen) if 0.5 <= s < 1.0], 10,
               "events scoring between 0.5 and 1")
    assert all(c in FLAGGED_CSS for s, c in row_classes(screen) if s >= 0.5)
    move_threshold(screen, 1.0)  # the top: 0.99999
    top = slider_threshold(SLIDER_TOP)
    wait_until(lambda: all(c not in FLAGGED_CSS for s, c in row_classes(screen) if s < top), 5,
               "events under the new threshold to lose the anomalous colour")
    assert any(c == "nid-suspicious" for _, c in row_classes(screen))
    assert grid_column(screen, "score") == sorted(grid_column(screen, "score"), key=float), \
        "the user's sort is kept while rows update"
    move_threshold(screen, 0.0)  # everything anomalous
    wait_until(lambda: all(c in FLAGGED_CSS for _, c in row_classes(screen)), 5,
               "every event anomalous")


def test_history_filtering_and_export(screen: Screen, app_paths: AppPaths) -> None:  # noqa: F811
    from nicegui.testing import screen_plugin

    open_page(screen, "/")
    analyse_sample_fully(screen)
    c = controller_of_app()
    assert c.store.flush(10)
    with Session(c.engine) as session:
        total = count_events(session=session)
        some = next(e for e in query_events(session=session, limit=50)
                    if e.dst and "." in e.dst)
    hostile = "<img src=x onerror=window.pwned=1>"
    with Session(c.engine) as session:  # a row written by some other sensor, packet-derived text
        now = datetime.now(UTC)
        session.add(Sensor(name="<b>edge</b>"))  # a second sensor: the Sensor column shows
        session.add(Event(id="f" * 32, sensor="<b>edge</b>", first_seen=now, last_seen=now,
                          src="192.0.2.7", src_key=address_key("192.0.2.7"), dst="192.0.2.9",
                          dst_key=address_key("192.0.2.9"), proto="TCP", kind="<i>odd</i>",
                          packets=1, score_max=0.99, score_mean=0.99, severity="anomalous",
                          explanation=hostile))
        session.commit()
    total += 1
    screen.selenium.set_window_size(*TALL)
    screen.open("/history")
    screen.should_contain(f"{total:,} events match")
    cidr = some.dst.rsplit(".", 1)[0] + ".0/24"
    box = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Destination '
                                                 'address")]]//input')
    box.send_keys(cidr)
    press(screen, "Apply")
    with Session(c.engine) as session:
        n = count_events(session=session, filter=EventFilter(dst=cidr))
    screen.should_contain(f"{n:,} events match")
    prefix = cidr.rsplit(".", 1)[0] + "."
    wait_until(lambda: grid_column(screen, "dst")
               and all(d.startswith(prefix) for d in grid_column(screen, "dst")), 5,
               "only destinations in the CIDR")
    shot(screen, "history.png")
    press(screen, "CSV")
    folder = screen_plugin.DOWNLOAD_DIR
    wait_until(lambda: any(folder.glob("netids-events-*.csv")), 10, "the CSV download")
    path = next(folder.glob("netids-events-*.csv"))
    wait_until(lambda: path.stat().st_size > 0 and not any(folder.glob("*.crdownload")), 5,
               "the download to complete")
    records = list(csv.DictReader(path.open()))
    assert len(records) == n and all(r["dest_ip"].startswith(prefix) for r in records)

    # packet-derived text (here from another sensor's row) is shown as text, never as HTML
    box.send_keys(Keys.CONTROL, "a", Keys.NULL, Keys.BACKSPACE)
    press(screen, "Apply")
    screen.should_contain(f"{total:,} events match")
    screen.should_contain("<i>odd</i>")  # shown as text, not rendered as HTML
    screen.should_contain("<b>edge</b>")
    assert not screen.selenium.find_elements(By.CSS_SELECTOR, ".nicegui-aggrid img, "
                                                               ".nicegui-aggrid i:not(.q-icon)")
    cells = screen.selenium.find_elements(By.CSS_SELECTOR, '.ag-row [col-id="kind"]')
    next(cell for cell in cells if cell.text == "<i>odd</i>").click()
    screen.should_contain(hostile)  # the explanation in the detail dialog, as text
    assert js(screen, "return window.pwned === undefined")
    close = screen.selenium.find_element(
        By.XPATH, '//div[contains(@class, "q-dialog")]//i[text()="close"]/ancestor::button')
    # a click, not a pointer move: the row's "why" tooltip may still cover the button
    screen.selenium.execute_script("arguments[0].click()", close)
    wait_until(lambda: not js(screen, "return [...document.querySelectorAll('.q-dialog')]"
                                      ".some(e => e.offsetParent !== null)"), 5,
               "the dialog to close")


def test_training_page_after_a_training(screen: Screen, app_paths: AppPaths,  # noqa: F811
                                       tmp_path: Path) -> None:
    normal = small_pcap(tmp_path / "normal.pcap", 12_000)  # training needs 8,000 at least
    open_page(screen, "/training", (1280, 1100))
    box = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "file of '
                                                 'normal traffic")]]//input')
    box.send_keys(str(normal))
    press(screen, "Use file")
    c = controller_of_app()
    wait_until(lambda: c.training.phase == "capturing" and not c.live.running, 60, "capture")
    screen.should_contain("Read 12,000 packets from normal.pcap")
    epochs = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Max '
                                                    'epochs")]]//input')
    epochs.send_keys(Keys.CONTROL, "a")
    epochs.send_keys("8", Keys.TAB)
    name = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Name of the '
                                                  'new model")]]//input')
    name.send_keys(Keys.CONTROL, "a")
    name.send_keys("lab-normal", Keys.TAB)
    press(screen, "Train")  # a file read to its end: the button trains
    wait_until(lambda: c.training.phase in ("review", "done", "failed"), 180, "training")
    assert c.training.phase == "review", c.training.error  # 12,000 packets: too few to trust
    screen.should_contain("The new model may be unreliable")
    screen.should_contain("unstable calibration")
    press(screen, "Activate anyway")
    wait_until(lambda: c.training.phase == "done", 20, "the model to be activated")
    screen.should_contain("false-alarm rate")
    screen.should_contain("active: lab-normal")
    assert (app_paths.models_dir / "lab-normal.pt").is_file()
    shot(screen, "training.png")
