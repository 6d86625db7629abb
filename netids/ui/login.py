"""LAN mode: the login page, the session gate in front of every request, and role checks.

Serving beyond loopback (or with ``--require-login``), :func:`install_auth` puts a gate in
front of the whole app:

- HTTP: pages without a valid session redirect to ``/login``; anything else (uploads, API,
  Socket.IO polling) gets 401. A viewer's session may only read (GET/HEAD): uploads and other
  writes get 403. Only NiceGUI's versioned static assets and ``/login`` are public.
- WebSocket: the Socket.IO connection needs a valid session, or must belong to a login page.
- Socket.IO messages (every click, change, upload-finished...): accepted only from a socket
  whose session is valid *and* is the session that loaded the page it targets; others are
  dropped. Each accepted message counts as activity for the idle limit.
- Every few seconds, pages whose session ended (idle or absolute limit, signed out, account
  removed) are sent back to ``/login``.

The session record (user, role, login and last-seen times, no secret) lives in
``app.storage.user`` so it survives a restart; the gate keeps a copy per session id for the
WebSocket side. Roles are re-read from the users file on every check, so removing an account
or changing its role takes effect at once. Handlers call :func:`require_admin` (through
``netids.ui.frame``) before changing anything: the server refuses, whatever the browser shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from nicegui import __version__ as nicegui_version
from nicegui import app, background_tasks, context, core, run, ui
from nicegui.client import Client
from starlette.responses import JSONResponse, RedirectResponse

from netids.auth import (
    CredentialsError,
    LoginThrottle,
    SessionPolicy,
    SessionRecord,
    UserStore,
    is_loopback,
    load_or_create_secret,
    wait_in_words,
)
from netids.config import Settings

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
STORAGE_KEY = "netids_auth"  # the SessionRecord in app.storage.user
SWEEP_SECONDS = 5.0  # how often open pages of ended sessions are sent to the login page
PUBLIC_PREFIXES = (f"/_nicegui/{nicegui_version}/",)  # versioned JS/CSS assets, no data
PUBLIC_PATHS = frozenset({LOGIN_PATH, "/favicon.ico"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SOCKET_PREFIX = "/_nicegui_ws/"
CLIENT_PREFIX = "/_nicegui/client/"  # per-page endpoints (uploads): bound to the page's session

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LanConfigError(Exception):
    """Serving the LAN is not possible as configured (one line for the user)."""


def auth_required(host: str, settings: Settings) -> bool:
    """Whether the UI must ask for a login: beyond loopback, or when forced."""
    return settings.auth.require_login or not is_loopback(host)


def check_credentials(host: str, settings: Settings) -> None:
    """Raise :class:`LanConfigError` when a login is required but nobody could log in."""
    if not auth_required(host, settings):
        return
    try:
        configured = _store(settings).configured()
    except CredentialsError as exc:
        raise LanConfigError(str(exc)) from None
    if not configured:
        where = "beyond this machine" if not is_loopback(host) else "with --require-login"
        raise LanConfigError(
            f"serving on {host} {where} needs an account first: "
            f"python app.py users add NAME --role admin (then --role viewer for read-only users)")


def storage_secret(settings: Settings) -> str:
    """The secret that signs session cookies, kept in the data dir (0600), made on first use.

    When it cannot be kept (read-only install), a fresh one is used: sessions then end with
    the process, nothing else changes.
    """
    try:
        return load_or_create_secret(settings.auth.secret_file)
    except OSError as exc:
        log.warning("cannot keep the session secret in %s (%s): sessions end at restart",
                    settings.auth.secret_file, exc.strerror or exc)
        return secrets.token_urlsafe(48)


def install_auth(settings: Settings, *, host: str) -> bool:
    """Put the gate in front of the app when ``host`` needs a login; returns whether it did.

    Call once while building the app, before ``ui.run`` (which must get
    ``storage_secret=storage_secret(settings)``). Raises :class:`LanConfigError` when a
    login is required and no account is configured.
    """
    global _gate  # noqa: PLW0603 - one gate per process, like NiceGUI's app
    if not auth_required(host, settings):
        _gate = None
        return False
    check_credentials(host, settings)
    auth = settings.auth
    _gate = Gate(
        store=_store(settings),
        policy=SessionPolicy(auth.session_idle_seconds, auth.session_max_seconds),
        throttle=LoginThrottle(free_attempts=auth.login_free_attempts,
                               base_delay=auth.login_base_delay, max_delay=auth.login_max_delay),
    )
    app.add_middleware(AuthMiddleware)
    _guard_socket_messages()
    ui.page(LOGIN_PATH, title="netids · sign in")(login_page)
    app.on_startup(lambda: background_tasks.create(_sweep_forever(), name="netids-auth-sweep"))
    from netids.ui import frame  # the pages' frame exposes hooks for the role check and header

    frame.set_admin_check(lambda: current_role() == "admin")
    frame.add_header_extra(_signed_in_as)
    log.info("login required: %d account(s) in %s", len(_gate.store.users()), auth.users_file)
    return True


def current_role() -> str | None:
    """The role of the user behind the current page: 'admin' or 'viewer'; None when signed out.

    Without a login gate (loopback, single user) everybody is 'admin'.
    """
    if _gate is None:
        return "admin"
    record = _gate.check(_page_session_id(), touch=False)
    return record.role if record else None


def current_user() -> str | None:
    """The signed-in user's name (None without a gate or session)."""
    if _gate is None:
        return None
    record = _gate.check(_page_session_id(), touch=False)
    return record.user if record else None


