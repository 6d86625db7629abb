"""The login gate of LAN mode: sessions, the HTTP/WebSocket middleware and the message guard.

Serving beyond loopback (or with ``--require-login``), :func:`netids.ui.login.install_auth`
puts a gate in front of the whole app:

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
or changing its role takes effect at once.

All of it belongs to one :class:`Auth` per app, kept in ``app.state.auth``: the middleware and
the sweep get it passed; NiceGUI's Socket.IO handlers (one set per process) are wrapped once
and ask the app's current :class:`Auth`. Without a gate (loopback) everybody is admin.
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
from nicegui import app, context, core, ui
from nicegui.client import Client
from starlette.responses import JSONResponse, RedirectResponse

from netids.auth import CredentialsError, LoginThrottle, SessionPolicy, SessionRecord, UserStore

log = logging.getLogger(__name__)

LOGIN_PATH = "/login"
LOGIN_FINISH_PATH = "/login/finish"  # a signed-in browser gets its new session id here
LOGIN_TOKEN_SECONDS = 60.0  # how long the one-time token of a sign-in may wait for its use
MAX_PENDING_LOGINS = 1000
STORAGE_KEY = "netids_auth"  # the SessionRecord in app.storage.user
SWEEP_SECONDS = 5.0  # how often open pages of ended sessions are sent to the login page
PUBLIC_PREFIXES = (f"/_nicegui/{nicegui_version}/",)  # versioned JS/CSS assets, no data
PUBLIC_PATHS = frozenset({LOGIN_PATH, LOGIN_FINISH_PATH, "/favicon.ico"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SOCKET_PREFIX = "/_nicegui_ws/"
UNGUARDED_EVENTS = frozenset({"connect", "disconnect"})  # the WebSocket upgrade is checked
# Socket.IO messages a login page may send before anyone signed in: not 'log', which writes
# whatever it is sent to the server's log
LOGIN_PAGE_EVENTS = frozenset({"handshake", "event", "javascript_response", "ack"})
CLIENT_PREFIX = "/_nicegui/client/"  # per-page endpoints (uploads): bound to the page's session

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A checked password waiting for its browser to fetch a new session id."""

    session_id: str  # the id the login page was loaded with
    record: SessionRecord
    target: str
    expires: float


@dataclass
class Gate:
    """Sessions known to this process, checked against the users file and the policy."""

    store: UserStore
    policy: SessionPolicy
    throttle: LoginThrottle
    records: dict[str, SessionRecord] = field(default_factory=dict)  # session id -> record
    login_clients: set[str] = field(default_factory=set)  # ids of open login pages
    clock: Callable[[], float] = time.time
    pending: dict[str, PendingLogin] = field(default_factory=dict)  # one-time token -> login

    def pending_login(self, session_id: str, record: SessionRecord, target: str) -> str:
        """A one-time token for :data:`LOGIN_FINISH_PATH`, good for the same session only."""
        now = self.clock()
        for token in [t for t, p in self.pending.items() if p.expires < now]:
            del self.pending[token]
        while len(self.pending) >= MAX_PENDING_LOGINS:
            del self.pending[next(iter(self.pending))]
        token = secrets.token_urlsafe(32)
        self.pending[token] = PendingLogin(session_id, record, target, now + LOGIN_TOKEN_SECONDS)
        return token

    def take_login(self, token: str, session_id: str | None) -> PendingLogin | None:
        """The login of ``token`` if it is unused, in time and for ``session_id``; used up."""
        pending = self.pending.pop(token, None)
        if pending is None or pending.expires < self.clock() or pending.session_id != session_id:
            return None
        return pending

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


