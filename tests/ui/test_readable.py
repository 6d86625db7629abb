"""What a newcomer sees at common laptop widths (1280 and 1400 px), in headless Chromium: every
column of the event tables readable and on screen, levels in different colours with their
legend, the threshold's number clear of its explanation, and the dark/light toggle showing
the mode it switches to."""

from __future__ import annotations

import pytest
from nicegui.testing import Screen
from selenium.webdriver.common.by import By

from netids.ui.theme import FLAGGED, GRADES
from tests.support import app_paths, controller_of_app, wait_until  # noqa: F401 - autouse
from tests.ui.test_browser import analyse_sample_fully, js, open_page

WIDTHS = (1280, 1400)

# per column of the ``grid``-th event table: is its header text cut, is any cell's text cut
# (the why excepted: it wraps, in full on hover), and where its header sits on screen
COLUMNS_JS = """
const grid = document.querySelectorAll('.nicegui-aggrid')[arguments[0]];
const cut = e => {  // the text's own width (ellipsis is only painted) against its box's
  const range = document.createRange();
  range.selectNodeContents(e);
  return range.getBoundingClientRect().width > e.getBoundingClientRect().width + 0.5;
};
return [...grid.querySelectorAll('.ag-header-cell')].map(h => {
  const id = h.getAttribute('col-id');
  const text = h.querySelector('.ag-header-cell-text');
  const cells = [...grid.querySelectorAll(`.ag-row .ag-cell[col-id="${id}"]`)]
    .map(c => c.querySelector('.ag-cell-value') || c);
  const r = h.getBoundingClientRect();
  return {id: id, header: text.innerText, header_cut: cut(text),
          cells_cut: id === 'explanation' ? [] : cells.filter(cut).map(c => c.innerText),
          cells: cells.length, left: r.left, right: r.right};
});
"""


def columns(screen: Screen, grid: int = 0) -> list[dict]:
    return js(screen, f"return (function() {{ {COLUMNS_JS} }}).apply(null, [{grid}])")


def assert_readable(screen: Screen, grid: int = 0) -> None:
    """Every header in full, every cell but the why in full, the why on screen and wide enough
    to read, and no sideways scrolling."""
    viewport = js(screen, "return document.documentElement.clientWidth")
    shown = columns(screen, grid)
    assert len(shown) >= 13 and all(c["cells"] > 0 for c in shown), shown  # 13: no sensor
    assert [c["header"] for c in shown if c["header_cut"]] == []
    assert {c["header"]: c["cells_cut"] for c in shown if c["cells_cut"]} == {}
    why = next(c for c in shown if c["id"] == "explanation")
    assert why["right"] <= viewport and why["right"] - why["left"] >= 180, (why, viewport)
    assert all(c["right"] <= viewport for c in shown), shown
    scroll = js(screen, f"""const v = document.querySelectorAll('.nicegui-aggrid')[{grid}]
        .querySelector('.ag-body-horizontal-scroll-viewport');
        return [v.scrollWidth, v.clientWidth];""")
    assert scroll[0] <= scroll[1], f"table {grid} scrolls sideways: {scroll}, {shown}"


def background(screen: Screen, selector: str) -> str:
    return js(screen, f"return getComputedStyle(document.querySelector('{selector}'))"
                      ".backgroundColor")


@pytest.mark.parametrize("width", WIDTHS)
def test_event_tables_are_readable_and_graded_by_level(screen: Screen, width: int) -> None:
    open_page(screen, "/", (width, 1000))
    analyse_sample_fully(screen)
    wait_until(lambda: all(c["cells"] for c in columns(screen)), 10, "every column filled")
    assert_readable(screen)

    # the rows' colours differ by level, the legend names every level in the rows' colours
    rows = js(screen, """
        return [...document.querySelectorAll('.nicegui-aggrid .ag-center-cols-container .ag-row')]
          .map(r => [r.querySelector('[col-id="level"]').innerText,
                     getComputedStyle(r).backgroundColor]);""")
    colour_of: dict[str, set[str]] = {}
    for level, colour in rows:
        colour_of.setdefault(level, set()).add(colour)
    assert len(colour_of) >= 2 and set(colour_of) <= set(FLAGGED), colour_of
    assert all(len(c) == 1 for c in colour_of.values()), "one colour per level"
    assert len({next(iter(c)) for c in colour_of.values()}) == len(colour_of), colour_of
    legend = screen.find_by_css(".nid-legend")
    assert legend.is_displayed() and all(level in legend.text for level in GRADES)
    chips = {background(screen, f".nid-chip-{level}") for level in GRADES}
    assert len(chips) == len(GRADES), chips

    # the threshold's number, its explanation and the slider do not overlap
    boxes = js(screen, """return ['.nid-threshold', '.nid-threshold-meaning', '.q-slider']
        .map(s => { const r = document.querySelector(s).getBoundingClientRect();
                    return [r.left, r.top, r.right, r.bottom]; });""")
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, f"overlapping: {a} and {b} (number, explanation, slider)"

    assert controller_of_app().store.flush(10)
    screen.open("/history")
    wait_until(lambda: len(columns(screen)) and all(c["cells"] for c in columns(screen)), 20,
               "the stored events")
    assert_readable(screen)
    assert screen.find_by_css(".nid-legend").is_displayed()


def test_the_dark_toggle_shows_the_mode_it_switches_to(screen: Screen) -> None:
    open_page(screen, "/", (1280, 800))

    def state() -> tuple[bool, str]:
        dark = "body--dark" in screen.find_by_tag("body").get_attribute("class")
        icon = screen.selenium.find_element(By.CSS_SELECTOR, ".nid-dark-toggle i").text
        return dark, icon

    assert state() == (False, "dark_mode")  # light: the moon switches to dark
    screen.selenium.find_element(By.CSS_SELECTOR, ".nid-dark-toggle").click()
    wait_until(lambda: state() == (True, "light_mode"), 5, "dark mode with a sun to go back")
    screen.open("/history")  # remembered, and the icon agrees on every page
    assert state() == (True, "light_mode")
    screen.selenium.find_element(By.CSS_SELECTOR, ".nid-dark-toggle").click()
    wait_until(lambda: state() == (False, "dark_mode"), 5, "light mode with the moon again")
