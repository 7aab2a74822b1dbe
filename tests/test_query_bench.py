"""The query benchmark's machinery on a small data set: load with COPY, then measure
through a real in-process QueryService (what docs/benchmarks.md reports at 5M spans)."""

from __future__ import annotations

import uuid

import asyncpg

from receiver.query import bench


async def test_small_benchmark_loads_and_measures(postgres_server_url) -> None:
    """With 20,000 spans including two 1,000-span traces, the benchmark loads every span
    and log under its tenants, GetTrace returns the whole 1,000-span traces (it asserts
    so), each FindTraces variant is timed, and the report is a markdown table."""
    admin_url = postgres_server_url[0]
    database = f"prodsentinel_qbench_{uuid.uuid4().hex[:10]}"
    args = bench.parser().parse_args(
        ["--admin-url", admin_url, "--database", database, "--spans", "20000",
         "--big-traces", "2", "--hours", "3", "--requests", "8", "--warmup", "1"]
    )  # fmt: skip
    try:
        text = await bench.main_async(args)
        url = bench.with_database(admin_url, database)
        connection = await asyncpg.connect(url)
        try:
            spans = await connection.fetchval("SELECT count(*) FROM spans")
            tenants = await connection.fetchval("SELECT count(DISTINCT tenant_id) FROM spans")
        finally:
            await connection.close()
    finally:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await connection.close()

    assert text.startswith(f"{spans:,} spans and ")
    assert 19_000 <= spans <= 21_000
    assert tenants == 2
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| query | n | p50 ms")
    names = [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]]
    assert names[0] == "GetTrace (1,000 spans)"
    assert "FindTraces 1h, no filter, second page" in names
    assert rows[1].split(" | ")[1] == "8"  # GetTrace calls measured


def test_percentiles_are_nearest_rank() -> None:
    """p99 of 100 samples is the 99th smallest (not the maximum); of one sample, itself."""
    values = [float(n) for n in range(100, 0, -1)]
    assert [bench.percentile(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    assert bench.percentile([7.0], 0.99) == 7.0
