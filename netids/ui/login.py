"""LAN mode: who must sign in, the login page, and signing out.

Serving beyond loopback (or with ``--require-login``), :func:`install_auth` makes the app's
:class:`~netids.ui.gate.Auth` with a gate in front of every page, upload and socket message
(:mod:`netids.ui.gate` says how), registers ``/login`` and puts "signed in as ... / sign out"
in the header. Handlers call :func:`netids.ui.frame.require_admin` before changing anything:
the server refuses, whatever the browser shows.
"""

from __future__ import annotations

import logging
import secrets
import uuid

from nicegui import app, background_tasks, context, run, ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from netids.auth import (
    CredentialsError,
    LoginThrottle,
    SessionPolicy,
    UserStore,
    is_loopback,
    load_or_create_secret,
    wait_in_words,
)
from netids.config import Settings
from netids.ui.gate import (
    LOGIN_FINISH_PATH,
    LOGIN_PATH,
    STORAGE_KEY,
    Auth,
    AuthMiddleware,
    Gate,
    guard_socket_messages,
    page_session_id,
    safe_next,
    stored_record,
)

log = logging.getLogger(__name__)


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


def install_auth(settings: Settings, *, host: str) -> Auth:
    """The app's :class:`Auth`, kept in ``app.state.auth``; with a gate in front of the app
    when ``host`` needs a login (then ``auth.gate`` is set), else everybody is admin.

    Call once while building the app, before ``ui.run`` (which must get
    ``storage_secret=storage_secret(settings)``). Raises :class:`LanConfigError` when a
    login is required and no account is configured.
    """
    if not auth_required(host, settings):
        app.state.auth = Auth()
        return app.state.auth
    check_credentials(host, settings)
    config = settings.auth
    gate = Gate(
        store=_store(settings),
        policy=SessionPolicy(config.session_idle_seconds, config.session_max_seconds),
        throttle=LoginThrottle(free_attempts=config.login_free_attempts,
                               base_delay=config.login_base_delay,
                               max_delay=config.login_max_delay,
                               checks_per_second=config.login_checks_per_second),
    )
    auth = app.state.auth = Auth(gate)
    app.add_middleware(AuthMiddleware, auth=auth)
    guard_socket_messages()

    @ui.page(LOGIN_PATH, title="netids · sign in")
    async def login(redirect_to: str = "/") -> None:
        await login_page(auth, redirect_to)

    @app.get(LOGIN_FINISH_PATH, include_in_schema=False)
    def finish(request: Request, token: str = "") -> RedirectResponse:
        return finish_login(gate, request, token)

    app.on_startup(lambda: background_tasks.create(auth.sweep_forever(),
                                                   name="netids-auth-sweep"))
    auth.header_extras.append(lambda: signed_in_as(auth))
    log.info("login required: %d account(s) in %s", len(gate.store.users()), config.users_file)
    return auth


def _store(settings: Settings) -> UserStore:
    auth = settings.auth
    return UserStore(auth.users_file, env_admin_hash=auth.admin_password_hash,
                     env_admin_name=auth.admin_name)


# -- pages -------------------------------------------------------------------------------------
async def login_page(auth: Auth, redirect_to: str = "/") -> None:
    """Name and password; wrong ones are refused, repeated failures wait longer each time."""
    gate = auth.gate
    assert gate is not None
    client = context.client
    gate.login_clients.add(client.id)
    target = safe_next(redirect_to)
    if target.startswith(LOGIN_PATH):
        target = "/"
    if gate.check(page_session_id(), touch=False, stored=stored_record()) is not None:
        ui.navigate.to(target)
        return
    address = client.request.client.host if client.request.client else "unknown"
    LoginForm(gate, address, target)


