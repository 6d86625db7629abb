"""One typed settings object, read once at start-up and passed down.

No other module reads ``os.environ`` or hard-codes paths and limits; they take a
:class:`Settings` (or the part of it they need).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
# A checkout keeps the shipped model and the migrations in models/ and db/ beside the package,
# and its data (database, accounts, trained models) there too. `pip install .` carries the
# first two inside the package (pyproject.toml) and keeps data in the user's data folder.
CHECKOUT = (PROJECT_ROOT / "db" / "migrations").is_dir()
MIGRATIONS = PROJECT_ROOT / "db" / "migrations" if CHECKOUT else PACKAGE_DIR / "migrations"
DEFAULT_MODEL = (PROJECT_ROOT / "models" if CHECKOUT else PACKAGE_DIR / "shipped_models") \
    / "default.pt"
DATA_DIR = PROJECT_ROOT if CHECKOUT else Path(
    os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "netids"
DEFAULT_DB_URL = f"sqlite:///{DATA_DIR / 'db' / 'netids.sqlite'}"


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """Limits of the capture stage."""

    batch_size: int = 4096  # frames handed to the pipeline at most per batch
    batch_timeout: float = 0.1  # seconds a partial batch may wait before it is handed over
    queue_batches: int = 64  # bounded queue between capture thread and pipeline, in batches
    rcvbuf_bytes: int = 32 * 1024 * 1024  # kernel receive buffer of the AF_PACKET socket
    snaplen: int = 65535  # bytes kept of each live frame
    shed_load: bool = True  # overloaded: score a sample, count all (False: whole batches drop)
    shed_backlog: int = 6  # batches waiting in the queue from which the scored share halves
    min_scored_share: float = 1 / 256  # the scored share never goes below this
    merge_batches: int = 16  # batches waiting in the queue taken and scored as one, at most


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Limits of the event store (netids.store.writer)."""

    flush_interval: float = 0.25  # seconds between writes at most: SIGKILL loses no more than this
    batch_rows: int = 5000  # rows per executemany inside one transaction
    max_pending: int = 100_000  # events held in memory while the database is locked or away
    retry_min: float = 0.1  # seconds before the first retry of a failed write; doubles each time
    retry_max: float = 5.0  # longest wait between retries
    close_timeout: float = 10.0  # seconds close() keeps retrying before it gives up and logs loss
    busy_timeout_ms: int = 2000  # SQLite waits this long for another writer's lock
    retention_days: float | None = 90.0  # events stored longer ago are deleted; None keeps all
    retention_rows: int | None = 1_000_000  # events stored last kept at most; None: no limit
    retention_interval: float = 300.0  # seconds between retention runs of the writer
    max_pending_connections: int = 200_000  # connection records held while the database is away
    conn_retention_days: float | None = 7.0  # --conn-retention-days; None keeps them all


@dataclass(frozen=True, slots=True)
class EveSettings:
    """``--eve FILE``: stored events as Suricata-EVE-like JSON lines (netids.store.eve)."""

    path: Path | None = None  # None: no EVE file
    max_bytes: int = 100 * 1024 * 1024  # the file is rotated (FILE.1, FILE.2, ...) past this
    keep: int = 5  # rotated files kept beside the current one


