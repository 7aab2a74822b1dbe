"""The Alembic schema: columns match the COPY rows, partitions, append-only, downgrade."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid

import asyncpg
import pytest

from receiver import migrations
from receiver.database import init_writer_connection
from receiver.mapping.rows import TABLE_COLUMNS, unix_nano_to_pg_us
from receiver.partitions import Partition, ensure_partitions, partitions_for


@pytest.mark.parametrize("table", sorted(TABLE_COLUMNS))
async def test_table_columns_match_row_fields(db: asyncpg.Connection, table: str) -> None:
    """The migration's columns are exactly the row NamedTuple's fields, in COPY order."""
    columns = await db.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position",
        table,
    )
    assert tuple(row["column_name"] for row in columns) == TABLE_COLUMNS[table]


def test_partitions_for_is_pure_and_covers_the_window() -> None:
    """Yesterday through N days ahead, for every signal table."""
    wanted = partitions_for(dt.date(2026, 1, 31), days_ahead=2)
    spans = sorted(p.name for p in wanted if p.table == "spans")
    assert spans == ["spans_p20260130", "spans_p20260131", "spans_p20260201", "spans_p20260202"]
    assert {p.table for p in wanted} == {"spans", "logs", "metric_points"}


async def test_rows_outside_partitions_are_kept_then_moved(
    db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """A row for a day without a partition lands in DEFAULT; creating the day's partition moves it."""
    day = dt.date(2031, 3, 4)
    start_ns = int(dt.datetime(2031, 3, 4, 12, tzinfo=dt.UTC).timestamp()) * 10**9
    await _insert_span(database_url, tenant, start_ns)
    assert (
        await db.fetchval("SELECT tableoid::regclass::text FROM spans WHERE tenant_id = $1", tenant)
        == "spans_default"
    )

    created = await ensure_partitions(db, [Partition("spans", "start_time", day)])

    assert created == ["spans_p20310304"]
    located = await db.fetch(
        "SELECT tableoid::regclass::text AS part FROM spans WHERE tenant_id = $1", tenant
    )
    assert [row["part"] for row in located] == ["spans_p20310304"]
    assert await ensure_partitions(db, [Partition("spans", "start_time", day)]) == []


async def test_zero_timestamp_is_stored(
    db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """A span at the Unix epoch (an unset time) is stored, not a failed batch."""
    await _insert_span(database_url, tenant, 0)
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 1


async def test_signal_rows_are_append_only(
    db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """UPDATE and DELETE on signal tables raise."""
    await _insert_span(database_url, tenant, 1_800_000_000 * 10**9)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute("UPDATE spans SET name = 'changed' WHERE tenant_id = $1", tenant)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute("DELETE FROM spans WHERE tenant_id = $1", tenant)


def test_downgrade_then_upgrade(postgres_server_url: tuple[str, object]) -> None:
    """`downgrade base` removes every table and function; `upgrade head` brings them back."""
    admin_url = postgres_server_url[0]
    name = f"prodsentinel_mig_{uuid.uuid4().hex[:10]}"
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")

    async def run(sql: str, target: str = admin_url) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(target)
        try:
            return await connection.fetch(sql)
        finally:
            await connection.close()

    tables_sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        migrations.upgrade(url)
        assert {"spans", "logs", "metric_points"} <= {
            r[0] for r in asyncio.run(run(tables_sql, url))
        }
        migrations.downgrade(url, "base")
        assert [r[0] for r in asyncio.run(run(tables_sql, url))] == ["alembic_version"]
        migrations.upgrade(url)
        assert {"spans", "logs", "metric_points"} <= {
            r[0] for r in asyncio.run(run(tables_sql, url))
        }
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _insert_span(database_url: str, tenant: str, start_ns: int) -> None:
    """COPY one span the way the writer does (same codecs)."""
    writer = await asyncpg.connect(database_url)
    try:
        await init_writer_connection(writer)
        trace_id = os.urandom(16)
        us = unix_nano_to_pg_us(start_ns)
        row = (
            tenant,
            os.urandom(16),
            trace_id,
            os.urandom(8),
            None,
            "svc",
            "op",
            1,
            us,
            us,
            start_ns,
            start_ns,
            0,
            "",
            "",
            0,
            b"{}",
            0,
            b"[]",
            0,
            b"[]",
            0,
            b"{}",
            0,
            "",
            "",
            "",
            b"{}",
            0,
            "",
        )
        await writer.copy_records_to_table("spans", records=[row], columns=TABLE_COLUMNS["spans"])
    finally:
        await writer.close()
