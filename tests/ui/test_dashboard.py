"""The dashboard as a user drives it (NiceGUI ``user`` fixture): the real app with the shipped
model, real capture files, a real SQLite database and, for live capture, the loopback device."""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from nicegui import app, ui
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing import User
from sqlmodel import Session, select

from netids.capture.pcapfile import read_batches
from netids.live import overload_text
from netids.store.engine import make_engine
from netids.store.tables import Event
from netids.ui.capture_form import outside_message
from netids.ui.theme import FLAGGED
from netids.ui.threshold import SLIDER_TOP, slider_position, slider_threshold
from tests.support import (  # noqa: F401 - app_paths is an autouse fixture
    SAMPLE,
    AppPaths,
    app_paths,
    controller_of_app,
    small_pcap,
    until,
)


def sample_packets() -> int:
    return sum(len(b) for b in read_batches(SAMPLE))


def count(user: User, key: str) -> int:
    label = user.find(marker=f"count-{key}").elements.pop()
    return int(label.text.replace(",", "") or 0)


def grid_rows(user: User) -> list[dict]:
    """The rows the event table shows (last sent to the browser)."""
    return user.find(marker="events-grid").elements.pop().rows


async def analyse_whole_sample(user: User, open_page: bool = True) -> None:
    """Analyse the bundled sample at full speed through the path box; wait for the end."""
    if open_page:
        await user.open("/")
    user.find(marker="pcap-path").type(SAMPLE.name)
    user.find(marker="analyse").click()
    c = controller_of_app()
    await until(lambda: c.live.running, 10, "the analysis to start")
    await until(lambda: not c.live.running, 60, "the analysis to finish")
    total = sample_packets()
    await until(lambda: count(user, "packets") == total, 5, "the counters")
    await until(lambda: {r["id"] for r in grid_rows(user)} == {u.id for u in c.live.events}, 5,
                "the event table to show every event")


async def test_the_dashboard_shows_controls_counters_and_charts(user: User) -> None:
    await user.open("/")
    await user.should_see("Start monitoring")
    await user.should_see("Try the bundled sample")
    await user.should_see(marker="threshold")
    for key in ("packets", "tcp", "udp", "other", "rate", "drops"):
        await user.should_see(marker=f"count-{key}")
    for chart in ("rate-chart", "protocol-chart", "score-chart"):
        await user.should_see(marker=chart)
    interfaces = user.find(marker="interface").elements.pop().options
    assert interfaces["any"] == "all interfaces" and "lo" in interfaces


async def test_the_bundled_sample_shows_detections_within_seconds(user: User) -> None:
    await user.open("/")
    user.find(marker="try-sample").click()
    await user.should_see("Analysing lab_sample.pcap")
    c = controller_of_app()
    await until(lambda: len(grid_rows(user)) > 0, 20, "the first anomaly events")
    assert c.live.running, "the sample plays back in real time: detections came before its end"
    assert count(user, "packets") > 0 and count(user, "events") > 0
    rate = user.find(marker="rate-chart").elements.pop().options["series"][0]["data"]
    assert rate and sum(n for _, n in rate) <= c.live.packets
    await c.stop()


async def test_a_pcap_path_runs_through_the_pipeline_into_counters_charts_grid_and_db(
        user: User, app_paths: AppPaths) -> None:  # noqa: F811
    await analyse_whole_sample(user)
    await user.should_see("finished lab_sample.pcap", retries=20)
    tcp, udp, other = count(user, "tcp"), count(user, "udp"), count(user, "other")
    assert tcp > 0 and udp > 0 and tcp + udp + other == sample_packets()
    await until(lambda: user.find(marker="protocol-chart").elements.pop()
                .options["series"][0]["data"], 5, "the protocol chart")
    protocols = user.find(marker="protocol-chart").elements.pop().options
    assert "TCP" in protocols["xAxis"]["data"] and "ARP" in protocols["xAxis"]["data"]
    score = user.find(marker="score-chart").elements.pop().options["series"][0]
    # on the slider's nines scale: the default threshold 0.999 is 3, flagged seconds above it,
    # and the seconds stay apart instead of one flat line at 1.0
    assert score["markLine"]["data"][0]["yAxis"] == pytest.approx(3.0)
    peaks = [y for _, y in score["data"]]
    assert max(peaks) > 3.0 and len(set(peaks)) > 3
    rows = grid_rows(user)
    assert 0 < len(rows) <= 500
    assert [r["last_seen"] for r in rows] == sorted((r["last_seen"] for r in rows), reverse=True)
    controller_of_app().store.flush(5)
    with Session(make_engine(app_paths.db_url)) as session:
        stored = {e.id for e in session.exec(select(Event))}
    assert {r["id"] for r in rows} <= stored


