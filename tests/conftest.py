"""Shared fixtures: a real PostgreSQL (embedded by default), a migrated test database,
and real in-process receivers on ephemeral ports.

Set PRODSENTINEL_TEST_DATABASE_URL (and PRODSENTINEL_TEST_REDIS_URL) to run against
servers of your own instead; each session then creates and drops its own database.
"""

from __future__ import annotations

import os

# Tests fork helper processes (pg_ctl run as another user cannot use vfork) while gRPC
# threads are busy; gRPC's fork handlers then crash the child before exec. Must be set
# before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# Workers the tests start (subprocesses inherit this) must not run the service-graph
# upkeep on their own clock: graph tests drive it explicitly, with the time they choose.
os.environ.setdefault("PRODSENTINEL_GRAPH_UPKEEP_INTERVAL_SECONDS", "0")

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from receiver import migrations
from receiver.app import Receiver
from receiver.embedded import EmbeddedPostgres, start_postgres
from receiver.settings import Settings

ReceiverFactory = Callable[..., Awaitable[Receiver]]


@dataclasses.dataclass(frozen=True)
class TestDatabase:
    url: str  # postgresql:// URL of the migrated test database
    server: EmbeddedPostgres | None  # set when the tests own the server


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    prefix = base.rsplit("/", 1)[0]
    return f"{prefix}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def postgres_server_url(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """A maintenance URL of a PostgreSQL server: the one given, or an embedded one."""
    given = os.environ.get("PRODSENTINEL_TEST_DATABASE_URL")
    if given:
        yield given, None
        return
    server = start_postgres(tmp_path_factory.mktemp("embedded") / "data")
    try:
        yield server.dsn("postgres"), server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def test_database(
    postgres_server_url: tuple[str, EmbeddedPostgres | None],
) -> Iterator[TestDatabase]:
    """A fresh database for this session, migrated to head with Alembic."""
    admin_url, server = postgres_server_url
    name = f"prodsentinel_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = _with_database(admin_url, name)
    migrations.upgrade(url)
    try:
        yield TestDatabase(url=url, server=server)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(test_database: TestDatabase) -> str:
    return test_database.url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test database, for assertions."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own: tests share one database and never see each other's rows."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_receiver(database_url: str) -> AsyncIterator[ReceiverFactory]:
    """Start real in-process receivers on ephemeral ports; all are stopped after the test."""
    started: list[Receiver] = []

    async def make(**overrides: Any) -> Receiver:
        env = {
            "DATABASE_URL": overrides.pop("database_url", database_url),
            "PRODSENTINEL_GRPC_ADDRESS": "127.0.0.1:0",
            "PRODSENTINEL_HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
            "PRODSENTINEL_RETRY_AFTER_SECONDS": "0.2",
        }
        env.update({key: str(value) for key, value in overrides.items()})
        receiver = Receiver(Settings.from_env(env))
        await receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop(grace=1.0)


@pytest.fixture
async def receiver(make_receiver: ReceiverFactory) -> Receiver:
    """One receiver with default settings."""
    return await make_receiver()


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