@dataclass(frozen=True, slots=True)
class LearnSettings:
    """Learning the network in place on the first live capture (netids.training.in_place)."""

    enabled: bool = True  # --no-learn: never; the shipped model alerts on every kind at once
    seconds: float = 600.0  # --learn-minutes: live capture to learn from before training
    epochs: int | None = None  # --learn-epochs: at most; None: the trainer's default
    shipped: Path = DEFAULT_MODEL  # the model that is not trained on this network


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Credentials and sessions for serving beyond loopback (netids.auth, netids.ui.login)."""

    users_file: Path = DATA_DIR / "db" / "users.json"  # hashed credentials, mode 0600
    secret_file: Path = DATA_DIR / "db" / "storage_secret"  # signs session cookies, 0600
    admin_password_hash: str | None = None  # NETIDS_ADMIN_PASSWORD_HASH: an extra admin account
    admin_name: str = "admin"  # NETIDS_ADMIN_USER: that account's name
    require_login: bool = False  # NETIDS_REQUIRE_LOGIN=1 / --require-login: login even on loopback
    session_idle_seconds: float = 3600.0  # a session ends after this long without a request
    session_max_seconds: float = 12 * 3600.0  # and this long after its login, whatever happens
    login_free_attempts: int = 3  # failed logins per user name / address before back-off starts
    login_base_delay: float = 2.0  # seconds of the first back-off; doubles with every failure
    login_max_delay: float = 300.0  # longest back-off
    login_checks_per_second: float = 5.0  # password checks server-wide (scrypt: ~60 ms each)


@dataclass(frozen=True, slots=True)
class FileSettings:
    """What the UI may read: capture files by path, and uploads (netids.ui.capture_form)."""

    captures_dir: Path = DATA_DIR / "captures"  # the path field reads files only from here
    uploads_dir: Path = DATA_DIR / "db" / "uploads"  # uploads wait here for analysis, 0700
    upload_limit: int = 1024**3  # bytes an upload may have, enforced while it streams in


SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """Bytes from ``1073741824``, ``512M``, ``1G``, ``1.5GiB`` ...; ValueError in words.

    >>> parse_size("1G"), parse_size("512m"), parse_size("2048"), parse_size("1.5 GiB")
    (1073741824, 536870912, 2048, 1610612736)
    >>> parse_size("lots")
    Traceback (most recent call last):
    ...
    ValueError: 'lots' is not a size: give bytes, or a number with K, M, G or T (e.g. 1G)
    """
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B").replace(" ", "")
    number, unit = cleaned.rstrip("KMGT"), cleaned[len(cleaned.rstrip("KMGT")):]
    try:
        value = float(number) * SIZE_UNITS[unit]
    except (ValueError, KeyError):
        value = -1.0
    if not 0 < value < 2**63:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T "
                         "(e.g. 1G)")
    return int(value)


def _score_workers() -> int:
    """Processes judging batches for ``score`` beside the main one: one per core but the one
    the main process uses (it reads and featurises, and judges too whenever they are busy)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, (cores or 1) - 1)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the defaults a first run uses."""

    db_url: str = DEFAULT_DB_URL
    model_path: Path = DEFAULT_MODEL
    models_dir: Path = DATA_DIR / "models"
    host: str = "127.0.0.1"
    port: int = 8080
    sensor: str = "local"
    threshold: float | None = None  # None: the threshold stored in the model checkpoint
    adapt_threshold: bool = True  # the calibration follows clean traffic (detect/adaptive.py)
    torch_threads: int = 1  # leave the other core to capture and the UI
    score_workers: int = field(default_factory=_score_workers)  # `score`: judging processes
    progress: bool = True  # progress bars on a terminal; CI=true turns them off
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    eve: EveSettings = field(default_factory=EveSettings)
    learn: LearnSettings = field(default_factory=LearnSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    files: FileSettings = field(default_factory=FileSettings)
    monitor: str | None = None  # interface monitored from start-up (--interface)
    monitor_netns: str | None = None  # its network namespace (--netns), None: this one

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults and ``NETIDS_*`` environment variables."""
    env = os.environ if environ is None else environ
    base = Settings()
    return base.with_overrides(
        db_url=env.get("NETIDS_DB"),
        model_path=Path(env["NETIDS_MODEL"]) if "NETIDS_MODEL" in env else None,
        sensor=env.get("NETIDS_SENSOR"),
        progress=False if _truthy(env.get("CI")) else None,
        auth=_auth_from(env, base.auth),
        files=replace(base.files, captures_dir=Path(env["NETIDS_CAPTURES_DIR"]))
        if env.get("NETIDS_CAPTURES_DIR") else None,
    )


def _auth_from(env: Mapping[str, str], auth: AuthSettings) -> AuthSettings:
    users_file = Path(env["NETIDS_USERS_FILE"]) if env.get("NETIDS_USERS_FILE") else None
    return replace(auth, **{k: v for k, v in {
        "users_file": users_file,
        "secret_file": users_file.with_name(users_file.stem + ".secret") if users_file else None,
        "admin_password_hash": env.get("NETIDS_ADMIN_PASSWORD_HASH") or None,
        "admin_name": env.get("NETIDS_ADMIN_USER") or None,
        "require_login": env.get("NETIDS_REQUIRE_LOGIN", "").lower() in {"1", "true", "yes"}
        or None,
        "session_idle_seconds": _number(env.get("NETIDS_SESSION_IDLE_SECONDS")),
        "session_max_seconds": _number(env.get("NETIDS_SESSION_MAX_SECONDS")),
    }.items() if v is not None})


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in {"1", "true", "yes"}


def _number(text: str | None) -> float | None:
    return float(text) if text else None
