"""Brute force: many short login-like sessions from one source to one server's login service.

Anchors: Zeek's ``policy/protocols/ssh/detect-bruteforcing.zeek`` (30 failed logins in 30 min,
``password_guesses_limit`` and ``guessing_timeout``), ``policy/protocols/ftp/
detect-bruteforcing.zeek`` (20 rejected logins in 15 min), and StratosphereLinuxIPS'
``brute_force_detector`` (9 SSH attempts from one source to one destination and port count as
guessing; Slips' ``ssh_succesful_detection_threshold``, 4,290 bytes, calls a session a
successful login).

Zeek knows a login failed from the protocol: the FTP reply code (530), or, on encrypted SSH,
the sizes of the server's packets after the key exchange (``SSH_Analyzer::ProcessEncrypted``:
a USERAUTH_FAILURE repeats one size, a success is 16 bytes shorter than SERVICE_ACCEPT).
netids' connection records carry no payload and only the sizes of each side's first few
payload packets (4 by default, all spent on the SSH banners and key exchange, or on FTP's
banner and first replies, where 530 and 230 differ by a byte), so it infers from sizes and
counts instead: a *login attempt* is a TCP session to a login service that the server
answered with data and that ended within ``max_seconds`` having moved under the service's
byte limit (``max_bytes``). One source making ``min_attempts`` of those to one server and
service in ``window``, most of them alike in size (``alike_share`` of them within 25 % of the
median server bytes: a tool repeating one exchange, not a person working), is guessing. A
later session on the same key that is not an attempt (longer or bigger: a shell, a mailbox,
a desktop) after guessing is a login that worked: its own, higher-severity alert.

Where a fixed number misfires (an ansible host opening 40 SSH sessions an hour, a web client
polling a server), :meth:`BruteForceDetector.learn` takes the most attempts any key made in a
window of benign traffic, per service, and asks for ``learned_factor`` times that.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median

from netids.detect.behaviour_base import BehaviourAlert, BoundedMap, size_text, span_text
from netids.detect.conn_records import ConnRecord

# services a password is guessed at (netids' service guess is by port: conn_records.SERVICES)
LOGIN_SERVICES = {
    "ssh": "SSH", "ftp": "FTP", "telnet": "Telnet", "rdp": "RDP", "smb": "SMB", "vnc": "VNC",
    "mysql": "MySQL", "mssql": "MSSQL", "postgresql": "PostgreSQL", "smtp": "SMTP auth",
    "imap": "IMAP", "pop3": "POP3", "http": "HTTP auth", "ssl": "HTTPS auth",
}
VNC_PORTS = range(5900, 5907)  # VNC displays :0 to :6


@dataclass(frozen=True, slots=True)
class BruteConfig:
    """Thresholds of the brute-force detector (see the module docstring for their sources)."""

    window: float = 1800.0  # attempts counted over this long: Zeek's guessing_timeout
    min_attempts: int = 10  # per (source, server, service) in window: over Slips' 9
    max_seconds: float = 30.0  # a login attempt ends within this long
    max_bytes: int = 8000  # ... having moved under this many payload bytes both ways
    max_bytes_by_service: tuple[tuple[str, int], ...] = (("rdp", 24000), ("ssl", 16000))
    min_by_service: tuple[tuple[str, int], ...] = (("http", 100), ("ssl", 100))
    # counted only once this network's normal is learned: without a status code (payload),
    # failed HTTP logins look like a client polling a server (the lab's clients make 66
    # short, alike HTTP sessions a minute)
    learned_only: tuple[str, ...] = ("http", "ssl")
    alike_share: float = 0.6  # share of attempts within 25 % of the median server bytes
    learned_factor: float = 2.0  # a learned key may make this many times its normal
    max_keys: int = 16384  # (source, server, service) keys held (least recently used go)
    attempts_kept: int = 256  # attempts held per key (a window's count stops there)
    uids_kept: int = 32  # connection uids an alert carries

    def __post_init__(self) -> None:
        assert self.min_attempts >= 2 and self.attempts_kept >= self.min_attempts
        assert 0.0 < self.alike_share <= 1.0

    def byte_limit(self, service: str) -> int:
        return dict(self.max_bytes_by_service).get(service, self.max_bytes)

    def min_for(self, service: str) -> int:
        return dict(self.min_by_service).get(service, self.min_attempts)


def login_service(r: ConnRecord) -> str | None:
    """The login service a TCP record went to, or None.

    >>> from netids.detect.behaviour_base import record
    >>> login_service(record(service="ssh")), login_service(record(resp_p=5901))
    ('ssh', 'vnc')
    >>> login_service(record(service="smtp", resp_p=25))  # mail relay, not a login
    """
    if r.proto != "tcp" or (r.service == "smtp" and r.resp_p == 25):
        return None
    if r.service in LOGIN_SERVICES:
        return r.service
    return "vnc" if r.resp_p in VNC_PORTS else None


def answered(r: ConnRecord) -> bool:
    """The server took part: data both ways (a session, not a scan's probe)."""
    return bool(r.orig_bytes) and bool(r.resp_bytes)


@dataclass(slots=True)
class _Attempt:
    ts: float
    uid: str
    resp_bytes: int
    total: int
    duration: float


@dataclass(slots=True)
class _Key:
    attempts: deque[_Attempt] = field(default_factory=deque)
    alerted: int = 0  # attempts its last guessing alert reported
    guessed: bool = False  # it passed the threshold in this window
    succeeded: bool = False


class BruteForceDetector:
    """Password guessing per (source, server, service), and a login after it.

    >>> from netids.detect.behaviour_base import record
    >>> d = BruteForceDetector()
    >>> tries = [record(ts=10.0 * i, uid=f"C{i}", service="ssh", conn_state="SF", duration=2.0,
    ...                 orig_bytes=2581, resp_bytes=2336) for i in range(12)]
    >>> [a.kind for r in tries for a in d.observe(r)[0]]
    ['brute_force']
    >>> shell = record(ts=130.0, service="ssh", conn_state="SF", duration=300.0,
    ...                orig_bytes=9000, resp_bytes=90000)
    >>> [(a.kind, a.severity) for a in d.observe(shell)[0]]
    [('login_after_guessing', 'critical')]
    """

    def __init__(self, config: BruteConfig | None = None) -> None:
        self.config = c = config or BruteConfig()
        self.keys: BoundedMap[tuple[str, str, str], _Key] = BoundedMap(c.max_keys, _Key)
        self.normal: dict[str, int] = {}  # learned: most attempts of any key in a window
        self.learned = False

    def learn(self, records: list[ConnRecord]) -> None:
        """Take each service's normal from benign traffic (no alerts come out)."""
        quiet = BruteForceDetector(self.config)
        quiet.learned = True  # count every service, learned-only ones too
        for r in sorted(records, key=lambda r: r.ts):
            if quiet.score(r) > 0.0:
                service = login_service(r)
                key = quiet.keys.peek((r.orig_h, r.resp_h, service))  # type: ignore[arg-type]
                if key is not None and service is not None:
                    self.normal[service] = max(self.normal.get(service, 0), len(key.attempts))
        self.learned = True

    def threshold(self, service: str) -> int:
        """Attempts in a window that make guessing: the service's configured minimum, or
        more than ``learned_factor`` times the most this network made in a window."""
        learned = int(self.normal.get(service, 0) * self.config.learned_factor)
        return max(self.config.min_for(service), learned + 1 if learned else 0)

    def score(self, r: ConnRecord) -> float:
        """Count one record; its key's attempts in the window as a share of the threshold
        (1.0: guessing), or 0.0 if it is no login attempt."""
        service = login_service(r)
        if service is None or r.in_progress or not answered(r) or not self._short(r, service):
            return 0.0
        if service in self.config.learned_only and not self.learned:
            return 0.0
        key = self.keys.get((r.orig_h, r.resp_h, service))
        attempts = key.attempts
        while attempts and attempts[0].ts < r.ts - self.config.window:
            attempts.popleft()
        if not attempts:
            key.alerted, key.guessed, key.succeeded = 0, False, False
        if len(attempts) >= self.config.attempts_kept:
            attempts.popleft()
        total = (r.orig_bytes or 0) + (r.resp_bytes or 0)
        attempts.append(_Attempt(r.ts, r.uid, r.resp_bytes or 0, total, r.duration or 0.0))
        return len(attempts) / self.threshold(service)

    def observe(self, r: ConnRecord) -> tuple[list[BehaviourAlert], float]:
        """Count one record: the alerts it completes (before suppression), and its score.
        An in-progress snapshot is not counted, but a long session on a guessed key is a
        login within a minute of its start, not when it ends hours later."""
        if r.in_progress:
            return self._check_success(r), 0.0
        score = self.score(r)
        return (self._check_guessing(r) if score > 0.0 else self._check_success(r)), score

    def _short(self, r: ConnRecord, service: str) -> bool:
        total = (r.orig_bytes or 0) + (r.resp_bytes or 0)
        return (r.duration or 0.0) <= self.config.max_seconds and (
            total <= self.config.byte_limit(service))

    def _check_guessing(self, r: ConnRecord) -> list[BehaviourAlert]:
        service = login_service(r)
        assert service is not None
        key = self.keys.get((r.orig_h, r.resp_h, service))
        attempts, limit = list(key.attempts), self.threshold(service)
        alike = _alike(attempts)
        if len(attempts) < limit or alike < self.config.alike_share * len(attempts):
            return []
        if len(attempts) < 2 * key.alerted:
            return []
        key.alerted, key.guessed = len(attempts), True
        severity = "high" if len(attempts) >= 3 * limit else "medium"
        first, last = attempts[0].ts, attempts[-1].ts
        name = LOGIN_SERVICES[service]
        seconds = math.ceil(max(a.duration for a in attempts))
        kb = math.ceil(max(a.total for a in attempts) / 1000)
        why = (f"{len(attempts)} {name} sessions from {r.orig_h} to {r.resp_h}:{r.resp_p} in "
               f"{span_text(last - first)}, each at most {seconds} s and {kb} kB, {alike} of them "
               f"alike in "
               f"size: password guessing; {self._normal_text(service)}")
        uids = tuple(a.uid for a in attempts[: self.config.uids_kept])
        return [BehaviourAlert("brute_force", severity, r.orig_h, (f"{r.resp_h}:{r.resp_p}",),
                               service, first, last, len(attempts), uids, why,
                               f"brute_force:{r.orig_h}:{r.resp_h}:{service}")]

    def _check_success(self, r: ConnRecord) -> list[BehaviourAlert]:
        """A session on a guessed key that is not one more attempt: the guess worked."""
        service = login_service(r)
        if service is None or not answered(r) or (r.in_progress and self._short(r, service)):
            return []
        key = self.keys.peek((r.orig_h, r.resp_h, service))
        if key is None or not key.guessed or key.succeeded:
            return []
        attempts = list(key.attempts)
        if not attempts or r.ts - attempts[-1].ts > self.config.window:
            return []
        key.succeeded = True
        typical = median(a.total for a in attempts)
        total = (r.orig_bytes or 0) + (r.resp_bytes or 0)
        why = (f"{LOGIN_SERVICES[service]} session from {r.orig_h} to {r.resp_h}:{r.resp_p} "
               f"lasting {span_text(r.duration or 0.0)} with {size_text(total)}, after "
               f"{len(attempts)} short attempts of about {size_text(typical)} in "
               f"{span_text(attempts[-1].ts - attempts[0].ts)}: a login after password "
               f"guessing, likely a guessed password")
        uids = tuple(a.uid for a in attempts[: self.config.uids_kept - 1]) + (r.uid,)
        return [BehaviourAlert("login_after_guessing", "critical", r.orig_h,
                               (f"{r.resp_h}:{r.resp_p}",), service, attempts[0].ts, r.ts,
                               len(attempts), uids, why,
                               f"login_after_guessing:{r.orig_h}:{r.resp_h}:{service}")]

    def _normal_text(self, service: str) -> str:
        if not self.learned:
            return "no normal learned for this network"
        normal = self.normal.get(service, 0)
        return f"normal here is 0-{normal} in {span_text(self.config.window)}"


def _alike(attempts: list[_Attempt]) -> int:
    """How many attempts moved server bytes within 25 % of the median: a tool repeats one
    exchange, so its sessions are alike; a person's sessions vary.

    >>> _alike([_Attempt(0, "", b, 0, 0) for b in (100, 110, 95, 900)])
    3
    """
    mid = median(a.resp_bytes for a in attempts)
    return sum(abs(a.resp_bytes - mid) <= 0.25 * mid for a in attempts)
