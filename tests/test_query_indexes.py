"""The query indexes migration (0002_query_indexes): created on every partition, and
reverted by a downgrade to 0001 without touching anything else."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from receiver import migrations

QUERY_INDEXES = {"spans_tenant_time", "spans_operations", "logs_tenant_time"}


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


def _indexes(url: str) -> set[str]:
    rows = asyncio.run(_fetch(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"))
    return {row["indexname"] for row in rows}


def test_downgrade_to_0001_drops_only_the_query_indexes(
    postgres_server_url: tuple[str, object],
) -> None:
    """`upgrade heads` creates the three indexes on the parents and on each partition;
    `downgrade 0001_signal_tables` removes exactly those; upgrading again restores them."""
    admin_url = postgres_server_url[0]
    name = f"prodsentinel_qidx_{uuid.uuid4().hex[:10]}"
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    asyncio.run(_fetch(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        migrations.upgrade(url)
        with_queries = _indexes(url)
        assert with_queries >= QUERY_INDEXES
        assert any(index.startswith("spans_default_tenant_id_start_time") for index in with_queries)

        migrations.downgrade(url, "0001_signal_tables")
        without = _indexes(url)
        assert not without & QUERY_INDEXES
        partition_copies = {i for i in with_queries - without if i not in QUERY_INDEXES}
        assert partition_copies, "the partitions' copies go with their parents"
        assert without < with_queries

        migrations.upgrade(url)
        assert _indexes(url) == with_queries
    finally:
        asyncio.run(_fetch(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