def require_admin(action: str = "do that") -> bool:
    """True for an admin; otherwise tells the user in plain words, logs it, and returns False."""
    role = current_role()
    if role == "admin":
        return True
    log.warning("refused %r for %s (%s)", action, current_user() or "signed-out session", role)
    if role is None:
        ui.notify("Your session has ended: sign in again.", type="warning")
        ui.navigate.to(LOGIN_PATH)
    else:
        ui.notify(f"Only an admin can {action}: you are signed in as a viewer.", type="warning")
    return False


# -- the gate ----------------------------------------------------------------------------------
@dataclass
class Gate:
    """Sessions known to this process, checked against the users file and the policy."""

    store: UserStore
    policy: SessionPolicy
    throttle: LoginThrottle
    records: dict[str, SessionRecord] = field(default_factory=dict)  # session id -> record
    login_clients: set[str] = field(default_factory=set)  # ids of open login pages
    clock: Callable[[], float] = time.time

    def check(self, session_id: str | None, *, touch: bool,
              stored: object = None) -> SessionRecord | None:
        """The valid record of a session (refreshed from the users file), else None.

        ``stored`` is the record from ``app.storage.user``, used when this process has none
        (after a restart). ``touch`` counts the call as activity.
        """
        if not session_id:
            return None
        now = self.clock()
        record = self.records.get(session_id) or SessionRecord.from_dict(stored)
        if record is None:
            return None
        try:
            user = self.store.get(record.user)
        except CredentialsError as exc:
            log.error("cannot check sessions: %s", exc)
            return None
        if user is None or self.policy.expired(record, now):
            self.records.pop(session_id, None)
            return None
        record = replace(record, role=user.role, seen_at=now if touch else record.seen_at)
        self.records[session_id] = record
        return record

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.records.pop(session_id, None)


_gate: Gate | None = None


def _store(settings: Settings) -> UserStore:
    auth = settings.auth
    return UserStore(auth.users_file, env_admin_hash=auth.admin_password_hash,
                     env_admin_name=auth.admin_name)


def _page_session_id() -> str | None:
    """The session id of the browser that loaded the current page (any UI context)."""
    try:
        session = context.client.request.session
    except (RuntimeError, AssertionError, AttributeError):
        return None
    return session.get("id")


