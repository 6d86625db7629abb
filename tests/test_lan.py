"""LAN mode, as a user on another machine meets it: a real app process, real HTTP, real
WebSocket, and headless Chromium.

The main app runs on 127.0.0.1 with ``--require-login`` (the LAN gate without listening on the
LAN); one app binds 0.0.0.0 (reached via 127.0.0.1 only) to show that serving beyond loopback
turns the gate on by itself. Accounts are made with ``python app.py users add``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from netids.config import PROJECT_ROOT
from tests.support import (
    AppProcess,
    add_user,
    chromium,
    clean_env,
    free_port,
    model_for_tests,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMIN, ADMIN_PW = "ann", "correct-horse-9"
VIEWER, VIEWER_PW = "bob", "battery-staple-7"
START = "//button[contains(., 'Start monitoring')]"
STOP = "//button[contains(., 'Stop')]"


class Lan:
    def __init__(self, app: AppProcess, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.port = port


def _start_app(tmp: Path, *args: str, **env: str) -> Lan:
    users = tmp / "users.json"
    if not users.exists():
        add_user(users, ADMIN, "admin", ADMIN_PW)
        add_user(users, VIEWER, "viewer", VIEWER_PW)
    port = free_port()
    app = AppProcess(
        ["--port", str(port), "--db", f"sqlite:///{tmp / 'lan.sqlite'}", "--model",
         str(model_for_tests()), "--models-dir", str(tmp), "-v", *args],
        clean_env(NETIDS_USERS_FILE=str(users), **env), tmp / "app.log")
    lan = Lan(app, port)
    app.wait_http(lan.url + "/login")
    return lan


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    """The app on loopback with the LAN gate forced on."""
    lan = _start_app(tmp_path_factory.mktemp("lan"), "--require-login")
    yield lan
    lan.app.stop()


@pytest.fixture(scope="module")
def lan_any(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    """The app bound to 0.0.0.0 (gate on because of the address), short idle limit."""
    lan = _start_app(tmp_path_factory.mktemp("lan_any"), "--host", "0.0.0.0",
                     NETIDS_SESSION_IDLE_SECONDS="4")
    yield lan
    lan.app.stop()


# -- helpers -----------------------------------------------------------------------------------
def _http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
          data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request, redirects not followed: (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _websocket_status(port: int, query: str, cookie: str = "") -> str:
    """The status line the server answers a Socket.IO WebSocket upgrade with."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((f"GET /_nicegui_ws/socket.io/?EIO=4&transport=websocket&{query} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode())
        return s.recv(4096).decode(errors="replace").splitlines()[0]


def _login(driver, base: str, user: str, password: str, path: str = "/") -> None:
    driver.get(base + path)
    wait_until(lambda: "/login" in driver.current_url, what="the login page")
    _type_login(driver, user, password)


def _type_login(driver, user: str, password: str) -> None:
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "input")) == 2,
               what="the login form")
    name, secret = driver.find_elements(By.CSS_SELECTOR, "input")
    name.send_keys(user)
    secret.send_keys(password)
    driver.find_element(By.XPATH, "//button[contains(., 'Sign in')]").click()


def _on_page(driver, base: str, path: str = "/") -> None:
    wait_until(lambda: driver.current_url.split("?")[0] == base + path
               and driver.find_elements(By.XPATH, START if path == "/" else "//header"),
               what=f"{path} after signing in")


def _text_of(driver, xpath: str) -> str:
    return " ".join(e.text for e in driver.find_elements(By.XPATH, xpath))


def _status(driver) -> str:
    return _text_of(driver, "//*[contains(text(), 'Idle') or contains(text(), 'Monitoring') "
                            "or contains(text(), 'Stopped')]")


