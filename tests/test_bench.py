"""The bench machinery, end to end against a real in-process receiver and PostgreSQL."""

from __future__ import annotations

from receiver.app import Receiver
from receiver.bench.measure import BenchConfig, measure


async def test_bench_counts_are_consistent(receiver: Receiver, db) -> None:
    """Given a receiver, when the bench sends 3 requests of 16 spans with 2 exporters,
    then every span is acknowledged, the ceiling copies rows, and all of them are stored
    under the run's own tenant (fresh ids per request: nothing is deduplicated)."""
    config = BenchConfig(spans_per_request=16, concurrency=2, requests=3, duration=60, warmup=0)

    report = await measure(
        f"127.0.0.1:{receiver.port}", receiver.settings.asyncpg_dsn, config, receiver.settings
    )

    assert report["load"]["requests_ok"] == 3
    assert report["load"]["requests_failed"] == 0
    assert report["end_to_end"]["acknowledged_spans"] == 3 * 16
    assert report["ceiling"]["rows"] > 0
    assert report["commits"]["transactions"] >= 1
    stored = await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", report["tenant"])
    assert stored == report["stored_rows"] == 3 * 16 + report["ceiling"]["rows"]
    distinct = await db.fetchval(
        "SELECT count(DISTINCT (trace_id, span_id)) FROM spans WHERE tenant_id = $1",
        report["tenant"],
    )
    assert distinct == stored
