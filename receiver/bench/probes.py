"""Readings the bench report is made of: CPU of processes and of the machine, PostgreSQL
statistics (WAL, commits, stored rows) and a description of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import asyncpg
import grpc  # type: ignore[import-untyped,unused-ignore]

from receiver.errors import ProdSentinelError


@contextlib.asynccontextmanager
async def open_connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `dsn` for the length of the block."""
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def commit_sizes(connection: asyncpg.Connection, tenant: str) -> tuple[int, int]:
    """(transactions, rows) of the tenant's spans: rows committed together share an xmin."""
    record = await connection.fetchrow(
        "SELECT count(*) AS commits, coalesce(sum(n), 0) AS rows FROM "
        "(SELECT count(*) AS n FROM spans WHERE tenant_id = $1 GROUP BY xmin::text) AS t",
        tenant,
    )
    assert record is not None
    return int(record["commits"]), int(record["rows"])


async def stored_rows(connection: asyncpg.Connection, tenant: str) -> int:
    """How many of the tenant's spans the database holds."""
    count = await connection.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant)
    return int(count)


async def wal_position(connection: asyncpg.Connection) -> int:
    """The server's current WAL position in bytes."""
    return int(await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


async def postgres_version(connection: asyncpg.Connection) -> str:
    """The server's version string; fails, naming the fix, when the schema is missing."""
    if not await connection.fetchval("SELECT to_regclass('spans') IS NOT NULL"):
        raise ProdSentinelError("no `spans` table in DATABASE_URL: run `prodsentinel migrate`")
    return str(await connection.fetchval("SELECT version()"))


async def postgres_pids(connection: asyncpg.Connection, *, include_self: bool = False) -> list[int]:
    """The server's processes (backends and background writers) when it runs on this machine;
    the asking connection's own backend only with `include_self`."""
    rows = await connection.fetch(
        "SELECT pid FROM pg_stat_activity WHERE $1 OR pid <> pg_backend_pid()", include_self
    )
    pids = [int(row["pid"]) for row in rows]

    def is_postgres(pid: int) -> bool:  # a remote server's pids mean nothing here
        with contextlib.suppress(OSError):
            return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return False

    return [pid for pid in pids if is_postgres(pid)]


# --------------------------------------------------------------------------- CPU and machine


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads) from /proc, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds so far of those of `pids` that are running."""
    return {pid: cpu for pid in pids if (cpu := process_cpu_seconds(pid)) is not None}


def cpu_since(before: dict[int, float], pids_now: Iterable[int]) -> float | None:
    """CPU used since `before` by its processes and by `pids_now` (those started meanwhile
    count whole); None when none can be read (e.g. a remote server)."""
    now = cpu_by_pid({*before, *pids_now})
    if not before and not now:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    times = os.times()
    return times.user + times.system


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all CPUs since boot; iowait counts as idle, steal as busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - values[3] - values[4]) / ticks, sum(values) / ticks


def machine_description(postgres: str) -> dict[str, Any]:
    """CPUs, CPU model and software versions, for the report; `postgres` is the server's."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "postgres": postgres,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }
