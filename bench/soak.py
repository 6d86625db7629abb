# ruff: noqa: T201 - a benchmark prints its figures
"""Soak test in the lab: the running app, live, for many minutes under repeated attacks.

    sudo .venv/bin/python bench/soak.py [--minutes 10] [--period 60] [--warmup 2]

It builds the traffic lab (network namespaces on a bridge, real servers and clients, see
docs/lab.md), starts the real app as a subprocess monitoring the lab's bridge
(``python app.py --interface br0 --netns NS --db sqlite:///...``), and runs normal lab
traffic with, every ``--period`` seconds, a spoofed SYN flood (hping3 --rand-source), a wide
scan (nmap, 2,000 ports of two hosts) and a burst of malformed packets (scapy). Meanwhile it
samples the RSS of the app and its children every 3 s, fetches the dashboard page every 2 s
and loads it in headless Chromium every 10 s (until the page shows the live capture).

At the end it stops the app, exports its events with ``app.py export`` and prints a table:
the RSS slope after the warm-up (MiB/min), each attack matched to an event (by kind, time
and address), and the dashboard's latencies (p99, max). It exits 1 when a criterion fails.
Namespaces and the app are removed at the end, after an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from procs import sigterm_as_ctrl_c, tree_rss_mib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netids.lab.network import BRIDGE, LabNetwork  # noqa: E402
from netids.lab.soak import (  # noqa: E402
    AttackRun,
    SeenEvent,
    match_attacks,
    percentile,
    rss_slope,
    soak_lab,
    soak_traffic,
)
from netids.store.export import read_export  # noqa: E402


@dataclass(frozen=True, slots=True)
class SoakConfig:
    """How long, how often, and the bounds the run must keep."""

    seconds: float = 600.0
    period: float = 60.0  # seconds between attack rounds
    first: float = 10.0  # seconds before the first round
    idle: float = 30.0  # seconds of the app monitoring a quiet lab first: the latency baseline
    warmup: float = 120.0  # seconds of RSS left out of the slope
    max_slope: float = 2.0  # MiB/min of RSS after the warm-up, at most
    max_latency: float = 1.0  # seconds for the dashboard page (HTTP and browser), at most
    browser: bool = True  # also load the page in headless Chromium
    http_every: float = 2.0
    browser_every: float = 10.0
    rss_every: float = 3.0
    learn: bool = True  # the app learns the network first (a first start); False: --no-learn


@dataclass
class SoakResult:
    runs: list[AttackRun] = field(default_factory=list)
    matches: list[list[SeenEvent]] = field(default_factory=list)
    events: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (time, MiB)
    http: list[tuple[float, float]] = field(default_factory=list)  # (time, seconds to load)
    browser: list[tuple[float, float, float]] = field(default_factory=list)  # (time, seconds
    # until the page is drawn, until it shows the live capture); failures: inf
    traffic_start: float = 0.0  # before: the app monitors a quiet lab (the baseline)
    app_exit: int | None = None

    def slope(self, warmup: float) -> float:
        busy = [(t, m) for t, m in self.rss if t >= self.traffic_start]
        return rss_slope([t for t, _ in busy], [m for _, m in busy], warmup)

    def missed(self) -> list[AttackRun]:
        return [r for r, m in zip(self.runs, self.matches, strict=True) if not m]


def run_soak(config: SoakConfig, workdir: Path, port: int) -> SoakResult:
    """The whole soak: lab, app, traffic, pollers, events; the lab and app always removed."""
    result = SoakResult()
    db = f"sqlite:///{workdir / 'soak.sqlite'}"
    with soak_lab() as net:
        app = start_app(net, db, port, workdir / "app.log", config.learn)
        try:
            wait_http(app, f"http://127.0.0.1:{port}/", workdir / "app.log", timeout=120)
            asyncio.run(_measure(net, app.pid, port, config, result))
        finally:
            result.app_exit = stop_app(app)
    records = export_events(db, workdir / "events.jsonl")
    seen = [SeenEvent(r["kind"], r["src_ip"] or "", r["dest_ip"] or "",
                      r["timestamp"].timestamp(), r["end"].timestamp()) for r in records]
    result.events = len(seen)
    result.matches = match_attacks(result.runs, seen)
    return result


async def _measure(net: LabNetwork, pid: int, port: int, config: SoakConfig,
                   result: SoakResult) -> None:
    """Traffic and attacks, while RSS, the page and the browser are polled beside them."""
    done = asyncio.Event()
    url = f"http://127.0.0.1:{port}/"
    pollers = [
        asyncio.create_task(_every(config.rss_every, done, lambda: result.rss.append(
            (time.time(), tree_rss_mib(pid))))),
        asyncio.create_task(_every(config.http_every, done, lambda: result.http.append(
            (time.time(), fetch_seconds(url))))),
    ]
    stop_browser = threading.Event()
    browser = None
    if config.browser:
        browser = threading.Thread(target=browser_loop, name="soak-browser", daemon=True,
                                   args=(url, config.browser_every, stop_browser, result.browser))
        browser.start()
    try:
        await asyncio.sleep(config.idle)
        result.traffic_start = time.time()
        result.runs = await soak_traffic(net, config.seconds, config.period, first=config.first)
    finally:
        done.set()
        stop_browser.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        if browser is not None:
            await asyncio.to_thread(browser.join, 60)


async def _every(seconds: float, done: asyncio.Event, sample: object) -> None:
    """Call ``sample`` (in a thread: it blocks) every ``seconds`` until ``done``."""
    while not done.is_set():
        t0 = time.monotonic()
        await asyncio.to_thread(sample)  # type: ignore[arg-type]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, seconds - (time.monotonic() - t0)))


def fetch_seconds(url: str, timeout: float = 10.0) -> float:
    """Seconds to fetch the whole page; inf when it fails or times out."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as page:
            page.read()
    except OSError:
        return float("inf")
    return time.monotonic() - t0


