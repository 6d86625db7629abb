"""The engine and the schema: one engine per process, made by :func:`open_database`, which
also brings the schema to the newest Alembic migration in ``db/migrations`` (inside the
package when installed).

SQLite files get WAL, synchronous=NORMAL and a busy timeout; PostgreSQL gets a lock timeout of
the same length and TCP keepalives, so a locked or vanished database fails a write in seconds
and the writer retries it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from netids.config import MIGRATIONS, StorageSettings

PG_MIGRATION_LOCK = 0x6E657469  # advisory lock id: two sensors starting at once upgrade in turn
SUPPORTED = ("SQLite (sqlite:///FILE) or PostgreSQL "
             "(postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE)")


class DatabaseURLError(ValueError):
    """A database URL netids cannot use; the message says which URLs it can."""


def check_url(url: str) -> None:
    """Refuse a URL that can never work (another database, a missing driver, a malformed
    URL) before anything is started; whether the database answers is found out later.

    >>> check_url("sqlite:///db/netids.sqlite")
    >>> try:
    ...     check_url("mysql://bob:secret@db/events")
    ... except DatabaseURLError as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    unsupported database URL mysql://bob:***@db/events: netids stores events in SQLite ...
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url.startswith(("sqlite", "postgresql")):
        raise DatabaseURLError(f"unsupported database URL {safe_url(url)}: netids stores "
                               f"events in {SUPPORTED}")
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
        dialect.import_dbapi()  # a driver that is not installed is said here
        dialect().create_connect_args(parsed)  # so is a URL the driver cannot read
    except (ArgumentError, ValueError, ImportError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseURLError(f"unusable database URL {safe_url(url)} ({reason}): netids "
                               f"stores events in {SUPPORTED}") from None


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for messages.

    >>> safe_url("postgresql+psycopg://bob:secret@db:5432/events")
    'postgresql+psycopg://bob:***@db:5432/events'
    >>> safe_url("no url: at all")
    "'no url: at all'"
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return repr(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url))


def make_engine(url: str, settings: StorageSettings | None = None) -> Engine:
    """The engine for ``url``; SQLite files get WAL, synchronous=NORMAL and a busy timeout.
    Raises :class:`DatabaseURLError` for a URL that can never work."""
    settings = settings or StorageSettings()
    check_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
        memory = path in ("", ":memory:")
        if not memory and not path.startswith("file:"):
            _private_file(Path(path))
        engine = create_engine(
            url,
            connect_args={"timeout": settings.busy_timeout_ms / 1000, "check_same_thread": False},
            # one shared connection, or the writer thread would see its own empty database
            **({"poolclass": StaticPool} if memory else {}),
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(settings.busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    connect_args = {
        # a lock held elsewhere fails the write after the same wait as SQLite's busy timeout
        "options": f"-c lock_timeout={int(settings.busy_timeout_ms)}",
        # a server that vanished without a reset is noticed in seconds, not hours
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _private_file(path: Path) -> None:
    """Create the database file owner-only (0600) before SQLite does, in a folder made 0700
    when it is new; SQLite gives its -wal and -shm files the file's mode. Existing files and
    folders keep theirs."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the Alembic migrations in ``db/migrations``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_database(url: str, settings: StorageSettings | None = None) -> Engine:
    """Make the engine and upgrade the schema to head: what the app does on start."""
    engine = make_engine(url, settings)
    upgrade(engine)
    return engine