# -- HTTP and WebSocket -----------------------------------------------------------------------
class AuthMiddleware:
    """Pure ASGI middleware (HTTP and WebSocket) enforcing the gate; see the module docstring.

    It sits inside NiceGUI's session middlewares, so ``scope["session"]["id"]`` is set.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = _gate
        if gate is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path: str = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        session_id = (scope.get("session") or {}).get("id")
        stored = None
        if scope["type"] == "http" and session_id and session_id not in gate.records:
            stored = _stored_record()
        record = gate.check(session_id, touch=True, stored=stored)
        if scope["type"] == "http" and record is not None:
            _store_record(record)
        if path.startswith(SOCKET_PREFIX):
            client_id = _query(scope).get("client_id", "")
            if record is None and client_id not in gate.login_clients:
                return await _refuse(scope, receive, send, 401, "sign in first")
            return await self.app(scope, receive, send)
        if record is None:
            if scope["type"] == "http" and scope.get("method") == "GET" \
                    and not path.startswith(("/_nicegui", "/api/")) and _wants_html(scope):
                target = path + (f"?{scope['query_string'].decode()}"
                                 if scope.get("query_string") else "")
                query = urllib.parse.urlencode({"redirect_to": target})
                response = RedirectResponse(f"{LOGIN_PATH}?{query}", status_code=303)
                return await response(scope, receive, send)
            return await _refuse(scope, receive, send, 401, "sign in first")
        if scope["type"] == "http" and scope.get("method") not in SAFE_METHODS \
                and record.role != "admin":
            log.warning("refused %s %s for viewer %s", scope.get("method"), path, record.user)
            return await _refuse(scope, receive, send, 403, "only an admin can do that")
        if path.startswith(CLIENT_PREFIX):
            client = Client.instances.get(path[len(CLIENT_PREFIX):].split("/", 1)[0])
            if client is None or _client_session_id(client) != session_id:
                return await _refuse(scope, receive, send, 403, "not your page")
        return await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4000 + status, "reason": detail})
        return
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def _wants_html(scope: Scope) -> bool:
    """Whether the request is a browser navigation (a page), not a script or API call."""
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    return b"text/html" in accept


def _query(scope: Scope) -> dict[str, str]:
    pairs = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"))
    return dict(pairs)


def _stored_record() -> object:
    try:
        return app.storage.user.get(STORAGE_KEY)
    except (RuntimeError, AssertionError):
        return None


def _store_record(record: SessionRecord) -> None:
    with contextlib.suppress(RuntimeError, AssertionError):
        app.storage.user[STORAGE_KEY] = record.to_dict()


def _client_session_id(client: Client) -> str | None:
    try:
        return client.request.session.get("id")
    except (RuntimeError, AssertionError, AttributeError):
        return None


def _guard_socket_messages() -> None:
    """Wrap NiceGUI's Socket.IO handlers so each message is checked against the gate.

    NiceGUI routes a message by the ``client_id`` inside it; a socket may only reach pages
    loaded with its own valid session (or a login page).
    """
    handlers = core.sio.handlers.get("/", {})
    for event in ("handshake", "event", "javascript_response", "ack"):
        original = handlers.get(event)
        if original is None or getattr(original, "netids_guarded", False):
            continue
        core.sio.on(event)(_guarded(event, original))


def _guarded(event: str, original: Callable[..., Any]) -> Callable[..., Any]:
    refusal: object = False if event == "handshake" else None

    def allowed(sid: str, msg: object) -> bool:
        gate = _gate
        if gate is None:
            return True
        client_id = str(msg.get("client_id", "")) if isinstance(msg, dict) else ""
        if client_id in gate.login_clients:
            return True
        try:
            scope = core.sio.get_environ(sid).get("asgi.scope", {})
        except (KeyError, AttributeError):
            scope = {}
        session_id = (scope.get("session") or {}).get("id")
        client = Client.instances.get(client_id)
        if client is None or session_id is None or _client_session_id(client) != session_id:
            log.warning("dropped a Socket.IO %r message: not from the session of its page", event)
            return False
        return gate.check(session_id, touch=event == "event") is not None

    if asyncio.iscoroutinefunction(original):
        async def guarded_async(sid: str, msg: object = None, *rest: object) -> object:
            if not allowed(sid, msg):
                return refusal
            return await original(sid, msg, *rest)
        guarded: Callable[..., Any] = guarded_async
    else:
        def guarded_sync(sid: str, msg: object = None, *rest: object) -> object:
            if not allowed(sid, msg):
                return refusal
            return original(sid, msg, *rest)
        guarded = guarded_sync
    guarded.netids_guarded = True  # type: ignore[attr-defined]
    return guarded


async def _sweep_forever() -> None:
    """Send open pages whose session ended back to the login page; forget closed login pages."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        gate = _gate
        if gate is None:
            return
        gate.login_clients &= set(Client.instances)
        for client in list(Client.instances.values()):
            if client.id in gate.login_clients or not client.has_socket_connection:
                continue
            if gate.check(_client_session_id(client), touch=False) is None:
                with client:
                    ui.navigate.to(LOGIN_PATH)


