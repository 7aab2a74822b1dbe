"""Graph upkeep: aggregate new spans into services and edges, refresh staleness, sync the
cycle alerts; one transaction, one run at a time fleet-wide.

Schedule `run_graph_upkeep` every `GraphConfig.upkeep_interval_seconds` from any number
of processes: a transaction-scoped advisory lock makes concurrent runs skip, and the
watermark moves in the same transaction as the counts, so a crashed run leaves nothing
half-counted and a repeated run counts nothing twice. A run that is behind (after an
outage) says so in its summary; the caller may run again at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import asyncpg
import structlog

from analyzer.graph import cycles, edges, services, staleness
from analyzer.graph.config import GraphConfig
from analyzer.graph.model import LATENCY_BOUNDS_MS, Conn
from analyzer.graph.store import database_errors

log = structlog.get_logger(__name__)

UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class UpkeepSummary:
    """What one run did (all zero and `skipped` when another run held the lock)."""

    skipped: bool = False
    window_start_us: int = 0
    window_end_us: int = 0
    behind: bool = False
    calls: int = 0
    services: int = 0
    edges: int = 0
    edges_staled: int = 0
    edges_revived: int = 0
    tenants_synced: int = 0
    cycles_raised: int = 0
    cycles_reopened: int = 0
    cycles_resolved: int = 0
    stats_pruned: int = 0
    duration_ms: float = 0.0


def to_us(moment: dt.datetime) -> int:
    """An aware datetime as microseconds since the Unix epoch."""
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    delta = moment - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def run_graph_upkeep(
    pool_or_conn: asyncpg.Pool | Conn, now: dt.datetime, config: GraphConfig
) -> UpkeepSummary:
    """Aggregate, mark stale, sync cycle alerts, prune old stats; return what was done.

    Raises RetryableError when the database is unreachable, PermanentError for any other
    database error (nothing of the run is kept either way).

    `now` decides staleness; span aggregation never reads past the database's own clock
    less `config.settle_seconds` (a caller whose clock runs ahead cannot make the
    watermark pass spans not yet written).
    """
    async with database_errors():
        if isinstance(pool_or_conn, asyncpg.Pool):
            async with pool_or_conn.acquire() as conn:
                return await _run(conn, to_us(now), config)
        return await _run(pool_or_conn, to_us(now), config)


async def _run(conn: Conn, now_us: int, config: GraphConfig) -> UpkeepSummary:
    started = time.perf_counter()
    async with conn.transaction():
        if not await edges.lock_upkeep(conn):
            log.debug("graph_upkeep_skipped", reason="another run holds the lock")
            return UpkeepSummary(skipped=True)
        timeout_ms = round(config.statement_timeout_seconds * 1000)
        await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        watermark, database_now = await edges.read_watermark(conn)
        window = edges.plan_window(watermark, now_us, database_now, config)
        calls = found_services = upserted = 0
        changed: set[str] = set()
        max_span_us = round(config.max_span_seconds * 1_000_000)
        if not window.empty:
            calls = await edges.collect_calls(conn, window, config, list(LATENCY_BOUNDS_MS))
            found_services = await services.discover_services(
                conn, window.start_us, window.end_us, max_span_us
            )
            found_services += await services.upsert_endpoints(conn)
            upserted, touched = await edges.upsert_edges(conn)
            changed |= touched
            await edges.write_watermark(conn, window.end_us)
        stale = await staleness.refresh_staleness(conn, now_us, config.stale_after_seconds)
        changed |= stale.tenants
        raised = reopened = resolved = 0
        for tenant in sorted(changed):
            sync = await cycles.sync_cycle_alerts(conn, tenant, now_us, config.max_cycles)
            raised, reopened = raised + sync.raised, reopened + sync.reopened
            resolved += sync.resolved
        pruned = await staleness.prune_stats(conn, now_us, config.stats_retention_seconds)
    summary = UpkeepSummary(
        window_start_us=window.start_us,
        window_end_us=window.end_us,
        behind=window.behind,
        calls=calls,
        services=found_services,
        edges=upserted,
        edges_staled=stale.staled,
        edges_revived=stale.revived,
        tenants_synced=len(changed),
        cycles_raised=raised,
        cycles_reopened=reopened,
        cycles_resolved=resolved,
        stats_pruned=pruned,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    log.info("graph_upkeep", **dataclasses.asdict(summary))
    return summary
