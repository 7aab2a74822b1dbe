"""asyncpg connections: pools for the writer, and a reachability probe for health."""

from __future__ import annotations

from typing import Any

import asyncpg

# Errors that mean "the database is not reachable right now", as opposed to bad data.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def _identity(value: Any) -> Any:
    return value


async def init_writer_connection(connection: asyncpg.Connection) -> None:
    """Codecs that let mapped rows go to COPY as they are (no per-row datetime/UUID objects).

    timestamptz: microseconds since 2000-01-01 (asyncpg's tuple format); jsonb: UTF-8 JSON
    bytes behind the format version byte; uuid: the 16 raw bytes.
    """
    await connection.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=lambda us: (us,),
        decoder=lambda value: value[0],
        format="tuple",
    )
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=b"\x01".__add__,
        decoder=lambda data: data[1:],
        format="binary",
    )
    await connection.set_type_codec(
        "uuid", schema="pg_catalog", encoder=_identity, decoder=_identity, format="binary"
    )


async def create_writer_pool(dsn: str, size: int, command_timeout: float) -> asyncpg.Pool:
    """A pool that opens connections lazily, so it can be built while the database is down."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        init=init_writer_connection,
        command_timeout=command_timeout,
        max_inactive_connection_lifetime=60.0,
    )
    assert pool is not None
    return pool


async def is_reachable(dsn: str, within_seconds: float) -> bool:
    """True when a fresh connection can run a query within `within_seconds`."""
    timeout = within_seconds
    try:
        connection = await asyncpg.connect(dsn, timeout=timeout)
    except CONNECTION_ERRORS:
        return False
    except asyncpg.PostgresError:
        return False
    try:
        await connection.fetchval("SELECT 1", timeout=timeout)
        return True
    except CONNECTION_ERRORS:
        return False
    except asyncpg.PostgresError:
        return False
    finally:
        connection.terminate()