async def test_an_uploaded_pcap_is_analysed(user: User, tmp_path: Path) -> None:
    data = small_pcap(tmp_path / "first.pcap", 3000).read_bytes()
    await user.open("/")
    upload = user.find(ui.upload).elements.pop()
    await upload.handle_uploads([SmallFileUpload(name="first.pcap", content_type="", _data=data)])
    c = controller_of_app()
    await until(lambda: c.live.source == "first.pcap" and not c.live.running, 30, "the upload")
    await until(lambda: count(user, "packets") == 3000, 5, "the counters")


async def test_an_upload_is_private_while_analysed_and_deleted_after(user: User,
                                                                     tmp_path: Path) -> None:
    data = small_pcap(tmp_path / "first.pcap", 3000).read_bytes()
    await user.open("/")
    user.find(marker="realtime").click()  # at capture speed: the file stays a while
    upload = user.find(ui.upload).elements.pop()
    await upload.handle_uploads([SmallFileUpload(name="first.pcap", content_type="", _data=data)])
    c = controller_of_app()
    await until(lambda: c.live.source == "first.pcap" and c.live.running, 10, "the analysis")
    mine = c.settings.files.uploads_dir / str(os.getpid())
    (kept,) = mine.glob("upload-*/first.pcap")
    assert kept.read_bytes() == data
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (kept, kept.parent, mine)]
    assert modes == [0o600, 0o700, 0o700]
    await c.stop()
    await until(lambda: not kept.parent.exists(), 5, "the upload to be deleted")