@dataclass(eq=False)
class Auth:
    """The LAN security of one app (``app.state.auth``): its gate, ``None`` when no login is
    needed (everybody is admin), and what the page frame adds to the right of the header."""

    gate: Gate | None = None
    header_extras: list[Callable[[], None]] = field(default_factory=list)

    def session(self) -> SessionRecord | None:
        """The valid session of the browser behind the current page; None without a gate."""
        return self.gate.check(page_session_id(), touch=False) if self.gate else None

    def role(self) -> str | None:
        """'admin' or 'viewer' for the current page's user; None when signed out.

        Without a gate (loopback, single user) everybody is 'admin'.
        """
        if self.gate is None:
            return "admin"
        record = self.session()
        return record.role if record else None

    async def sweep_forever(self) -> None:
        """Send open pages whose session ended back to the login page; forget closed login
        pages. Ends when another app's :class:`Auth` took this one's place."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            gate = self.gate
            if gate is None or current_auth() is not self:
                return
            gate.login_clients &= set(Client.instances)
            for client in list(Client.instances.values()):
                if client.id in gate.login_clients or not client.has_socket_connection:
                    continue
                if gate.check(client_session_id(client), touch=False) is None:
                    with client:
                        ui.navigate.to(LOGIN_PATH)


def current_auth() -> Auth | None:
    """The :class:`Auth` of the app being served (None before one is installed)."""
    return getattr(app.state, "auth", None)


def page_session_id() -> str | None:
    """The session id of the browser that loaded the current page (any UI context)."""
    try:
        session = context.client.request.session
    except (RuntimeError, AssertionError, AttributeError):
        return None
    return session.get("id")


def client_session_id(client: Client) -> str | None:
    try:
        return client.request.session.get("id")
    except (RuntimeError, AssertionError, AttributeError):
        return None


def stored_record() -> object:
    """The session record kept in ``app.storage.user`` (None outside a request or page)."""
    try:
        return app.storage.user.get(STORAGE_KEY)
    except (RuntimeError, AssertionError):
        return None


def store_record(record: SessionRecord) -> None:
    with contextlib.suppress(RuntimeError, AssertionError):
        app.storage.user[STORAGE_KEY] = record.to_dict()


# -- HTTP and WebSocket -----------------------------------------------------------------------
class AuthMiddleware:
    """Pure ASGI middleware (HTTP and WebSocket) enforcing the gate; see the module docstring.

    It sits inside NiceGUI's session middlewares, so ``scope["session"]["id"]`` is set.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.auth.gate
        if gate is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path: str = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        session_id = (scope.get("session") or {}).get("id")
        stored = None
        if scope["type"] == "http" and session_id and session_id not in gate.records:
            stored = stored_record()
        record = gate.check(session_id, touch=True, stored=stored)
        if scope["type"] == "http" and record is not None:
            store_record(record)
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
            if client is None or client_session_id(client) != session_id:
                return await _refuse(scope, receive, send, 403, "not your page")
        return await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4000 + status, "reason": detail})
        return
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def safe_next(target: str, *, fallback: str = "/") -> str:
    r"""``target`` when it is a path on this site, else ``fallback``: no scheme, no host, no
    ``//`` or backslash (browsers read ``/\\host`` as ``//host``), no control characters or
    spaces (browsers drop tabs and newlines, so ``/\t/host`` is ``//host`` too).

    >>> [safe_next(t) for t in ("/history?since=1", "//evil.net", "/\\evil.net", "/\t/evil.net",
    ...                         "https://evil.net", "javascript:alert(1)", "history", "")]
    ['/history?since=1', '/', '/', '/', '/', '/', '/', '/']
    """
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in target):
        return fallback
    parts = urllib.parse.urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return fallback
    return target


def _wants_html(scope: Scope) -> bool:
    """Whether the request is a browser navigation (a page), not a script or API call."""
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    return b"text/html" in accept


def _query(scope: Scope) -> dict[str, str]:
    pairs = urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"))
    return dict(pairs)


# -- Socket.IO messages -----------------------------------------------------------------------
def guard_socket_messages() -> None:
    """Wrap NiceGUI's Socket.IO handlers so each message is checked against the gate.

    NiceGUI routes a message by the ``client_id`` inside it; a socket may only reach pages
    loaded with its own valid session (or a login page). The handlers are NiceGUI's, one set
    per process: they are wrapped once and consult :func:`current_auth` on every message.
    """
    handlers = core.sio.handlers.get("/", {})
    for event, original in list(handlers.items()):
        if event in UNGUARDED_EVENTS or getattr(original, "netids_guarded", False):
            continue
        core.sio.on(event)(_guarded(event, original))


def _allowed(event: str, sid: str, msg: object) -> bool:
    auth = current_auth()
    gate = auth.gate if auth is not None else None
    if gate is None:
        return True
    client_id = str(msg.get("client_id", "")) if isinstance(msg, dict) else ""
    if client_id in gate.login_clients:  # signed out: only what the login form needs
        return event in LOGIN_PAGE_EVENTS
    try:
        scope = core.sio.get_environ(sid).get("asgi.scope", {})
    except (KeyError, AttributeError):
        scope = {}
    session_id = (scope.get("session") or {}).get("id")
    client = Client.instances.get(client_id)
    if client is None or session_id is None or client_session_id(client) != session_id:
        log.warning("dropped a Socket.IO %r message: not from the session of its page", event)
        return False
    return gate.check(session_id, touch=event == "event") is not None


def _guarded(event: str, original: Callable[..., Any]) -> Callable[..., Any]:
    refusal: object = False if event == "handshake" else None

    if asyncio.iscoroutinefunction(original):
        async def guarded_async(sid: str, msg: object = None, *rest: object) -> object:
            if not _allowed(event, sid, msg):
                return refusal
            return await original(sid, msg, *rest)
        guarded: Callable[..., Any] = guarded_async
    else:
        def guarded_sync(sid: str, msg: object = None, *rest: object) -> object:
            if not _allowed(event, sid, msg):
                return refusal
            return original(sid, msg, *rest)
        guarded = guarded_sync
    guarded.netids_guarded = True  # type: ignore[attr-defined]
    return guarded