def browser_loop(url: str, every: float, stop: threading.Event,
                 out: list[tuple[float, float, float]]) -> None:
    """Load the dashboard in headless Chromium every ``every`` s until ``stop``: seconds until
    the page is drawn ("Live capture"), and until it shows the running capture's status
    ("Monitoring br0", sent over its websocket); inf when that takes over 10 s."""
    driver = chromium()
    try:
        while not stop.is_set():
            t0, at = time.monotonic(), time.time()
            try:
                driver.get(url)
                drawn = _until_text(driver, "Live capture", t0)
                out.append((at, drawn, _until_text(driver, "Monitoring " + BRIDGE, t0)))
            except Exception:  # noqa: BLE001 - a page that fails to load is a measured failure
                out.append((at, float("inf"), float("inf")))
            stop.wait(max(0.0, every - (time.monotonic() - t0)))
    finally:
        driver.quit()


def _until_text(driver: object, text: str, t0: float, limit: float = 10.0) -> float:
    """Seconds from ``t0`` until the page's text holds ``text``; TimeoutError past ``limit``."""
    while text not in driver.execute_script("return document.body.innerText"):  # type: ignore[attr-defined]
        if time.monotonic() - t0 > limit:
            raise TimeoutError(text)
        time.sleep(0.02)
    return time.monotonic() - t0


