"""One typed settings object, read once at start-up and passed down.

No other module reads ``os.environ`` or hard-codes paths and limits; they take a
:class:`Settings` (or the part of it they need).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_URL = f"sqlite:///{PROJECT_ROOT / 'db' / 'netids.sqlite'}"
DEFAULT_MODEL = PROJECT_ROOT / "models" / "default.pt"


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
    retention_days: float | None = 90.0  # events last seen longer ago are deleted; None keeps all
    retention_rows: int | None = 1_000_000  # newest events kept at most; None: no row limit
    retention_interval: float = 300.0  # seconds between retention runs of the writer


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Credentials and sessions for serving beyond loopback (netids.auth, netids.ui.login)."""

    users_file: Path = PROJECT_ROOT / "db" / "users.json"  # hashed credentials, mode 0600
    secret_file: Path = PROJECT_ROOT / "db" / "storage_secret"  # signs session cookies, 0600
    admin_password_hash: str | None = None  # NETIDS_ADMIN_PASSWORD_HASH: an extra admin account
    admin_name: str = "admin"  # NETIDS_ADMIN_USER: that account's name
    require_login: bool = False  # NETIDS_REQUIRE_LOGIN=1 / --require-login: login even on loopback
    session_idle_seconds: float = 3600.0  # a session ends after this long without a request
    session_max_seconds: float = 12 * 3600.0  # and this long after its login, whatever happens
    login_free_attempts: int = 3  # failed logins per user name / address before back-off starts
    login_base_delay: float = 2.0  # seconds of the first back-off; doubles with every failure
    login_max_delay: float = 300.0  # longest back-off


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
    models_dir: Path = PROJECT_ROOT / "models"
    host: str = "127.0.0.1"
    port: int = 8080
    sensor: str = "local"
    threshold: float | None = None  # None: the threshold stored in the model checkpoint
    torch_threads: int = 1  # leave the other core to capture and the UI
    score_workers: int = field(default_factory=_score_workers)  # `score`: judging processes
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)

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
        auth=_auth_from(env, base.auth),
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


def _number(text: str | None) -> float | None:
    return float(text) if text else None