async def test_the_path_field_reads_only_the_captures_folder(user: User, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.pcap").write_bytes(b"\xd4\xc3\xb2\xa1secret")
    (tmp_path / "link.pcap").symlink_to(outside / "secret.pcap")
    (tmp_path / "door").symlink_to(outside)
    refusal = outside_message(tmp_path)
    await user.open("/")
    c = controller_of_app()
    for text in (str(outside / "secret.pcap"), str(outside / "missing.pcap"),
                 f"../{outside.name}/secret.pcap", f"../{outside.name}/missing.pcap",
                 "link.pcap", "door/secret.pcap", "door/missing.pcap", "/etc/shadow",
                 "/etc/no-such-file", "/proc/self/environ", str(tmp_path), "."):
        user.notify.messages.clear()
        user.find(marker="pcap-path").clear().type(text)
        user.find(marker="analyse").click()
        await until(lambda: user.notify.messages, 5, f"an answer to {text!r}")
        assert user.notify.messages == [refusal], text  # the same words, existing or not
        assert not c.live.running
    user.find(marker="pcap-path").clear().type(SAMPLE.name)  # inside: analysed
    user.find(marker="analyse").click()
    await until(lambda: c.live.source == SAMPLE.name, 10, "the sample in the captures folder")
    await c.stop()


async def test_a_bad_pcap_is_a_notification_not_a_traceback(user: User, tmp_path: Path) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("these are my notes, not a capture")
    await user.open("/")
    user.find(marker="pcap-path").type(str(bad))
    user.find(marker="analyse").click()
    c = controller_of_app()
    await until(lambda: c.live.source == "notes.pcap" and not c.live.running, 10,
                "the analysis to stop")
    assert c.live.error and "Traceback" not in c.live.error
    await user.should_see(c.live.error, retries=20)
    user.find(marker="pcap-path").clear().type(str(tmp_path / "missing.pcap"))
    user.find(marker="analyse").click()
    await user.should_see("There is no file missing.pcap in the captures folder")


async def test_a_bad_filter_is_explained_and_nothing_starts(user: User) -> None:
    await user.open("/")
    user.find(marker="bpf").type("tcp port and and")
    await user.should_see("invalid capture filter")
    user.find(marker="start").click()
    await user.should_see("invalid capture filter")
    assert not controller_of_app().live.running


async def test_live_capture_on_loopback_counts_packets_until_stopped(user: User) -> None:
    await user.open("/")
    user.find(marker="interface").elements.pop().set_value("lo")
    user.find(marker="bpf").type("udp port 50999")
    user.find(marker="start").click()
    c = controller_of_app()
    await until(lambda: c.live.running, 5, "monitoring to start")
    await user.should_see("Monitoring lo (filter: udp port 50999)", retries=20)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(200):
            s.sendto(b"x" * 64, ("127.0.0.1", 50999))
    await until(lambda: count(user, "udp") >= 200, 10, "the UDP counter")
    user.find(marker="stop").click()
    await until(lambda: not c.live.running, 5, "monitoring to stop")
    assert count(user, "tcp") == 0


@contextmanager
def without_cap_net_raw():
    """This thread loses CAP_NET_RAW from its effective set (capabilities are per thread), so
    opening a packet socket fails exactly as for an unprivileged user; restored afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    assert libc.capget(ctypes.byref(header), data) == 0
    saved = [(d.effective, d.permitted, d.inheritable) for d in data]
    data[0].effective &= ~(1 << 13)  # CAP_NET_RAW
    assert libc.capset(ctypes.byref(header), data) == 0
    try:
        yield
    finally:
        for d, (e, p, i) in zip(data, saved, strict=True):
            d.effective, d.permitted, d.inheritable = e, p, i
        assert libc.capset(ctypes.byref(header), data) == 0


async def test_no_capture_permission_opens_a_dialog_and_files_still_work(user: User) -> None:
    assert threading.current_thread() is threading.main_thread()
    await user.open("/")
    with without_cap_net_raw():
        user.find(marker="start").click()
        await user.should_see(marker="permission-dialog")
    await user.should_see("No permission to capture packets")
    await user.should_see("sudo setcap cap_net_raw,cap_net_admin+eip")
    await user.should_see("Run netids as root")
    user.find(marker="permission-close").click()
    c = controller_of_app()
    assert not c.live.running
    user.find(marker="pcap-path").type(SAMPLE.name)
    user.find(marker="analyse").click()
    await until(lambda: c.live.running or c.live.packets > 0, 10, "the file analysis")
    await c.stop()


async def test_the_permission_dialog_plays_the_bundled_sample(user: User) -> None:
    await user.open("/")
    with without_cap_net_raw():
        user.find(marker="start").click()
        await user.should_see(marker="permission-dialog")
    user.find(marker="permission-sample").click()
    c = controller_of_app()
    await until(lambda: c.live.source == SAMPLE.name and c.live.packets > 0, 10, "the sample")
    await c.stop()


async def test_the_threshold_slider_applies_live_and_recolours_events(user: User) -> None:
    await user.open("/")
    c = controller_of_app()
    slider = user.find(marker="threshold").elements.pop()
    assert slider.value == slider_position(c.threshold) == 3.0  # the default, 0.999
    await user.should_see("≈ 0.1% of normal traffic flagged")
    slider.set_value(0.3)  # about 0.5: events with a wide range of scores
    low = slider_threshold(0.3)
    assert c.threshold == low and abs(low - 0.5) < 0.002
    await user.should_see("0.499", retries=10)
    await analyse_whole_sample(user, open_page=False)
    rows = grid_rows(user)
    assert rows and all(r["level"] in FLAGGED and r["css"] == f"nid-{r['level']}"
                        for r in rows if r["score"] >= low)
    top = slider_threshold(SLIDER_TOP)
    below_top = {r["id"] for r in rows if r["score"] < top}
    assert below_top, "some events score below the top: moving there must recolour them"
    slider.set_value(SLIDER_TOP)
    assert c.threshold == top == 0.99999
    await user.should_see("0.99999", retries=10)
    await user.should_see("≈ 0.001% of normal traffic flagged")
    await until(lambda: all(r["level"] in ("normal", "suspicious")
                            and r["css"] == f"nid-{r['level']}"
                            for r in grid_rows(user) if r["id"] in below_top), 5,
                "rows below the new threshold to stop showing as anomalous")
    assert {r["id"] for r in grid_rows(user)} == {r["id"] for r in rows}
    slider.set_value(0.3)
    await until(lambda: all(r["level"] in FLAGGED for r in grid_rows(user)
                            if r["score"] >= low), 5, "rows above 0.5 anomalous again")


async def test_an_event_opens_with_explanation_samples_and_exports(user: User) -> None:
    await analyse_whole_sample(user)
    row = grid_rows(user)[0]
    user.find(marker="events-grid").trigger("cellClicked", {"data": row, "rowIndex": 0})
    await user.should_see(marker="event-detail")
    await user.should_see(row["explanation"])
    samples = user.find(marker="detail-samples").elements.pop().rows
    assert samples and all(s["summary"].startswith(row["proto"]) or s["summary"]
                           for s in samples)
    assert any(" > " in s["summary"] for s in samples)
    user.find(marker="detail-csv").click()
    csv_text = (await user.download.next()).text
    assert csv_text.startswith("timestamp,end,event_id") and row["id"] in csv_text
    user.find(marker="detail-json").click()
    assert (await user.download.next()).json()["event_id"] == row["id"]
    user.find(marker="detail-pcap").click()
    pcap = (await user.download.next()).content
    assert pcap[:4] in (b"\x4d\x3c\xb2\xa1", b"\xd4\xc3\xb2\xa1") and len(pcap) > 24


async def test_dark_mode_is_remembered_per_user(user: User) -> None:
    await user.open("/")
    dark = user.find(ui.dark_mode).elements.pop()
    assert dark.value is False
    user.find(marker="dark-toggle").click()
    assert dark.value is True
    await user.open("/history")
    assert user.find(ui.dark_mode).elements.pop().value is True
    await user.open("/")
    assert user.find(ui.dark_mode).elements.pop().value is True


async def test_a_viewer_cannot_change_anything(user: User,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.state.auth, "role", lambda: "viewer")  # this app's role check
    await user.open("/")
    for marker in ("start", "stop", "bpf", "interface", "threshold", "analyse", "try-sample",
                   "upload"):
        assert not user.find(marker=marker).elements.pop().enabled, marker
    c = controller_of_app()
    before = c.threshold
    user.find(marker="threshold").elements.pop().set_value(1.0)
    await user.should_see("Only an admin can do that")
    assert c.threshold == before and not c.live.running


async def test_the_header_navigates_between_the_pages(user: User) -> None:
    await user.open("/")
    user.find(marker="nav-history").click()
    await user.should_see("Stored events")
    user.find(marker="nav-training").click()
    await user.should_see("Stop & train")
    user.find(marker="nav-live").click()
    await user.should_see("Try the bundled sample")


async def test_a_file_can_play_back_at_capture_speed(user: User, tmp_path: Path) -> None:
    await user.open("/")
    user.find(marker="realtime").click()
    user.find(marker="pcap-path").type(SAMPLE.name)
    user.find(marker="analyse").click()
    c = controller_of_app()
    await until(lambda: c.live.packets > 0, 10, "the first packets")
    await user.should_see(marker="count-rate")
    assert c.live.running, "a 30 s capture paced in real time is still playing"
    assert c.live.packets < sum(len(b) for b in read_batches(SAMPLE))
    user.find(marker="stop").click()
    await until(lambda: not c.live.running, 5, "stopped")


FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    for _ in range(1000):
        s.sendto(b"x" * 32, ("127.0.0.1", int(sys.argv[1])))
"""


async def test_an_overloaded_capture_says_what_share_it_scores(user: User) -> None:
    c = controller_of_app()  # a deliberately slow configuration: tiny batches, a short queue
    c.settings = replace(c.settings, capture=replace(
        c.settings.capture, batch_size=64, queue_batches=3, shed_backlog=1, merge_batches=1))
    await user.open("/")
    user.find(marker="interface").elements.pop().set_value("lo")
    user.find(marker="bpf").type("udp port 50998")
    user.find(marker="start").click()
    await until(lambda: c.live.running, 5, "monitoring to start")
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, "50998", "6"])
    try:
        await user.should_see("of packets (overload)", retries=100)
        assert c.live.shed > 0
    finally:
        flood.kill()
        flood.wait()
    user.find(marker="stop").click()
    await until(lambda: not c.live.running, 10, "monitoring to stop")
    await user.should_see(f"overload: {c.live.shed:,} packets were counted, not scored")
    assert user.find(marker="overload").elements.pop().text == overload_text(c.live)
    assert count(user, "packets") == c.live.packets >= c.live.shed
