"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared captures folder: NETIDS_SHARED_DATA, else shared/data beside the project.

    Every test that reads shared captures takes it; without them (no MANIFEST.tsv there) each
    such test skips with the same message, which names the folder looked at.
    """
    from tests.support import shared_data_or_skip

    return shared_data_or_skip()


@pytest.fixture(scope="module")
def lab_net() -> Iterator[object]:
    """A small lab network: hosts ``a`` (10.77.0.21) and ``b`` (10.77.0.22) on one bridge.

    Capture on the bridge with ``LiveSource("br0", ..., netns=lab_net.switch)`` or on a host's
    ``eth0`` with ``netns=lab_net.hosts["b"].ns``; run programs with ``lab_net.run("a", ...)``.
    Everything is deleted afterwards. Needs root.
    """
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    from netids.lab.network import LabNetwork

    with LabNetwork({"a": 21, "b": 22}) as net:
        yield net


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """The model that ships in models/: tests score with what users get on first run."""
    from netids.config import DEFAULT_MODEL

    assert DEFAULT_MODEL.exists(), f"{DEFAULT_MODEL} must ship with the project"
    return DEFAULT_MODEL


# databases (storage tests) -------------------------------------------------------------------

PG_DEFAULT_URL = "postgresql+psycopg://netids:netids@127.0.0.1:5432/netids_test"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A reachable PostgreSQL: NETIDS_TEST_PG_URL, else scripts/start_postgres.sh's default.

    Each test session works in a private database made there (dropped afterwards), so test
    runs of several people or processes on one server never empty each other's tables; if the
    role may not create databases, the given database itself is used.
    """
    import sqlalchemy

    url = os.environ.get("NETIDS_TEST_PG_URL", PG_DEFAULT_URL)
    admin = sqlalchemy.create_engine(
        url, connect_args={"connect_timeout": 3}, isolation_level="AUTOCOMMIT"
    )
    private = f"netids_test_{os.getpid()}_{os.urandom(3).hex()}"
    try:
        with admin.connect() as conn:
            try:
                conn.exec_driver_sql(f'CREATE DATABASE "{private}"')
            except sqlalchemy.exc.ProgrammingError:
                private = ""
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(
            f"PostgreSQL not reachable at {admin.url.render_as_string(hide_password=True)} "
            f"(run scripts/start_postgres.sh or set NETIDS_TEST_PG_URL): "
            f"{str(exc).splitlines()[0]}"
        )
    if not private:
        admin.dispose()
        yield url
        return
    yield admin.url.set(database=private).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{private}" WITH (FORCE)')
    admin.dispose()


def reset_postgres(url: str) -> None:
    """An empty public schema, so every test starts from a database without tables."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database: a fresh SQLite file, or the test PostgreSQL with its schema emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db')}/netids.sqlite"
    url = request.getfixturevalue("pg_url")
    reset_postgres(url)
    return url