def chromium() -> object:
    """Debian's headless Chromium through Selenium, offline."""
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        raise SystemExit("the browser check needs chromium and chromium-driver (or --no-browser)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--disable-gpu", "--window-size=1280,900", "--no-sandbox",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = binary
    return webdriver.Chrome(options=options, service=Service(driver))


def start_app(net: LabNetwork, db: str, port: int, log: Path,
              learn: bool = True) -> subprocess.Popen[bytes]:
    """``python app.py`` monitoring the lab's bridge from start-up, in a session of its own;
    on a first start it learns the network (keeping up to 500,000 packets for 10 minutes)
    unless ``learn`` is False."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--db", db,
             "--interface", BRIDGE, "--netns", net.switch,
             "--models-dir", str(log.parent / "models"),  # a model it learns stays there
             *([] if learn else ["--no-learn"])],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=app_env())


def app_env() -> dict[str, str]:
    """This environment without pytest's and NiceGUI's test variables (under pytest, NiceGUI
    would look for a screen-test port) and without a login to ask for on 127.0.0.1."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "NICEGUI_")) and k != "NETIDS_REQUIRE_LOGIN"}


def wait_http(app: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            said = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise SystemExit(f"the app exited with {app.returncode} before serving: {said}")
        if fetch_seconds(url, 2.0) < float("inf"):
            return
        time.sleep(0.5)
    raise SystemExit(f"the app did not answer {url} within {timeout:.0f} s")


def stop_app(app: subprocess.Popen[bytes]) -> int:
    """SIGINT, as Ctrl-C would; SIGKILL to its whole session after 30 s."""
    if app.poll() is None:
        app.send_signal(signal.SIGINT)
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.pid, signal.SIGKILL)
            app.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(app.pid, signal.SIGKILL)  # anything of its session left behind
    return int(app.returncode)


def export_events(db: str, out: Path) -> list[dict[str, object]]:
    """The stored events, through the app's own ``export`` command."""
    done = subprocess.run([sys.executable, "app.py", "export", "--format", "jsonl", "--db", db,
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300, env=app_env())
    if done.returncode != 0:
        raise SystemExit(f"export failed: {done.stderr.strip()[-300:]}")
    return read_export(out)


def criteria(result: SoakResult, config: SoakConfig) -> list[tuple[str, str, str, bool]]:
    """(criterion, measured, bound, kept) rows of the summary."""
    slope = result.slope(config.warmup)
    rss = [m for _, m in result.rss] or [0.0]
    rows = [(f"RSS slope after {config.warmup / 60:.1f} min",
             f"{slope:+.2f} MiB/min (start {rss[0]:.0f}, peak {max(rss):.0f}, "
             f"end {rss[-1]:.0f} MiB)", f"<= {config.max_slope:.1f} MiB/min",
             slope <= config.max_slope)]
    for name in dict.fromkeys(r.attack.name for r in result.runs):
        found = [bool(m) for r, m in zip(result.runs, result.matches, strict=True)
                 if r.attack.name == name]
        rows.append((f"{name} detected", f"{sum(found)} of {len(found)}", "all", all(found)))
    rows += latency_rows(result, config.max_latency)
    rows.append(("app exit after Ctrl-C", str(result.app_exit), "0 or 130",
                 result.app_exit in (0, 130)))
    return rows


def latency_rows(result: SoakResult, bound: float) -> list[tuple[str, str, str, bool]]:
    """The page's latencies under traffic beside the quiet lab's (the same run's baseline).
    The server must answer within ``bound``; the browser must show the live page at all."""
    start = result.traffic_start
    series = {"dashboard HTTP": [(t, s) for t, s in result.http],
              "Chromium: page drawn": [(t, d) for t, d, _ in result.browser],
              "Chromium: live status shown": [(t, lv) for t, _, lv in result.browser]}
    rows = []
    for name, timed in series.items():
        busy = [s for t, s in timed if t >= start]
        idle = [s for t, s in timed if t < start]
        if not busy:
            continue
        text = (f"p99 {percentile(busy, 99):.2f} s, max {max(busy):.2f} s of {len(busy)}; "
                f"quiet p99 {percentile(idle, 99):.2f} s")
        if name == "dashboard HTTP":
            rows.append((name, text, f"<= {bound:.1f} s", max(busy) <= bound))
        else:
            rows.append((name, text, "< 10 s", max(busy) < float("inf")))
    return rows


def save_samples(result: SoakResult, path: Path) -> None:
    """Every sample, for plots and for finding what a slow page coincided with."""
    runs = [{"attack": r.attack.name, "start": r.start, "end": r.end} for r in result.runs]
    path.write_text(json.dumps({"rss": result.rss, "http": result.http,
                                "browser": result.browser, "attacks": runs},
                               allow_nan=True))


def slow_loads(result: SoakResult, bound: float) -> list[str]:
    """One line per page load over ``bound``: when, how long, what attack was running."""
    t0 = result.traffic_start
    lines = []
    drawn = [(t, d) for t, d, _ in result.browser]
    for name, timed in (("HTTP", result.http), ("Chromium", drawn)):
        for at, took in timed:
            if took > bound:
                during = [r.attack.name for r in result.runs if r.start - 1 <= at <= r.end + 1]
                lines.append(f"  slow {name} load at {at - t0:+.0f} s of traffic: {took:.2f} s"
                             f" ({', '.join(during) or 'no attack running'})")
    return lines


def print_summary(result: SoakResult, config: SoakConfig) -> bool:
    rows = criteria(result, config)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'criterion':<{width}}  {'measured':<58} {'bound':<16} kept")
    for name, measured, bound, kept in rows:
        print(f"{name:<{width}}  {measured:<58} {bound:<16} {'yes' if kept else 'NO'}")
    print(f"events stored: {result.events:,}; attacks run: {len(result.runs)}")
    print("\n".join(slow_loads(result, config.max_latency)))
    for run in result.missed():
        print(f"  missed: {run.attack.name} at {time.strftime('%H:%M:%S', time.gmtime(run.start))}"
              f" UTC, {run.end - run.start:.1f} s")
    return all(kept for *_, kept in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length (default 10)")
    parser.add_argument("--period", type=float, default=60.0, help="s between attack rounds")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the slope")
    parser.add_argument("--max-slope", type=float, default=2.0, help="MiB/min after warm-up")
    parser.add_argument("--port", type=int, default=8390, help="the app's port (8390)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium loads")
    parser.add_argument("--keep", type=Path, help="keep the database, app log and events here")
    parser.add_argument("--no-learn", action="store_true",
                        help="start the app with --no-learn: a sensor past learning its network "
                             "(learning keeps up to 500,000 packets in memory)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the soak test needs root (network namespaces, live capture)")
    config = SoakConfig(seconds=args.minutes * 60, period=args.period,
                        warmup=args.warmup * 60, max_slope=args.max_slope,
                        browser=not args.no_browser, learn=not args.no_learn)
    sigterm_as_ctrl_c()
    with tempfile.TemporaryDirectory(prefix="netids-soak-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = run_soak(config, workdir, args.port)
        save_samples(result, workdir / "samples.json")
        return 0 if print_summary(result, config) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted: the lab's namespaces and the app are removed")