class LoginForm:
    """The sign-in card; :meth:`attempt` checks one name and password."""

    def __init__(self, gate: Gate, address: str, target: str) -> None:
        self.gate, self.address, self.target = gate, address, target
        ui.query("body").classes("bg-slate-100")
        with ui.card().classes("absolute-center w-80 gap-3").mark("login-card"):
            with ui.row().classes("items-center gap-2"):
                ui.icon("shield", size="28px").classes("text-amber-500")
                ui.label("netids").classes("text-xl font-semibold")
            ui.label("Sign in to see this sensor.").classes("text-sm text-gray-600")
            self.user = ui.input("User name").props("autofocus autocomplete=username") \
                .classes("w-full").mark("login-user")
            self.password = ui.input("Password", password=True, password_toggle_button=True) \
                .props("autocomplete=current-password").classes("w-full").mark("login-password")
            self.message = ui.label("").classes("text-sm text-red-700").mark("login-message")
            self.button = ui.button("Sign in", on_click=self.attempt).classes("w-full") \
                .mark("login-submit")
            self.user.on("keydown.enter", lambda: self.password.run_method("focus"))
            self.password.on("keydown.enter", self.attempt)

    async def attempt(self) -> None:
        gate, name, address = self.gate, (self.user.value or "").strip(), self.address
        secret = self.password.value or ""
        self.password.set_value("")
        if not name or not secret:
            self.message.set_text("Enter your user name and password.")
            return
        admission = gate.throttle.begin(name, address)  # counted now, before any await
        if admission.busy:
            self.message.set_text("Too many sign-ins at once on this server. Try again in a "
                                  "few seconds.")
            return
        if not admission.granted:
            wait = wait_in_words(admission.wait)
            self.message.set_text(f"Too many failed sign-ins. Try again in {wait}.")
            return
        self.button.disable()
        try:
            account = await run.io_bound(gate.store.authenticate, name, secret)
        except CredentialsError as exc:
            log.error("cannot check the password: %s", exc)
            self.message.set_text(
                "Sign-in is not possible right now: the users file is unreadable.")
            return
        finally:
            self.button.enable()
        if account is None:
            wait = gate.throttle.retry_after(name, address)
            log.warning("failed sign-in for %r from %s", name, address)
            self.message.set_text("Wrong user name or password." + (
                f" Too many failed sign-ins: wait {wait_in_words(wait)} before the next try."
                if wait > 0 else ""))
            return
        gate.throttle.success(name, address)
        session_id = page_session_id()
        if not session_id:
            return
        # the session id this page was loaded with may be known to someone else (fixation):
        # the browser fetches a new one, over HTTP, with a one-time token only this page got
        token = gate.pending_login(session_id, gate.policy.new(account, gate.clock()),
                                   self.target)
        log.info("%s (%s) signed in from %s", account.name, account.role, address)
        ui.navigate.to(f"{LOGIN_FINISH_PATH}?token={token}")


def finish_login(gate: Gate, request: Request, token: str) -> RedirectResponse:
    """Second half of a sign-in: give the browser a new session id holding the new record,
    then send it on to the page it asked for; a token unknown, used, late or from another
    session leads back to the login page."""
    old_id = request.session.get("id")
    pending = gate.take_login(token, old_id)
    if pending is None:
        return RedirectResponse(LOGIN_PATH, status_code=303)
    gate.end(old_id)
    app.storage.user.pop(STORAGE_KEY, None)
    new_id = str(uuid.uuid4())
    request.session["id"] = new_id  # the session middleware sends the new cookie
    gate.records[new_id] = pending.record  # put in app.storage.user by the next request
    return RedirectResponse(safe_next(pending.target), status_code=303)


def signed_in_as(auth: Auth) -> None:
    """Header piece: who is signed in, and a sign-out button."""
    record = auth.session()
    if record is None:
        return
    ui.label(f"{record.user} · {record.role}").classes("text-sm opacity-80").mark("signed-in-as")
    ui.button(icon="logout", on_click=lambda: sign_out(auth)).props("flat round color=white") \
        .tooltip("sign out").mark("sign-out")


def sign_out(auth: Auth) -> None:
    """End the current session everywhere (all tabs) and show the login page."""
    if auth.gate is not None:
        record = auth.session()
        auth.gate.end(page_session_id())
        if record:
            log.info("%s signed out", record.user)
    app.storage.user.pop(STORAGE_KEY, None)
    ui.navigate.to(LOGIN_PATH)
