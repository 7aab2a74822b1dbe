"""Embedded PostgreSQL and Redis (receiver.embedded): real servers, really started and stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from receiver.embedded import EmbeddedPostgres, start_postgres, start_redis
from receiver.errors import ProdSentinelError


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = start_postgres(tmp_path_factory.mktemp("embedded") / "nested" / "data")
    yield server
    server.stop()


async def _fetchval(dsn: str, query: str) -> object:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Live (non-zombie) postgres processes serving `pgdata`."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if (
            info["name"] == "postgres"
            and info["status"] != psutil.STATUS_ZOMBIE
            and str(pgdata) in (info["cmdline"] or [])
        ):
            found.append(process)
    return found


async def test_started_postgres_answers_queries(postgres: EmbeddedPostgres) -> None:
    """start_postgres initdb's a cluster under data_dir/pgdata and returns a server that
    answers `select 1` through its dsn."""
    assert (postgres.pgdata / "PG_VERSION").is_file()
    assert postgres.is_running()
    assert await _fetchval(postgres.dsn(), "select 1") == 1


async def test_dsn_is_accepted_by_sqlalchemy_asyncpg(postgres: EmbeddedPostgres) -> None:
    """The dsn, with its scheme switched to postgresql+asyncpg, works for SQLAlchemy too."""
    url = postgres.dsn().replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("select current_user"))).scalar() == "postgres"
    finally:
        await engine.dispose()


async def test_create_database_is_idempotent_and_connectable(postgres: EmbeddedPostgres) -> None:
    """create_database creates a missing database (any name, quoted safely), is a no-op the
    second time, works while an event loop is running, and dsn(name) connects to it."""
    name = 'Ops "Data"-1'
    postgres.create_database(name)
    postgres.create_database(name)
    assert await _fetchval(postgres.dsn(name), "select current_database()") == name


async def test_start_postgres_on_a_running_data_dir_reuses_the_server(
    postgres: EmbeddedPostgres,
) -> None:
    """A second start_postgres on the same data dir neither restarts nor duplicates the
    server: it hands back the same handle and the same postmaster keeps serving."""
    started_at = await _fetchval(postgres.dsn(), "select pg_postmaster_start_time()")
    again = start_postgres(postgres.data_dir)
    assert again is postgres
    assert again.dsn() == postgres.dsn()
    assert await _fetchval(again.dsn(), "select pg_postmaster_start_time()") == started_at


_CHILD = """
import sys
from pathlib import Path
from receiver.embedded import start_postgres, start_redis

data_dir = Path(sys.argv[1])
postgres = start_postgres(data_dir)
redis_server = start_redis(data_dir)
print("READY", postgres.dsn(), redis_server.pid, flush=True)
if sys.argv[2] == "hang":
    sys.stdin.read()
"""


def _run_child(data_dir: Path, mode: str) -> tuple[subprocess.Popen[str], str, int]:
    """Start a Python process that starts both servers; return it, its dsn and Redis pid."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("READY "):
            _, dsn, redis_pid = line.split()
            return child, dsn, int(redis_pid)
    with child:
        pass
    pytest.fail(f"child exited with {child.returncode} before its servers were ready")


def _redis_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_process_exit_without_stop_stops_its_servers(tmp_path: Path) -> None:
    """A process that started the servers and exits without calling stop() does not leak
    them: the atexit safety net stops PostgreSQL and Redis."""
    child, _dsn, redis_pid = _run_child(tmp_path, "exit")
    with child:
        assert child.wait(timeout=30) == 0
    assert _postgres_processes(tmp_path / "pgdata") == []
    assert _redis_gone(redis_pid)


async def test_server_left_by_a_crashed_process_is_reused(tmp_path: Path) -> None:
    """If an earlier run died without stopping PostgreSQL (SIGKILL: no atexit), the next
    start_postgres adopts that running server instead of failing or starting another."""
    child, dsn, redis_pid = _run_child(tmp_path, "hang")
    with child:
        child.send_signal(signal.SIGKILL)
    psutil.Process(redis_pid).kill()  # a crash leaks Redis too; not what this test pins
    started_at = await _fetchval(dsn, "select pg_postmaster_start_time()")
    server = start_postgres(tmp_path)
    try:
        assert server.dsn() == dsn
        assert await _fetchval(server.dsn(), "select pg_postmaster_start_time()") == started_at
    finally:
        server.stop()
    assert _postgres_processes(server.pgdata) == []


async def test_stop_ends_the_server_and_start_brings_the_data_back(
    postgres: EmbeddedPostgres,
) -> None:
    """stop() really ends every postgres process of the cluster (connecting then fails),
    is idempotent, and start() serves the same data again at the same dsn."""
    dsn = postgres.dsn()
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute("create table kept (value text)")
        await connection.execute("insert into kept values ('before the outage')")
    finally:
        await connection.close()
    try:
        postgres.stop()
        postgres.stop()
        assert not postgres.is_running()
        assert _postgres_processes(postgres.pgdata) == []
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            await asyncpg.connect(dsn, timeout=10)
    finally:
        postgres.start()
    assert postgres.dsn() == dsn
    assert await _fetchval(dsn, "select value from kept") == "before the outage"


async def test_failed_start_raises_with_the_server_log(postgres: EmbeddedPostgres) -> None:
    """When the server cannot start, start() raises ProdSentinelError quoting the end of
    the server log, and the handle can start again once the cause is fixed."""
    config = postgres.pgdata / "postgresql.conf"
    original = config.read_text()
    postgres.stop()
    try:
        config.write_text(original + "\nshared_buffers = 'plenty'\n")
        with pytest.raises(ProdSentinelError, match="shared_buffers") as caught:
            postgres.start()
        assert str(postgres.pgdata) in str(caught.value)
    finally:
        config.write_text(original)
        postgres.start()
    assert await _fetchval(postgres.dsn(), "select 1") == 1


def test_start_in_an_impossible_location_raises(tmp_path: Path) -> None:
    """A data dir that cannot be created gives ProdSentinelError, not a raw OSError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ProdSentinelError, match="a-file"):
        start_postgres(blocker / "data")
    with pytest.raises(ProdSentinelError, match="a-file"):
        start_redis(blocker / "data")


def test_redis_answers_ping_until_stopped(tmp_path: Path) -> None:
    """start_redis runs a redis-server on 127.0.0.1 (working dir data_dir/redis) that
    answers PING at its url; stop() ends it (idempotently) and connecting then fails."""
    server = start_redis(tmp_path)
    try:
        assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", server.url)
        client = redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            assert client.ping() is True
            assert client.config_get("dir")["dir"] == str((tmp_path / "redis").resolve())
        finally:
            client.close()
    finally:
        server.stop()
    server.stop()
    client = redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=2)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


def test_two_redis_servers_run_side_by_side(tmp_path: Path) -> None:
    """Each start_redis gets its own free port, so two servers can run at once."""
    first = start_redis(tmp_path / "one")
    try:
        second = start_redis(tmp_path / "two")
        try:
            assert first.url != second.url
            for server in (first, second):
                client = redis.Redis.from_url(server.url, socket_connect_timeout=2)
                try:
                    assert client.ping() is True
                finally:
                    client.close()
        finally:
            second.stop()
    finally:
        first.stop()
