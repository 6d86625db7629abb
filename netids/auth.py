"""Credentials, login throttling and session expiry for LAN use: pure logic, no UI, no web.

Passwords are hashed with scrypt (random salt, constant-time compare) and stored in a JSON file
written atomically with mode 0600. Nothing here logs or returns a password. The web side
(``netids.ui.login``) keeps a :class:`SessionRecord` in ``app.storage.user`` and asks
:class:`SessionPolicy` whether it is still valid, and :class:`LoginThrottle` whether a login
attempt may be checked at all.

>>> encoded = hash_password("correct horse", n=2**10)
>>> verify_password("correct horse", encoded), verify_password("wrong", encoded)
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# viewer: read only; admin: also start/stop, filter, threshold, training, model activation
ROLES = ("viewer", "admin")
SCRYPT_N = 2**15  # CPU/memory cost: about 60 ms and 32 MiB per hash on a laptop core
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD_LENGTH = 8
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class CredentialsError(Exception):
    """A user-facing problem with names, roles, passwords or the users file (one line)."""


@dataclass(frozen=True, slots=True)
class User:
    """A configured account; ``password_hash`` is an encoded scrypt hash, never a password."""

    name: str
    role: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a logged-in browser session holds (in ``app.storage.user``): no secret in it."""

    user: str
    role: str
    login_at: float  # wall-clock seconds of the successful login
    seen_at: float  # wall-clock seconds of the last request or action

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> SessionRecord | None:
        """The record stored in a session, or None when there is none or it is malformed.

        >>> SessionRecord.from_dict({"user": "ann", "role": "admin", "login_at": 1, "seen_at": 2})
        SessionRecord(user='ann', role='admin', login_at=1.0, seen_at=2.0)
        >>> SessionRecord.from_dict({"user": "ann"}) is None
        True
        """
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["user"]), str(data["role"]), float(data["login_at"]),
                       float(data["seen_at"]))
        except (KeyError, TypeError, ValueError):
            return None


def is_loopback(host: str) -> bool:
    """Whether serving on ``host`` stays on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.5")]
    [True, True, True, False, False]
    """
    return host.strip().lower().strip("[]") in LOOPBACK_HOSTS


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """Encode ``password`` as ``scrypt$n$r$p$salt$hash`` (salt and hash in base64)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    return "$".join(["scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches an encoded hash; malformed hashes never match."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_new_password(password: str) -> str:
    """The password if acceptable for a new account, else :class:`CredentialsError`.

    >>> check_new_password("short")
    Traceback (most recent call last):
    ...
    netids.auth.CredentialsError: the password must have at least 8 characters
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CredentialsError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password != password.strip("\r\n"):
        raise CredentialsError("the password must not start or end with a line break")
    return password


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("scrypt parameters out of range")
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 2**20, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# a hash to verify against when the user name is unknown, so both paths cost the same time
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH  # noqa: PLW0603 - computed once, on first use rather than at import
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


# --- the users file --------------------------------------------------------------------------


class UserStore:
    """Accounts in a JSON file (``{"users": [{"name", "role", "password_hash"}]}``, mode 0600).

    ``env_admin_hash`` adds an admin account named ``env_admin_name`` from an encoded hash
    (for CI or headless setups; see ``app.py users hash``); it cannot be removed here.
    """

    def __init__(self, path: Path, *, env_admin_hash: str | None = None,
                 env_admin_name: str = "admin") -> None:
        self.path = path
        self._env_user = (User(env_admin_name, "admin", env_admin_hash)
                          if env_admin_hash else None)
        self._cache: tuple[tuple[int, int] | None, dict[str, User]] | None = None

    def users(self) -> dict[str, User]:
        """All accounts by name; the file is re-read when it changed on disk."""
        stamp = self._stamp()
        if self._cache is None or self._cache[0] != stamp:
            self._cache = (stamp, self._read())
        users = dict(self._cache[1])
        if self._env_user is not None:
            users.setdefault(self._env_user.name, self._env_user)
        return users

    def configured(self) -> bool:
        """Whether at least one account can log in."""
        return bool(self.users())

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when name and password match, else None (same work either way)."""
        user = self.get(name)
        ok = verify_password(password, user.password_hash if user else _dummy_hash())
        return user if ok and user is not None else None

    def add(self, name: str, role: str, password: str, *, replace: bool = False) -> User:
        """Create (or with ``replace`` update) an account; raises :class:`CredentialsError`."""
        if not NAME_PATTERN.fullmatch(name):
            raise CredentialsError(
                "a user name has 1-64 letters, digits or the characters _ . @ -")
        if role not in ROLES:
            raise CredentialsError(f"the role must be one of: {', '.join(ROLES)}")
        check_new_password(password)
        users = self._read()
        if name in users and not replace:
            raise CredentialsError(f"user {name!r} exists (use --replace to set a new password)")
        users[name] = User(name, role, hash_password(password))
        self._write(users)
        return users[name]

    def remove(self, name: str) -> bool:
        """Delete an account from the file; False when there was none."""
        users = self._read()
        if users.pop(name, None) is None:
            return False
        self._write(users)
        return True

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> dict[str, User]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"cannot read {self.path}: {exc}") from None
        try:
            rows = data["users"]
            return {str(u["name"]): User(str(u["name"]), str(u["role"]), str(u["password_hash"]))
                    for u in rows if u["role"] in ROLES}
        except (KeyError, TypeError) as exc:
            raise CredentialsError(f"{self.path} is not a netids users file ({exc})") from None

    def _write(self, users: dict[str, User]) -> None:
        rows = [asdict(u) for u in sorted(users.values(), key=lambda u: u.name)]
        write_private(self.path, json.dumps({"users": rows}, indent=1) + "\n")
        self._cache = None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename) with mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new folder: owner only
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_create_secret(path: Path) -> str:
    """The storage secret kept in ``path`` (0600), generated on first use."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
    if len(secret) < 32:
        secret = secrets.token_urlsafe(48)
        write_private(path, secret + "\n")
    return secret


