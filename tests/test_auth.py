"""Credentials, back-off and session expiry (netids.auth, the gate of netids.ui.gate) and the
``users`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from netids.auth import (
    CredentialsError,
    LoginThrottle,
    SessionPolicy,
    SessionRecord,
    User,
    UserStore,
    hash_password,
    is_loopback,
    load_or_create_secret,
    verify_password,
    write_private,
)
from netids.config import PROJECT_ROOT, AuthSettings, Settings, load_settings
from netids.ui.gate import Auth, Gate
from netids.ui.login import LanConfigError, auth_required, check_credentials
from tests.support import clean_env

FAST = {"n": 2**10}  # tests hash with a cheap cost; the app uses SCRYPT_N


# -- passwords -------------------------------------------------------------------------------
def test_hash_is_salted_scrypt_and_verifies_only_the_password() -> None:
    first, second = hash_password("päss wörd 1", **FAST), hash_password("päss wörd 1", **FAST)
    assert first.startswith("scrypt$1024$8$1$") and first != second  # random salt
    assert "päss" not in first
    assert verify_password("päss wörd 1", first) and verify_password("päss wörd 1", second)
    assert not verify_password("päss wörd 2", first)
    assert not verify_password("", first)


@pytest.mark.parametrize("encoded", ["", "scrypt", "bcrypt$1$2$3$c2FsdA==$aGFzaA==",
                                     "scrypt$1024$8$1$not-base64!$aGFzaA==",
                                     "scrypt$1000$8$1$c2FsdA==$aGFzaA==",  # n not a power of 2
                                     "scrypt$4194304$8$1$c2FsdA==$aGFzaA==",  # n too large
                                     "scrypt$x$8$1$c2FsdA==$aGFzaA=="])
def test_malformed_hashes_never_match(encoded: str) -> None:
    assert verify_password("anything", encoded) is False


def test_default_cost_is_scrypt_2_15() -> None:
    assert hash_password("a-long-password").startswith("scrypt$32768$8$1$")


# -- the users file -------------------------------------------------------------------------
def test_users_file_is_private_atomic_and_holds_no_password(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "db" / "users.json")
    assert not store.configured()
    store.add("ann", "admin", "correct-horse-9")
    store.add("bob", "viewer", "battery-staple-7")
    path = tmp_path / "db" / "users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["users.json"]  # no temp file left
    text = path.read_text()
    assert "correct-horse" not in text and "battery-staple" not in text
    rows = json.loads(text)["users"]
    assert [(r["name"], r["role"]) for r in rows] == [("ann", "admin"), ("bob", "viewer")]
    assert store.authenticate("ann", "correct-horse-9") == store.get("ann")
    assert store.authenticate("ann", "battery-staple-7") is None
    assert store.authenticate("nobody", "correct-horse-9") is None


def test_users_file_changes_are_seen_by_a_running_store(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    running, cli = UserStore(path), UserStore(path)
    cli.add("ann", "admin", "correct-horse-9")
    assert running.get("ann").role == "admin"
    cli.add("ann", "viewer", "correct-horse-9", replace=True)
    assert running.get("ann").role == "viewer"
    assert cli.remove("ann") and not cli.remove("ann")
    assert running.get("ann") is None


@pytest.mark.parametrize(("name", "role", "password", "problem"), [
    ("ann", "root", "long-enough", "role must be one of: viewer, admin"),
    ("a b", "admin", "long-enough", "user name"),
    ("", "admin", "long-enough", "user name"),
    ("ann", "admin", "short", "at least 8 characters"),
])
def test_bad_accounts_are_refused_in_words(tmp_path: Path, name: str, role: str,
                                           password: str, problem: str) -> None:
    with pytest.raises(CredentialsError, match=problem):
        UserStore(tmp_path / "users.json").add(name, role, password)
    assert not (tmp_path / "users.json").exists()


def test_existing_account_needs_replace(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("ann", "admin", "correct-horse-9")
    with pytest.raises(CredentialsError, match="--replace"):
        store.add("ann", "viewer", "other-password")
    assert store.authenticate("ann", "correct-horse-9") is not None


def test_unreadable_users_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(CredentialsError, match="cannot read"):
        UserStore(path).users()
    path.write_text('{"people": []}')
    with pytest.raises(CredentialsError, match="not a netids users file"):
        UserStore(path).users()


def test_admin_from_environment_hash(tmp_path: Path) -> None:
    encoded = hash_password("ci-password-1", **FAST)
    store = UserStore(tmp_path / "users.json", env_admin_hash=encoded, env_admin_name="ci")
    assert store.configured()
    assert store.authenticate("ci", "ci-password-1") == User("ci", "admin", encoded)
    assert store.authenticate("ci", "wrong-password") is None
    settings = load_settings({"NETIDS_ADMIN_PASSWORD_HASH": encoded, "NETIDS_ADMIN_USER": "ci",
                              "NETIDS_USERS_FILE": str(tmp_path / "users.json")})
    check_credentials("0.0.0.0", settings)  # an account exists: no error


def test_write_private_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


def test_storage_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "storage_secret"
    secret = load_or_create_secret(path)
    assert len(secret) >= 32 and load_or_create_secret(path) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- who needs a login -------------------------------------------------------------------------
def test_login_required_beyond_loopback_or_when_forced(tmp_path: Path) -> None:
    settings = Settings(auth=AuthSettings(users_file=tmp_path / "users.json"))
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]")] == [True] * 4
    assert not auth_required("127.0.0.1", settings)
    assert auth_required("0.0.0.0", settings) and auth_required("192.168.1.20", settings)
    forced = Settings(auth=AuthSettings(users_file=tmp_path / "users.json", require_login=True))
    assert auth_required("127.0.0.1", forced)
    check_credentials("127.0.0.1", settings)  # loopback: nothing needed
    with pytest.raises(LanConfigError, match="python app.py users add NAME --role admin"):
        check_credentials("0.0.0.0", settings)
    with pytest.raises(LanConfigError, match="--require-login"):
        check_credentials("127.0.0.1", forced)


# -- sessions ---------------------------------------------------------------------------------
def test_session_policy_idle_and_absolute_limits() -> None:
    policy = SessionPolicy(idle_seconds=600, max_seconds=3600)
    record = SessionRecord("ann", "admin", login_at=1000.0, seen_at=1000.0)
    assert not policy.expired(record, 1599)
    assert policy.expired(record, 1601)  # idle
    active = SessionRecord("ann", "admin", login_at=1000.0, seen_at=4500.0)
    assert not policy.expired(active, 4599)
    assert policy.expired(active, 4601)  # absolute, however active
    assert policy.expired(record, 800)  # the clock went back by minutes


def test_gate_extends_on_activity_and_ends_sessions(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("ann", "admin", "correct-horse-9")
    now = [10_000.0]
    gate = Gate(store, SessionPolicy(60, 300), LoginThrottle(), clock=lambda: now[0])
    gate.records["s1"] = gate.policy.new(store.get("ann"), now[0])
    now[0] += 50
    assert gate.check("s1", touch=True) is not None  # activity at +50
    now[0] += 50
    assert gate.check("s1", touch=False).role == "admin"  # +100: 50 s since the last activity
    now[0] += 20
    assert gate.check("s1", touch=False) is None  # idle 70 s: ended, and forgotten
    assert "s1" not in gate.records
    # a record from app.storage.user (after a restart) is taken when still valid
    stored = SessionRecord("ann", "admin", now[0] - 10, now[0] - 10).to_dict()
    assert gate.check("s2", touch=False, stored=stored) is not None
    # role changes and removals apply at once
    store.add("ann", "viewer", "correct-horse-9", replace=True)
    assert gate.check("s2", touch=False).role == "viewer"
    store.remove("ann")
    assert gate.check("s2", touch=False) is None
    assert gate.check(None, touch=False) is None
    assert gate.check("s3", touch=False, stored={"user": "x"}) is None


def test_each_app_has_its_own_auth(tmp_path: Path) -> None:
    """The gate's sessions and header pieces belong to one app's Auth, not to the module."""
    store = UserStore(tmp_path / "users.json")
    store.add("ann", "admin", "correct-horse-9")
    loopback = Auth()
    lan = Auth(Gate(store, SessionPolicy(60, 300), LoginThrottle()))
    other = Auth(Gate(store, SessionPolicy(60, 300), LoginThrottle()))
    assert loopback.role() == "admin"  # no gate: everybody is admin
    assert lan.role() is None  # a gate and no signed-in page: nobody
    lan.gate.records["s1"] = lan.gate.policy.new(store.get("ann"), lan.gate.clock())
    lan.header_extras.append(lambda: None)
    assert other.gate.check("s1", touch=False) is None and not other.header_extras


# -- back-off ----------------------------------------------------------------------------------
UNCAPPED = 1e9  # checks per second: these tests are about the back-off, not the global cap


def fail(throttle: LoginThrottle, user: str, address: str) -> float:
    """One admitted attempt that turns out wrong; the wait it imposes on the next."""
    assert throttle.begin(user, address).granted
    return throttle.retry_after(user, address)


def test_backoff_doubles_per_failure_and_is_capped() -> None:
    now = [0.0]
    throttle = LoginThrottle(free_attempts=3, base_delay=2, max_delay=30,
                             checks_per_second=UNCAPPED, clock=lambda: now[0])
    waits = []
    for _ in range(8):
        now[0] += waits[-1] if waits else 0  # each try waits its turn
        waits.append(fail(throttle, "ann", "10.0.0.9"))
    assert waits == [0, 0, 0, 2, 4, 8, 16, 30]
    now[0] += 29.5
    assert throttle.retry_after("ann", "10.0.0.9") == pytest.approx(0.5)
    now[0] += 0.5
    assert throttle.retry_after("ann", "10.0.0.9") == 0


def test_an_attempt_is_counted_when_admitted_so_parallel_ones_cannot_all_pass() -> None:
    throttle = LoginThrottle(free_attempts=3, base_delay=2, checks_per_second=UNCAPPED,
                             clock=lambda: 0.0)
    # 50 attempts begun before any password check has finished (no success or failure yet)
    admitted = [throttle.begin("ann", "10.0.0.66").granted for _ in range(50)]
    assert admitted.count(True) == 4  # 3 free, the 4th starts the back-off
    assert throttle.begin("ann", "10.0.0.66").wait == 2  # refusals do not lengthen it


def test_an_attackers_address_does_not_lock_the_owner_out() -> None:
    throttle = LoginThrottle(free_attempts=3, base_delay=2, checks_per_second=UNCAPPED,
                             clock=lambda: 0.0)
    for _ in range(20):
        throttle.begin("ann", "10.0.0.66")
    assert not throttle.begin("ann", "10.0.0.66").granted
    assert throttle.begin("ann", "10.0.0.9").granted  # ann, from her own machine


def test_backoff_per_address_covers_guessing_many_names() -> None:
    throttle = LoginThrottle(free_attempts=3, base_delay=2, address_factor=4,
                             checks_per_second=UNCAPPED, clock=lambda: 0.0)
    for i in range(13):  # 4 times the free attempts of one name, spread over many names
        assert fail(throttle, f"user{i}", "10.0.0.66") == (2 if i == 12 else 0)
    assert throttle.retry_after("eve", "10.0.0.66") == 2  # a fresh name, the same address
    assert throttle.retry_after("eve", "10.0.0.7") == 0  # another machine is not affected


def test_success_clears_the_pair_and_is_not_counted_for_the_address() -> None:
    throttle = LoginThrottle(free_attempts=1, base_delay=2, address_factor=2,
                             checks_per_second=UNCAPPED, clock=lambda: 0.0)
    assert fail(throttle, "ann", "10.0.0.9") == 0
    throttle.begin("ann", "10.0.0.8")
    throttle.success("ann", "10.0.0.8")  # right password elsewhere: nothing counted there
    assert throttle.retry_after("ann", "10.0.0.8") == 0
    assert throttle.begin("ann", "10.0.0.9").granted  # the second attempt of the pair
    throttle.success("ann", "10.0.0.9")  # right: the pair starts afresh
    assert fail(throttle, "ann", "10.0.0.9") == 0
    assert fail(throttle, "bob", "10.0.0.9") == 2  # the address: 2 failures of 2 free, then 3


def test_password_checks_are_capped_server_wide() -> None:
    now = [0.0]
    throttle = LoginThrottle(free_attempts=100, checks_per_second=5, clock=lambda: now[0])
    answers = [throttle.begin(f"user{i}", f"10.2.0.{i}") for i in range(20)]  # 20 addresses
    assert [a.granted for a in answers].count(True) == 5
    assert all(a.busy and 0 < a.wait <= 1 for a in answers[5:])
    now[0] = 1.0  # a second later: five more
    assert [throttle.begin(f"user{i}", f"10.3.0.{i}").granted for i in range(6)].count(True) == 5


def test_backoff_forgets_after_a_long_quiet_and_stays_bounded() -> None:
    now = [0.0]
    throttle = LoginThrottle(free_attempts=1, base_delay=1, max_delay=10, max_keys=100,
                             checks_per_second=UNCAPPED, clock=lambda: now[0])
    for _ in range(5):
        throttle.begin("ann", "10.0.0.9")
        now[0] += 10
    now[0] = 1000
    assert fail(throttle, "ann", "10.0.0.9") == 0  # counted from scratch
    for i in range(500):
        throttle.begin(f"user{i}", f"10.1.{i // 256}.{i % 256}")
    assert len(throttle._keys) <= 100


# -- the users command, as a user runs it --------------------------------------------------------
def _users(tmp_path: Path, *args: str, stdin: str | None = None,
           **env: str) -> subprocess.Popen[str]:
    """Start ``python app.py users ARGS`` (several run at once: each start imports torch)."""
    proc = subprocess.Popen([sys.executable, "app.py", "users", *args], cwd=PROJECT_ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            env=clean_env(NETIDS_USERS_FILE=str(tmp_path / "users.json"), **env))
    proc.stdin.write(stdin or "")
    proc.stdin.close()
    return proc


def _done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.stdout.read(), proc.stderr.read()
    return proc.wait(120), out, err


@pytest.mark.slow
def test_users_command_add_list_remove_hash(tmp_path: Path) -> None:
    added = _users(tmp_path, "add", "ann", "--role", "admin", "--password-stdin",
                   stdin="correct-horse-9\n")
    no_tty = _users(tmp_path, "add", "carl", "--role", "viewer")  # stdin is not a terminal
    argv = _users(tmp_path, "add", "carl", "--role", "viewer", "--password", "x")
    hashed = _users(tmp_path, "hash", "--password-stdin", stdin="ci-password-1\n")
    code, out, err = _done(added)
    assert code == 0, err
    assert "correct-horse" not in out + err
    store = UserStore(tmp_path / "users.json")
    assert store.authenticate("ann", "correct-horse-9").role == "admin"
    code, _, err = _done(no_tty)  # refused: never read from the command line or an echo
    assert code == 2 and err == "error: no terminal to prompt for the password: " \
        "use --password-stdin\n"
    code, _, err = _done(argv)
    assert code == 2 and "passwords are not taken on the command line" in err
    assert store.get("carl") is None
    code, encoded, _ = _done(hashed)
    assert code == 0 and verify_password("ci-password-1", encoded.strip())

    store.add("bob", "viewer", "battery-staple-7")
    listed = _users(tmp_path, "list", NETIDS_ADMIN_PASSWORD_HASH=encoded.strip())
    removed = _users(tmp_path, "remove", "bob")
    assert _done(removed)[0] == 0 and store.get("bob") is None
    code, out, _ = _done(listed)
    assert "ann\tadmin" in out.splitlines()
    assert "admin\tadmin  (NETIDS_ADMIN_PASSWORD_HASH)" in out.splitlines()
