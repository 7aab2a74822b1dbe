"""Daily partitions, created ahead of time so the hot partition's indexes stay small.

A row whose time has no partition lands in the table's DEFAULT partition and is kept.
When a partition is later created for a day the DEFAULT partition holds rows of,
those rows are moved into it in the same transaction (PostgreSQL refuses the new
partition otherwise).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg

PARTITIONED_TABLES: dict[str, str] = {
    "spans": "start_time",
    "logs": "time",
    "metric_points": "time",
}
_LOCK_KEY = 0x50524F44  # advisory lock shared by all receivers doing maintenance


@dataclasses.dataclass(frozen=True, slots=True)
class Partition:
    table: str
    column: str
    day: dt.date

    @property
    def name(self) -> str:
        return f"{self.table}_p{self.day:%Y%m%d}"

    @property
    def lower(self) -> dt.datetime:
        return dt.datetime.combine(self.day, dt.time(), tzinfo=dt.UTC)

    @property
    def upper(self) -> dt.datetime:
        return self.lower + dt.timedelta(days=1)


def partitions_for(today: dt.date, days_ahead: int, days_behind: int = 1) -> list[Partition]:
    """The partitions that should exist around `today` (pure; the caller reads the clock)."""
    days = [today + dt.timedelta(days=offset) for offset in range(-days_behind, days_ahead + 1)]
    return [
        Partition(table, column, day)
        for table, column in PARTITIONED_TABLES.items()
        for day in days
    ]


async def ensure_partitions(connection: asyncpg.Connection, wanted: list[Partition]) -> list[str]:
    """Create the missing partitions; return the names created."""
    created: list[str] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        existing = {
            row["relname"]
            for row in await connection.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])",
                list(PARTITIONED_TABLES),
            )
        }
        for partition in wanted:
            if partition.name in existing:
                continue
            await _create(connection, partition)
            created.append(partition.name)
    return created


async def _create(connection: asyncpg.Connection, partition: Partition) -> None:
    table, column, name = partition.table, partition.column, partition.name
    # Literals, not parameters: utility statements (CREATE ... AS) cannot be prepared.
    # They are built from dates, never from client input.
    lower, upper = f"'{partition.lower.isoformat()}'", f"'{partition.upper.isoformat()}'"
    bounds = f"FROM ({lower}) TO ({upper})"
    in_range = f"{column} >= {lower} AND {column} < {upper}"
    in_default = await connection.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {table}_default WHERE {in_range})"
    )
    if not in_default:
        await connection.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES {bounds}")
        return
    # Rows for this day arrived before its partition existed: move them in.
    await connection.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
    await connection.execute("SET LOCAL prodsentinel.maintenance = 'on'")
    await connection.execute(f"CREATE TEMP TABLE moving_rows (LIKE {table}) ON COMMIT DROP")
    await connection.execute(
        f"WITH moved AS (DELETE FROM {table}_default WHERE {in_range} RETURNING *) "
        "INSERT INTO moving_rows SELECT * FROM moved"
    )
    await connection.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES {bounds}")
    await connection.execute(f"INSERT INTO {table} SELECT * FROM moving_rows")
    await connection.execute("DROP TABLE moving_rows")
    await connection.execute("SET LOCAL prodsentinel.maintenance = 'off'")