# -- pages -------------------------------------------------------------------------------------
async def login_page(redirect_to: str = "/") -> None:
    """Name and password; wrong ones are refused, repeated failures wait longer each time."""
    gate = _gate
    assert gate is not None
    client = context.client
    gate.login_clients.add(client.id)
    target = redirect_to if redirect_to.startswith("/") and not redirect_to.startswith("//") \
        and not redirect_to.startswith(LOGIN_PATH) else "/"
    if gate.check(_page_session_id(), touch=False, stored=_stored_record()) is not None:
        ui.navigate.to(target)
        return
    address = client.request.client.host if client.request.client else "unknown"

    async def attempt() -> None:
        name = (user.value or "").strip()
        secret = password.value or ""
        password.set_value("")
        if not name or not secret:
            message.set_text("Enter your user name and password.")
            return
        wait = gate.throttle.retry_after(name, address)
        if wait > 0:
            message.set_text(f"Too many failed sign-ins. Try again in {wait_in_words(wait)}.")
            return
        button.disable()
        try:
            account = await run.io_bound(gate.store.authenticate, name, secret)
        except CredentialsError as exc:
            log.error("cannot check the password: %s", exc)
            message.set_text("Sign-in is not possible right now: the users file is unreadable.")
            return
        finally:
            button.enable()
        if account is None:
            wait = gate.throttle.failure(name, address)
            log.warning("failed sign-in for %r from %s", name, address)
            message.set_text("Wrong user name or password." + (
                f" Too many failed sign-ins: wait {wait_in_words(wait)} before the next try."
                if wait > 0 else ""))
            return
        gate.throttle.success(name, address)
        record = gate.policy.new(account, gate.clock())
        session_id = _page_session_id()
        if session_id:
            gate.records[session_id] = record
        app.storage.user[STORAGE_KEY] = record.to_dict()
        log.info("%s (%s) signed in from %s", account.name, account.role, address)
        ui.navigate.to(target)

    ui.query("body").classes("bg-slate-100")
    with ui.card().classes("absolute-center w-80 gap-3").mark("login-card"):
        with ui.row().classes("items-center gap-2"):
            ui.icon("shield", size="28px").classes("text-amber-500")
            ui.label("netids").classes("text-xl font-semibold")
        ui.label("Sign in to see this sensor.").classes("text-sm text-gray-600")
        user = ui.input("User name").props("autofocus autocomplete=username") \
            .classes("w-full").mark("login-user")
        password = ui.input("Password", password=True, password_toggle_button=True) \
            .props("autocomplete=current-password").classes("w-full").mark("login-password")
        message = ui.label("").classes("text-sm text-red-700").mark("login-message")
        button = ui.button("Sign in", on_click=attempt).classes("w-full").mark("login-submit")
        user.on("keydown.enter", lambda: password.run_method("focus"))
        password.on("keydown.enter", attempt)


def _signed_in_as() -> None:
    """Header piece: who is signed in, and a sign-out button."""
    record = _gate.check(_page_session_id(), touch=False) if _gate else None
    if record is None:
        return
    ui.label(f"{record.user} · {record.role}").classes("text-sm opacity-80").mark("signed-in-as")
    ui.button(icon="logout", on_click=sign_out).props("flat round color=white") \
        .tooltip("sign out").mark("sign-out")


def sign_out() -> None:
    """End the current session everywhere (all tabs) and show the login page."""
    if _gate is not None:
        record = _gate.check(_page_session_id(), touch=False)
        _gate.end(_page_session_id())
        if record:
            log.info("%s signed out", record.user)
    app.storage.user.pop(STORAGE_KEY, None)
    ui.navigate.to(LOGIN_PATH)