# --- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """When a logged-in session ends.

    >>> policy = SessionPolicy(idle_seconds=60, max_seconds=3600)
    >>> rec = SessionRecord("ann", "admin", login_at=0.0, seen_at=0.0)
    >>> policy.expired(rec, now=59), policy.expired(rec, now=61)
    (False, True)
    >>> policy.expired(SessionRecord("ann", "admin", 0.0, 3599.0), now=3601)
    True
    """

    idle_seconds: float
    max_seconds: float

    def expired(self, record: SessionRecord, now: float) -> bool:
        if now < record.login_at - 60:  # the clock went back a lot: start again
            return True
        return now - record.seen_at > self.idle_seconds or now - record.login_at > self.max_seconds

    def new(self, user: User, now: float) -> SessionRecord:
        return SessionRecord(user.name, user.role, now, now)


# --- login throttling ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """:meth:`LoginThrottle.begin`'s answer: check now (``wait == 0``) or wait; ``busy``: the
    server-wide cap refused, not a back-off."""

    wait: float = 0.0
    busy: bool = False

    @property
    def granted(self) -> bool:
        return self.wait <= 0


class LoginThrottle:
    """Back-off of login attempts per (account, client address), with a looser one per address
    and a server-wide cap on password checks per second.

    :meth:`begin` decides and counts in one step before the password is checked (no ``await``
    between), so parallel attempts cannot all pass; each counts as a failure until
    :meth:`success`. After ``free_attempts`` failures of a pair, or ``address_factor`` times as
    many from one address, each attempt waits ``base_delay * 2**k`` s (at most ``max_delay``):
    an attacker's address locks out only itself. Memory is bounded by ``max_keys``.

    >>> now = [0.0]
    >>> t = LoginThrottle(free_attempts=2, base_delay=1, max_delay=8, clock=lambda: now[0])
    >>> [t.begin("ann", "10.0.0.9").wait for _ in range(5)]
    [0.0, 0.0, 0.0, 1.0, 1.0]
    >>> t.begin("ann", "10.0.0.7").granted, t.begin("bob", "10.0.0.9").granted
    (True, True)
    """

    def __init__(self, *, free_attempts: int = 3, base_delay: float = 1.0, max_delay: float = 300.0,
                 checks_per_second: float = 5.0, address_factor: int = 4, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.checks_per_second = checks_per_second
        self.address_factor = address_factor
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, until)
        self._tokens = checks_per_second  # server-wide budget of password checks (token bucket)
        self._filled_at = clock()

    def retry_after(self, user: str, address: str) -> float:
        """Seconds before an attempt for ``user`` from ``address`` may be checked; 0: now."""
        now = self._clock()
        until = max(self._keys.get(k, (0, 0.0))[1] for k in _keys(user, address))
        return max(0.0, until - now)

    def begin(self, user: str, address: str) -> Admission:
        """Admit one attempt and count it as a failure at once, or refuse it uncounted."""
        wait = self.retry_after(user, address)
        if wait > 0:
            return Admission(wait)
        now = self._clock()
        self._tokens = min(self.checks_per_second,
                           self._tokens + (now - self._filled_at) * self.checks_per_second)
        self._filled_at = now
        if self._tokens < 1:
            return Admission((1 - self._tokens) / self.checks_per_second, busy=True)
        self._tokens -= 1
        frees = (self.free_attempts, self.free_attempts * self.address_factor)
        for key, free in zip(_keys(user, address), frees, strict=True):
            count, until = self._keys.pop(key, (0, 0.0))
            if count and until + self.max_delay * 2 < now:  # long quiet: forgive old failures
                count = 0
            count += 1
            excess = count - free
            delay = min(self.max_delay, self.base_delay * 2 ** (excess - 1)) if excess > 0 else 0.0
            self._keys[key] = (count, now + delay)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return Admission()

    def success(self, user: str, address: str) -> None:
        """The admitted attempt was right: the pair starts afresh, the address takes it back."""
        pair, addr = _keys(user, address)
        self._keys.pop(pair, None)
        count, until = self._keys.get(addr, (0, 0.0))
        if count > 1:
            self._keys[addr] = (count - 1, until)
        else:
            self._keys.pop(addr, None)


def _keys(user: str, address: str) -> tuple[str, str]:
    return (f"pair:{user.lower()}\0{address}", f"addr:{address}")


def wait_in_words(seconds: float) -> str:
    """Seconds as a short phrase for a message.

    >>> wait_in_words(1), wait_in_words(40.2), wait_in_words(300)
    ('1 second', '41 seconds', '5 minutes')
    """
    s = max(1, int(-(-seconds // 1)))
    if s < 120:
        return f"{s} second{'s' if s != 1 else ''}"
    return f"{-(-s // 60)} minutes"
