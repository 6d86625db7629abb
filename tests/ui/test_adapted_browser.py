"""The threshold following the network, as the dashboard shows it in headless Chromium: a line
under the threshold once the calibration has moved, and what it means on hover; none while it
has not (the bundled sample is too short to move it)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from nicegui.testing import Screen
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    SAMPLE,
    SHOTS,
    AppPaths,
    app_paths,
    controller_of_app,
    wait_until,
)
from tests.ui.test_browser import open_page, press

LINE = re.compile(r"^threshold adapted to this network: ×(\d\.\d\d) after ([\d,]+) clean packets$")


def analyse(screen: Screen, name: str) -> None:
    box = screen.selenium.find_element(By.XPATH, '//label[.//*[contains(text(), "Name of a '
                                                 'pcap")]]//input')
    box.send_keys(Keys.CONTROL, "a", Keys.NULL, Keys.BACKSPACE, name)
    before = id(controller_of_app().live)
    press(screen, "Analyse")
    wait_until(lambda: id(controller_of_app().live) != before, 10, "the analysis to start")
    wait_until(lambda: not controller_of_app().live.running, 120, "the analysis")


def adapted_line(screen: Screen) -> str:
    found = screen.selenium.find_elements(By.CSS_SELECTOR, ".nid-threshold-adapted")
    return next((e.text for e in found if e.is_displayed() and "adapted" in e.text), "")


def test_the_dashboard_says_when_the_threshold_follows_the_network(
        screen: Screen, app_paths: AppPaths, shared_data: Path) -> None:  # noqa: F811
    shutil.copy(shared_data / "mixed_dev.pcap", app_paths.db_path.parent / "dev.pcap")
    open_page(screen, "/")
    analyse(screen, SAMPLE.name)  # 30 s of traffic: the calibration stays as trained
    screen.should_contain(f"finished {SAMPLE.name}")
    assert adapted_line(screen) == "" and controller_of_app().live.adapt_scale == 1.0
    analyse(screen, "dev.pcap")  # 40 min of a network noisier than the model's training
    live = controller_of_app().live
    assert live.adapt_scale > 1.0, live.adapt_scale
    wait_until(lambda: adapted_line(screen), 10, "the adapted line")
    match = LINE.match(adapted_line(screen))
    assert match, adapted_line(screen)
    assert match[1] == f"{live.adapt_scale:.2f}" and match[2] == f"{live.adapt_learned:,}"
    line = next(e for e in screen.selenium.find_elements(By.CSS_SELECTOR,
                                                         ".nid-threshold-adapted")
                if "adapted" in e.text)
    ActionChains(screen.selenium).move_to_element(line).perform()
    screen.should_contain(f"every raw error is divided by {live.adapt_scale:.2f} before "
                          "calibration")
    card = line.find_element(By.XPATH, "./ancestor::div[contains(@class, 'q-card')]")
    assert line.rect["x"] + line.rect["width"] <= card.rect["x"] + card.rect["width"] + 1
    value = screen.selenium.find_element(By.CSS_SELECTOR, ".nid-threshold")
    slider = screen.selenium.find_element(By.CSS_SELECTOR, ".q-slider")
    assert abs(value.rect["y"] - slider.rect["y"]) < 40  # the number stays beside the slider
    tip = screen.selenium.find_element(By.CSS_SELECTOR, ".q-tooltip")
    assert tip.rect["x"] >= 0 and tip.rect["x"] + tip.rect["width"] <= 1280  # all of it seen
    SHOTS.mkdir(exist_ok=True)
    screen.selenium.save_screenshot(str(SHOTS / "threshold-adapted.png"))