def _listener(driver, xpath: str) -> dict:
    """The page's client id and the click listener of the element at ``xpath``."""
    element = driver.find_element(By.XPATH, xpath)
    return driver.execute_script("""
        const id = parseInt(arguments[0].id.slice(1));
        const ev = mounted_app.elements[id].events.find(e => e.type === 'click');
        return {id: id, client_id: window.clientId, listener_id: ev.listener_id};
    """, element)


def _emit_click(driver, target: dict) -> None:
    """Send the Socket.IO message a click sends, through this browser's own socket."""
    driver.execute_script("""
        const t = arguments[0];
        window.socket.emit('event', {id: t.id, client_id: t.client_id,
                                     listener_id: t.listener_id, args: []});
    """, target)


def _cookie_header(driver) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())


def _upload_url(driver) -> str:
    return driver.execute_script("""
        const e = Object.values(mounted_app.elements)
            .find(e => typeof e.props?.url === 'string' && e.props.url.includes('/upload/'));
        return e.props.url;
    """)


def _multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "netidsboundary7"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
        + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# -- refusing to start -------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--host", "0.0.0.0"], ["--require-login"]])
def test_refuses_to_serve_the_lan_without_accounts(tmp_path: Path, args: list[str]) -> None:
    port = free_port()
    started = time.monotonic()
    done = subprocess.run([sys.executable, "app.py", "--port", str(port), *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env=clean_env(NETIDS_USERS_FILE=str(tmp_path / "users.json")))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "python app.py users add NAME --role admin" in lines[0]
    assert time.monotonic() - started < 60
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# -- without a session -------------------------------------------------------------------------
def test_without_a_session_pages_redirect_and_everything_else_is_refused(lan: Lan) -> None:
    status, headers, _ = _http(lan.url + "/history?since=x", headers={"Accept": "text/html"})
    assert status == 303
    assert headers["location"] == "/login?redirect_to=%2Fhistory%3Fsince%3Dx"
    assert _http(lan.url + "/login", headers={"Accept": "text/html"})[0] == 200
    # API-style requests, Socket.IO polling and uploads: 401, not a page
    assert _http(lan.url + "/")[0] == 401
    assert _http(lan.url + "/_nicegui_ws/socket.io/?EIO=4&transport=polling")[0] == 401
    body, kind = _multipart("x.pcap", b"\0" * 64)
    assert _http(lan.url + "/_nicegui/client/abc/upload/1", method="POST", data=body,
                 headers={"Content-Type": kind})[0] == 401
    assert " 403 " in _websocket_status(lan.port, "client_id=abc")
    # NiceGUI's versioned assets stay public (the login page needs them)
    import nicegui

    assert _http(f"{lan.url}/_nicegui/{nicegui.__version__}/static/nicegui.js")[0] == 200


def test_browser_is_sent_to_login_and_back_to_the_page_it_asked_for(lan: Lan) -> None:
    with chromium() as driver:
        _login(driver, lan.url, ADMIN, ADMIN_PW, path="/history")
        _on_page(driver, lan.url, "/history")
        assert ADMIN in _text_of(driver, f"//*[contains(text(), '{ADMIN} · admin')]")


# -- roles ------------------------------------------------------------------------------------
def test_viewer_cannot_start_a_capture_even_by_forging_the_click(lan: Lan) -> None:
    with chromium() as driver:
        _login(driver, lan.url, VIEWER, VIEWER_PW)
        _on_page(driver, lan.url)
        start = driver.find_element(By.XPATH, START)
        assert start.get_attribute("disabled") is not None  # what the browser shows...
        assert "Idle" in _status(driver)
        _emit_click(driver, _listener(driver, START))  # ...and what a forged message does
        time.sleep(2.0)  # a started capture would show by now (counters update twice a second)
        assert "Idle" in _status(driver)
        # the upload endpoint refuses a viewer's file outright
        body, kind = _multipart("forged.pcap", b"\xd4\xc3\xb2\xa1" + b"\0" * 60)
        status, _, _ = _http(lan.url + _upload_url(driver), method="POST", data=body,
                             headers={"Content-Type": kind, "Cookie": _cookie_header(driver)})
        assert status == 403
    assert "refused POST" in lan.app.log()


def test_demoted_while_the_page_is_open_the_enabled_button_is_refused(lan: Lan) -> None:
    users = Path(lan.app.log_path).parent / "users.json"
    add_user(users, "carl", "admin", "carl-password-3")
    with chromium() as driver:
        _login(driver, lan.url, "carl", "carl-password-3")
        _on_page(driver, lan.url)
        wait_until(lambda: driver.find_element(By.XPATH, START).get_attribute("disabled")
                   is None, what="an enabled start button")
        done = subprocess.run([sys.executable, "app.py", "users", "add", "carl", "--role",
                               "viewer", "--replace", "--password-stdin"], cwd=PROJECT_ROOT,
                              input="carl-password-3\n", text=True, capture_output=True,
                              env=clean_env(NETIDS_USERS_FILE=str(users)), timeout=60)
        assert done.returncode == 0, done.stderr
        driver.find_element(By.XPATH, START).click()  # the page still shows it enabled
        wait_until(lambda: "Only an admin can" in _text_of(
            driver, "//*[contains(@class, 'q-notification')]"), what="the refusal notice")
        time.sleep(1.0)
        assert "Idle" in _status(driver) or "Stopped" in _status(driver)
        driver.get(lan.url + "/")  # a new page shows the new role
        _on_page(driver, lan.url)
        assert "carl · viewer" in _text_of(driver, "//*[contains(text(), 'carl')]")


def test_admin_can_start_and_stop_a_capture(lan: Lan) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("live capture needs root (CAP_NET_RAW)")
    with chromium() as driver:
        _login(driver, lan.url, ADMIN, ADMIN_PW)
        _on_page(driver, lan.url)
        wait_until(lambda: driver.find_element(By.XPATH, START).get_attribute("disabled")
                   is None, what="an enabled start button")
        driver.find_element(By.XPATH, START).click()
        wait_until(lambda: "Monitoring all interfaces" in _status(driver), what="monitoring")
        wait_until(lambda: driver.find_element(By.XPATH, STOP).get_attribute("disabled")
                   is None, what="an enabled stop button")
        driver.find_element(By.XPATH, STOP).click()
        wait_until(lambda: "Stopped" in _status(driver), what="stopped")


def test_admin_upload_passes_the_gate_and_its_name_stays_text(lan: Lan, tmp_path: Path) -> None:
    import shutil

    from tests.support import SAMPLE

    hostile = tmp_path / "<img src=x onerror=window.pwned=1>.pcap"
    shutil.copy(SAMPLE, hostile)
    with chromium() as driver:
        _login(driver, lan.url, ADMIN, ADMIN_PW)
        _on_page(driver, lan.url)
        upload = driver.find_element(By.CSS_SELECTOR, "input[type=file]")
        upload.send_keys(str(hostile))
        wait_until(lambda: hostile.name in _status(driver) + _text_of(
            driver, "//*[contains(@class, 'q-notification')]"), what="the file being analysed")
        assert driver.execute_script("return window.pwned === undefined")
        assert not driver.find_elements(By.CSS_SELECTOR, "img[src='x']")
        wait_until(lambda: "Monitoring" not in _status(driver), timeout=60,
                   what="the analysis to finish")


def test_a_socket_cannot_drive_a_page_of_another_session(lan: Lan) -> None:
    with chromium() as admin, chromium() as viewer:
        _login(admin, lan.url, ADMIN, ADMIN_PW)
        _login(viewer, lan.url, VIEWER, VIEWER_PW)
        _on_page(admin, lan.url)
        _on_page(viewer, lan.url)
        wait_until(lambda: "Idle" in _status(admin) or "Stopped" in _status(admin),
                   what="an idle dashboard")
        before = _status(admin)
        _emit_click(viewer, _listener(admin, START))  # the admin's page, the viewer's socket
        wait_until(lambda: "dropped a Socket.IO 'event' message" in lan.app.log(),
                   what="the dropped message in the log")
        time.sleep(1.0)
        assert _status(admin) == before


def test_sign_out_ends_the_session(lan: Lan) -> None:
    with chromium() as driver:
        _login(driver, lan.url, ADMIN, ADMIN_PW)
        _on_page(driver, lan.url)
        cookie = _cookie_header(driver)
        driver.find_element(By.XPATH, "//button[.//i[normalize-space()='logout']]").click()
        wait_until(lambda: "/login" in driver.current_url, what="the login page")
        driver.get(lan.url + "/training")
        wait_until(lambda: "/login" in driver.current_url, what="the login page again")
        # the old cookie is worth nothing now, for pages and for the WebSocket
        assert _http(lan.url + "/", headers={"Cookie": cookie})[0] == 401
        assert " 403 " in _websocket_status(lan.port, "client_id=abc", cookie)


# -- beyond loopback: wrong passwords, back-off, expiry -----------------------------------------
def test_bound_to_all_addresses_the_gate_is_on(lan_any: Lan) -> None:
    status, headers, _ = _http(lan_any.url + "/", headers={"Accept": "text/html"})
    assert status == 303 and headers["location"].startswith("/login")
    assert "login required: 2 account(s)" in lan_any.app.log()


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(lan_any: Lan) -> None:
    message = "//*[contains(text(), 'Wrong') or contains(text(), 'Too many') " \
              "or contains(text(), 'Try again')]"
    with chromium() as driver:
        _login(driver, lan_any.url, ADMIN, "not-the-password")
        wait_until(lambda: "Wrong user name or password." in _text_of(driver, message),
                   what="the refusal")
        assert "/login" in driver.current_url
        for attempt in range(3):  # 3 free attempts per user and address, then 2 s, 4 s, ...
            driver.get(driver.current_url)
            _type_login(driver, ADMIN, f"wrong-{attempt}")
            wait_until(lambda: "Wrong" in _text_of(driver, message), what="the refusal")
        assert "Too many failed sign-ins: wait 2 seconds" in _text_of(driver, message)
        driver.get(driver.current_url)
        _type_login(driver, ADMIN, ADMIN_PW)  # even the right password waits its turn
        wait_until(lambda: "Try again in" in _text_of(driver, message), what="the back-off")
        assert "/login" in driver.current_url
        time.sleep(2.5)
        driver.get(driver.current_url)
        _type_login(driver, ADMIN, ADMIN_PW)
        _on_page(driver, lan_any.url)
    log = lan_any.app.log()
    assert log.count(f"failed sign-in for '{ADMIN}'") == 4


def test_idle_session_expires_and_the_page_goes_to_login(lan_any: Lan) -> None:
    with chromium() as driver:
        _login(driver, lan_any.url, VIEWER, VIEWER_PW)
        _on_page(driver, lan_any.url)
        cookie = _cookie_header(driver)
        # idle limit 4 s: the open page is sent to the login page by the next sweep (5 s)
        wait_until(lambda: "/login" in driver.current_url, timeout=15, what="expiry")
    assert _http(lan_any.url + "/", headers={"Cookie": cookie})[0] == 401


def test_passwords_never_reach_the_log(lan: Lan, lan_any: Lan) -> None:
    for app in (lan.app, lan_any.app):
        log = app.log()
        assert "signed in" in log
        for secret in (ADMIN_PW, VIEWER_PW, "not-the-password", "wrong-0"):
            assert secret not in log
    users = json.loads((Path(lan.app.log_path).parent / "users.json").read_text())
    assert all(u["password_hash"].startswith("scrypt$") for u in users["users"])
    assert (Path(lan.app.log_path).parent / "users.json").stat().st_mode & 0o777 == 0o600
