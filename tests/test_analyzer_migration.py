"""Migration 0003_incidents: constraints, and a downgrade that really undoes it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from receiver import migrations

TABLES = ("incidents", "incident_occurrences", "incident_events", "incident_sweeps")


@pytest.fixture
def fresh_database(postgres_server_url: tuple[str, Any]) -> Iterator[str]:
    """An empty database of this test's own (migrations are applied by the test)."""
    admin_url = postgres_server_url[0]
    name = f"incidents_migration_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await connection.close()


def test_upgrade_downgrade_upgrade(fresh_database: str) -> None:
    """0003 creates the incident tables and the sweeper's function and indexes; downgrading
    to 0001 removes all of them and leaves the signal tables; upgrading again works."""
    migrations.upgrade(fresh_database, "0003_incidents")
    assert set(TABLES) <= asyncio.run(tables(fresh_database))
    migrations.downgrade(fresh_database, "0001_signal_tables")
    remaining = asyncio.run(tables(fresh_database))
    assert not set(TABLES) & remaining
    assert "spans" in remaining

    async def leftovers() -> list[str]:
        connection = await asyncpg.connect(fresh_database)
        try:
            rows = await connection.fetch(
                "SELECT proname FROM pg_proc WHERE proname LIKE 'prodsentinel_span%' "
                "UNION ALL SELECT indexname FROM pg_indexes WHERE indexname IN ('spans_errors', 'logs_errors')"
            )
            return [r[0] for r in rows]
        finally:
            await connection.close()

    assert asyncio.run(leftovers()) == []
    migrations.upgrade(fresh_database, "0003_incidents")
    assert set(TABLES) <= asyncio.run(tables(fresh_database))


@pytest.mark.parametrize(
    ("column", "value"),
    [("status", "high"), ("status", "closed"), ("severity", "open"), ("severity", "urgent")],
)
async def test_status_and_severity_are_checked(
    db: asyncpg.Connection, tenant: str, column: str, value: str
) -> None:
    """The database refuses a severity in the status column and vice versa (seed 002)."""
    values = {"status": "open", "severity": "low", column: value}
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            """
            INSERT INTO incidents (tenant_id, fingerprint, title, exception_type, message_template,
                service_name, operation, status, severity, first_seen, last_seen, last_recorded)
            VALUES ($1, 'f', 't', 'E', 'm', 's', 'o', $2, $3, now(), now(), now())
            """,
            tenant,
            values["status"],
            values["severity"],
        )


async def test_one_incident_per_fingerprint_and_one_occurrence_per_trace(
    db: asyncpg.Connection, tenant: str
) -> None:
    """The unique keys that make grouping race-free: (tenant, fingerprint) and (tenant, trace)."""
    insert = """
        INSERT INTO incidents (tenant_id, fingerprint, title, exception_type, message_template,
            service_name, operation, status, severity, first_seen, last_seen, last_recorded)
        VALUES ($1, 'same', 't', 'E', 'm', 's', 'o', 'open', 'low', now(), now(), now()) RETURNING id
    """
    incident_id = await db.fetchval(insert, tenant)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.fetchval(insert, tenant)
    occurrence = """
        INSERT INTO incident_occurrences (tenant_id, incident_id, occurrence_key, trace_id, origin_kind,
            origin_signal_id, service_name, operation, error_count, severity, occurred_at)
        VALUES ($1, $2, 'trace', 'trace', 'span', 'sig', 's', 'o', 1, 'low', now())
    """
    await db.execute(occurrence, tenant, incident_id)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(occurrence, tenant, incident_id)
