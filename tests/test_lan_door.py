"""The LAN door as an attacker tries it: a real app process behind its login, driven by real
HTTP, real Socket.IO clients (what a script sends, no browser needed) and headless Chromium.

An attacker's pages come from 127.0.0.2, the owner's from 127.0.0.1 (both loopback on Linux),
so the two are different client addresses to the app.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import aiohttp
import pytest
import socketio
from selenium.webdriver.common.by import By

from netids.config import PROJECT_ROOT
from netids.ui.http_guards import CSP
from tests.support import (
    AppProcess,
    add_user,
    chromium,
    clean_env,
    free_port,
    model_for_tests,
    small_pcap,
    wait_until,
)

pytestmark = pytest.mark.slow

ADMIN, ADMIN_PW = "ann", "correct-horse-9"
ATTACKER = "127.0.0.2"
UPLOADS = PROJECT_ROOT / "db" / "uploads"
DEAD_UPLOADS = UPLOADS / "999999999"  # a process id above any the kernel hands out


class Door:
    def __init__(self, app: AppProcess, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def failed_checks(self, address: str) -> int:
        """Password checks that failed for ``address`` (logged once per hash checked)."""
        return self.app.log().count(f"failed sign-in for '{ADMIN}' from {address}")


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """The app with its login on, a 1 MiB upload limit, and uploads left by a dead process."""
    tmp = tmp_path_factory.mktemp("door")
    users = tmp / "users.json"
    add_user(users, ADMIN, "admin", ADMIN_PW)
    (DEAD_UPLOADS / "upload-x").mkdir(parents=True, exist_ok=True)
    (DEAD_UPLOADS / "upload-x" / "left.pcap").write_bytes(b"\0" * 64)
    port = free_port()
    app = AppProcess(["--port", str(port), "--db", f"sqlite:///{tmp / 'door.sqlite'}",
                      "--model", str(model_for_tests()), "--models-dir", str(tmp),
                      "--captures-dir", str(tmp), "--upload-limit", "1M", "--require-login",
                      "-v"], clean_env(NETIDS_USERS_FILE=str(users)), tmp / "app.log")
    door = Door(app, port)
    app.wait_http(door.url + "/login")
    yield door
    app.stop()
    shutil.rmtree(DEAD_UPLOADS, ignore_errors=True)


class LoginPage:
    """A login page opened over HTTP and driven over Socket.IO from ``local`` (an address),
    as a script would: fill in the form, press the button, see where the page is sent."""

    def __init__(self, door: Door, local: str = "127.0.0.1", redirect_to: str | None = None):
        self.door, self.local, self.redirect_to = door, local, redirect_to
        self.opened: list[str] = []  # paths the server told the page to open

    async def __aenter__(self) -> LoginPage:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(self.local, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True))
        query = "" if self.redirect_to is None else \
            "?" + urllib.parse.urlencode({"redirect_to": self.redirect_to})
        async with self.http.get(f"{self.door.url}/login{query}",
                                 headers={"Accept": "text/html"}) as response:
            html = await response.text()
        self.client_id = re.search(r"'client_id': '([0-9a-f-]+)'", html).group(1)
        elements = json.loads(re.search(r"parseElements\(String\.raw`(.*?)`\)", html,
                                        re.S).group(1))
        self.user = _listener(elements, "User name", "update:value")
        self.password = _listener(elements, "Password", "update:value")
        self.button = _listener(elements, "Sign in", "click")
        self.cookie = self.cookies()
        self.sio = socketio.AsyncClient(http_session=self.http)
        self.sio.on("open", lambda data: self.opened.append(data["path"]))
        await self.sio.connect(
            f"{self.door.url}?client_id={self.client_id}&tab_id={uuid.uuid4()}"
            f"&document_id={uuid.uuid4()}&next_message_id=0&implicit_handshake=true",
            socketio_path="/_nicegui_ws/socket.io", transports=["websocket"])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sio.disconnect()
        await self.http.close()

    def cookies(self) -> str:
        return "; ".join(f"{c.key}={c.value}" for c in self.http.cookie_jar)

    async def fill(self, user: str, password: str) -> None:
        await self._emit(self.user, [json.dumps(user)])
        await self._emit(self.password, [json.dumps(password)])

    async def press(self) -> None:
        await self._emit(self.button, [])

    async def sign_in(self, user: str, password: str) -> str:
        """Sign in and follow the server like a browser: the page it lands on (its path).
        Paced as a person signs in: the server checks at most 5 passwords a second, and the
        tests sign in ten times in a row."""
        await self.fill(user, password)
        await asyncio.sleep(0.25)
        await self.press()
        deadline = time.monotonic() + 20
        while not self.opened:
            assert time.monotonic() < deadline, "the login page was never sent anywhere"
            await asyncio.sleep(0.05)
        target = self.opened[-1]
        while target.startswith("/login/finish"):
            async with self.http.get(self.door.url + target, allow_redirects=False,
                                     headers={"Accept": "text/html"}) as response:
                assert response.status == 303
                target = response.headers["location"]
        return target

    async def _emit(self, target: tuple[int, str], args: list[str]) -> None:
        await self.sio.emit("event", {"id": target[0], "client_id": self.client_id,
                                      "listener_id": target[1], "args": args})


async def _eventually(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _listener(elements: dict, label: str, kind: str) -> tuple[int, str]:
    for key, element in elements.items():
        if element.get("props", {}).get("label") == label:
            return int(key), next(e["listener_id"] for e in element["events"]
                                  if e["type"] == kind)
    raise AssertionError(f"no {label!r} on the login page")


async def _get(door: Door, path: str, cookie: str = "") -> tuple[int, Mapping[str, str], bytes]:
    """One GET as a browser navigation: (status, headers, any case, body)."""
    async with aiohttp.ClientSession() as http, http.get(
            door.url + path, allow_redirects=False,
            headers={"Accept": "text/html", **({"Cookie": cookie} if cookie else {})}) as r:
        return r.status, r.headers.copy(), await r.read()


# -- the login race and the lock-out --------------------------------------------------------
async def test_parallel_guesses_are_counted_before_the_password_is_checked(door: Door) -> None:
    pages = [LoginPage(door, local=ATTACKER) for _ in range(50)]
    for page in pages:
        await page.__aenter__()
    try:
        for page in pages:
            await page.fill(ADMIN, "a-wrong-guess")
        await asyncio.gather(*(page.press() for page in pages))  # 50 guesses at once
        await _eventually(lambda: door.failed_checks(ATTACKER) >= 1, "the first checked guess")
        await asyncio.sleep(3.0)  # unthrottled, more guesses would have been checked by now
    finally:
        for page in pages:
            await page.__aexit__()
    # 3 free attempts per account and address, the 4th starts the back-off: 4 of 50 checked
    assert door.failed_checks(ATTACKER) == 4
    # the account's owner, from another address, is not locked out by the attacker
    async with LoginPage(door) as owner:
        assert await owner.sign_in(ADMIN, ADMIN_PW) == "/"
    assert door.failed_checks("127.0.0.1") == 0


async def test_guesses_from_many_addresses_meet_the_server_wide_cap(door: Door) -> None:
    addresses = [f"127.0.1.{i}" for i in range(1, 21)]  # 20 machines, one guess each
    pages = [LoginPage(door, local=address) for address in addresses]
    for page in pages:
        await page.__aenter__()
    try:
        await asyncio.sleep(1.5)  # the bucket refills while the pages open
        for page in pages:
            await page.fill(ADMIN, "a-wrong-guess")
        started = time.monotonic()
        await asyncio.gather(*(page.press() for page in pages))
        sent_in = time.monotonic() - started
        await asyncio.sleep(3.0)
    finally:
        for page in pages:
            await page.__aexit__()
    checked = sum(door.failed_checks(address) for address in addresses)
    assert 1 <= checked <= 5 + int(5 * sent_in) + 1  # 5 a second, whatever the addresses
    assert "Too many sign-ins at once" not in door.app.log()  # said to the page, not logged


# -- the session after signing in -------------------------------------------------------------
async def test_signing_in_gives_the_browser_a_new_session_id(door: Door) -> None:
    async with LoginPage(door) as page:
        planted = page.cookie  # what an attacker could have set in the victim's browser
        assert planted.startswith("session=")
        assert await page.sign_in(ADMIN, ADMIN_PW) == "/"
        signed_in = page.cookies()
    assert signed_in != planted
    assert (await _get(door, "/", signed_in))[0] == 200
    status, headers, _ = await _get(door, "/", planted)
    assert status == 303 and headers["location"].startswith("/login")  # worth nothing


@pytest.mark.parametrize("target", [
    "//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/\n/evil.example/",
    "/\\\\evil.example", "https://evil.example/", "javascript:alert(1)", " //evil.example/",
    "/login/finish?token=x",
])
async def test_after_signing_in_only_pages_of_this_site_are_opened(door: Door,
                                                                   target: str) -> None:
    async with LoginPage(door, redirect_to=target) as page:
        assert await page.sign_in(ADMIN, ADMIN_PW) == "/"


async def test_a_page_of_this_site_asked_for_is_opened_after_signing_in(door: Door) -> None:
    async with LoginPage(door, redirect_to="/history?since=x") as page:
        assert await page.sign_in(ADMIN, ADMIN_PW) == "/history?since=x"


# -- what a signed-out socket may do --------------------------------------------------------
async def test_a_signed_out_socket_cannot_write_to_the_log(door: Door) -> None:
    marker = f"forged-{uuid.uuid4().hex}"
    before = door.app.log_path.stat().st_size
    async with LoginPage(door, local=ATTACKER) as page:
        for _ in range(300):
            await page.sio.emit("log", {"client_id": page.client_id, "level": "error",
                                        "message": marker + "x" * 10_000})
        await page.fill("x", "y")  # the socket is still served: messages arrive in order
        await asyncio.sleep(1.5)
    assert marker not in door.app.log()
    assert door.app.log_path.stat().st_size - before < 50_000


# -- security headers and the CSP -------------------------------------------------------------
async def test_every_response_has_the_security_headers(door: Door) -> None:
    import nicegui

    for path in ("/login", "/", "/history", f"/_nicegui/{nicegui.__version__}/static/nicegui.js",
                 "/_nicegui_ws/socket.io/?EIO=4&transport=polling"):
        _, headers, _ = await _get(door, path)
        assert headers.get("Content-Security-Policy") == CSP, path
        assert "frame-ancestors 'none'" in CSP
        assert headers.get("X-Frame-Options") == "DENY", path
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert headers.get("Referrer-Policy") == "same-origin", path


def test_the_pages_render_under_the_csp_without_violations(door: Door) -> None:
    with chromium() as driver:
        driver.get(door.url + "/")
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "input")) == 2, 30,
                   what="the login form")
        name, secret = driver.find_elements(By.CSS_SELECTOR, "input")
        name.send_keys(ADMIN)
        secret.send_keys(ADMIN_PW)
        driver.find_element(By.XPATH, "//button[contains(., 'Sign in')]").click()
        wait_until(lambda: driver.find_elements(By.XPATH, "//button[contains(., "
                                                          "'Start monitoring')]"), 30,
                   what="the dashboard")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".nicegui-echart canvas"),
                   30, what="the charts drawn")
        for path, shown in (("/history", ".ag-root"), ("/training", ".nicegui-echart canvas")):
            driver.get(door.url + path)
            wait_until(lambda s=shown: driver.find_elements(By.CSS_SELECTOR, s), 30,
                       what=f"{path} rendered")
        time.sleep(1.0)
        console = [e["message"] for e in driver.get_log("browser")]
    violations = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
    assert violations == []


# -- uploads ----------------------------------------------------------------------------------
def test_uploads_left_by_a_dead_process_are_deleted_at_start(door: Door) -> None:
    assert not DEAD_UPLOADS.exists()
    # other tests' app processes may have left folders too: at least this one went
    assert re.search(r"deleted [1-9]\d* folder\(s\) of old uploads", door.app.log())


async def _upload_url(door: Door, cookie: str) -> str:
    _, _, body = await _get(door, "/", cookie)
    match = re.search(r'"url":"(/_nicegui/client/[^"]+/upload/\d+)"', body.decode())
    assert match, "no upload on the dashboard"
    return match.group(1)


def _multipart_head(name: str = "big.pcap") -> tuple[bytes, bytes, str]:
    boundary = "netidsboundary7"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post_chunked(door: Door, path: str, cookie: str, size: int) -> str:
    """POST ``size`` bytes of file in chunks (no Content-Length), stopping early when the
    server answers; the status line and body of its answer."""
    head, tail, kind = _multipart_head()
    with socket.create_connection(("127.0.0.1", door.port), timeout=20) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                   f"Content-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        chunks = [head] + [b"\0" * 65536] * (size // 65536) + [tail]
        for chunk in chunks:
            s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            s.settimeout(0.05)
            try:
                answer = s.recv(65536)
                break  # answered before the end of the file
            except TimeoutError:
                continue
        else:
            s.sendall(b"0\r\n\r\n")
            answer = b""
        s.settimeout(20)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            more = s.recv(65536)
            if not more:
                break
            answer += more
    return answer.decode(errors="replace")


async def test_an_upload_over_the_limit_is_refused_while_it_streams(door: Door,
                                                                    tmp_path: Path) -> None:
    async with LoginPage(door) as page:
        await page.sign_in(ADMIN, ADMIN_PW)
        cookie = page.cookies()
    url = await _upload_url(door, cookie)
    limit_words = "larger than the upload limit of 1 MiB"
    # a declared size over the limit: refused before a byte of the body is read
    head, tail, kind = _multipart_head()
    body = head + b"\0" * (2 * 1024**2) + tail
    async with aiohttp.ClientSession() as http, http.post(
            door.url + url, data=body, expect100=True,
            headers={"Cookie": cookie, "Content-Type": kind}) as response:
        assert response.status == 413
        assert limit_words in (await response.json())["detail"]
    # no size declared: refused as soon as more than the limit has come in
    started = time.monotonic()
    answer = _post_chunked(door, url, cookie, 64 * 1024**2)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert limit_words in answer
    assert time.monotonic() - started < 20
    mine = UPLOADS / str(door.app.proc.pid)
    assert not list(mine.glob("upload-*")), "nothing of a refused upload is kept"
    # under the limit: accepted, analysed, then deleted
    small = small_pcap(tmp_path / "small.pcap", 2000).read_bytes()
    head, tail, kind = _multipart_head("small.pcap")
    async with aiohttp.ClientSession() as http, http.post(
            door.url + url, data=head + small + tail,
            headers={"Cookie": cookie, "Content-Type": kind}) as response:
        assert response.status == 200
    for _ in range(300):  # the dashboard's status line says when the analysis has finished
        if b"last: small.pcap" in (await _get(door, "/", cookie))[2]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the small upload was not analysed")
    await _eventually(lambda: not list(mine.glob("upload-*")), "the upload to be deleted")
