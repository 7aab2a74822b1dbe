"""Reading the graph: services, the graph of a time range, edges among services, cycle
alerts; and the small lookups other parts of the analyzer use (criticality, blast radius).

Every statement is scoped to one tenant. Database errors become ours: unreachable is
RetryableError (UNAVAILABLE + RetryInfo), anything else PermanentError.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import structlog

from analyzer.graph.model import (
    Conn,
    Criticality,
    CycleAlert,
    Direction,
    DiscoverySource,
    EdgeRecord,
    Latency,
    Reached,
    ServiceRecord,
    ts,
    us,
)
from analyzer.graph.services import SERVICE_COLUMNS, service_record
from analyzer.graph.traversal import traverse
from receiver.database import CONNECTION_ERRORS
from receiver.errors import PermanentError, RetryableError

log = structlog.get_logger(__name__)

MAX_GRAPH_EDGES = 50_000
BLAST_RADIUS_DEPTH = 3

_EDGE_COLUMNS = f"""
    src.name AS source, dst.name AS target, d.discovery_source, d.communication_mode,
    d.protocol, d.confidence, {us("d.first_observed_at")} AS first_observed_us,
    {us("d.last_observed_at")} AS last_observed_us, d.is_stale"""

EDGES_AMONG = f"""
SELECT {_EDGE_COLUMNS}, d.call_count AS calls, d.error_count AS errors,
       d.latency_sum_ms, d.latency_min_ms, d.latency_max_ms, d.latency_buckets
FROM service_dependencies d
JOIN services src ON src.id = d.source_id
JOIN services dst ON dst.id = d.target_id
WHERE d.tenant_id = $1 AND src.name = ANY($2::text[]) AND dst.name = ANY($2::text[])
  AND ($3 OR NOT d.is_stale)
ORDER BY src.name, dst.name, d.discovery_source
"""

# $1 tenant, $2 start, $3 end (µs), $4 row limit. Hourly stats: the range is widened to
# whole hours.
GRAPH_EDGES = f"""
WITH picked AS (
    SELECT st.* FROM service_dependency_stats st
    JOIN service_dependencies d ON d.id = st.edge_id
    WHERE d.tenant_id = $1
      AND st.bucket >= date_trunc('hour', {ts("$2")}, 'UTC') AND st.bucket < {ts("$3")}
),
histograms AS (
    SELECT edge_id, array_agg(total ORDER BY i) AS latency_buckets
    FROM (SELECT p.edge_id, u.i, sum(u.x)::bigint AS total
          FROM picked p, unnest(p.latency_buckets) WITH ORDINALITY AS u(x, i)
          GROUP BY 1, 2) h
    GROUP BY edge_id
),
totals AS (
    SELECT edge_id, sum(call_count)::bigint AS calls, sum(error_count)::bigint AS errors,
           sum(latency_sum_ms) AS latency_sum_ms, min(latency_min_ms) AS latency_min_ms,
           max(latency_max_ms) AS latency_max_ms
    FROM picked GROUP BY edge_id
)
SELECT {_EDGE_COLUMNS}, t.calls, t.errors, t.latency_sum_ms, t.latency_min_ms,
       t.latency_max_ms, h.latency_buckets
FROM totals t
JOIN histograms h USING (edge_id)
JOIN service_dependencies d ON d.id = t.edge_id
JOIN services src ON src.id = d.source_id
JOIN services dst ON dst.id = d.target_id
ORDER BY src.name, dst.name, d.discovery_source
LIMIT $4
"""

GRAPH_SERVICES = f"""
SELECT {SERVICE_COLUMNS} FROM services
WHERE tenant_id = $1
  AND ((last_seen >= {ts("$2")} AND first_seen < {ts("$3")}) OR name = ANY($4::text[]))
ORDER BY name
"""

CYCLES = f"""
SELECT id, cycle_path, status, {us("first_detected_at")} AS first_detected_us,
       {us("detected_at")} AS detected_us, {us("last_seen_at")} AS last_seen_us,
       {us("resolved_at")} AS resolved_us
FROM circular_dependency_alerts
WHERE tenant_id = $1 AND ($2 OR status <> 'resolved')
ORDER BY status = 'resolved', detected_at DESC, id
"""


@contextlib.asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """asyncpg errors -> ours: unreachable is retryable, anything else permanent."""
    try:
        yield
    except CONNECTION_ERRORS as error:
        raise RetryableError(f"database unavailable: {error}") from None
    except asyncpg.PostgresError as error:
        log.error("graph_query_failed", sqlstate=getattr(error, "sqlstate", None), error=str(error))
        raise PermanentError(f"graph query failed: {error}") from None


def edge_record(row: Any) -> EdgeRecord:
    """An edge row (with its counters under calls/errors/latency_*) as a record."""
    return EdgeRecord(
        source=row["source"],
        target=row["target"],
        discovery_source=DiscoverySource(row["discovery_source"]),
        communication_mode=row["communication_mode"],
        protocol=row["protocol"],
        confidence=float(row["confidence"]),
        call_count=row["calls"],
        error_count=row["errors"],
        latency=Latency(
            count=row["calls"],
            sum_ms=row["latency_sum_ms"],
            min_ms=row["latency_min_ms"],
            max_ms=row["latency_max_ms"],
            buckets=tuple(row["latency_buckets"]),
        ),
        first_observed_us=row["first_observed_us"],
        last_observed_us=row["last_observed_us"],
        stale=row["is_stale"],
    )


async def get_service(conn: Conn, tenant: str, name: str) -> ServiceRecord | None:
    row = await conn.fetchrow(
        f"SELECT {SERVICE_COLUMNS} FROM services WHERE tenant_id = $1 AND name = $2",
        tenant,
        name,
    )
    return None if row is None else service_record(row)


async def service_graph(
    conn: Conn, tenant: str, start_us: int, end_us: int, limit: int = MAX_GRAPH_EDGES
) -> tuple[list[ServiceRecord], list[EdgeRecord], bool]:
    """Services seen and edges with calls in [start, end) (hour-aligned start), counted
    within it; True when the edges were cut at `limit`."""
    rows = await conn.fetch(GRAPH_EDGES, tenant, start_us, end_us, limit + 1)
    edges = [edge_record(row) for row in rows[:limit]]
    names = sorted({e.source for e in edges} | {e.target for e in edges})
    services = await conn.fetch(GRAPH_SERVICES, tenant, start_us, end_us, names)
    return [service_record(row) for row in services], edges, len(rows) > limit


async def edges_among(
    conn: Conn, tenant: str, names: Sequence[str], include_stale: bool
) -> list[EdgeRecord]:
    """Every edge with both ends in `names`, with its cumulative counters."""
    rows = await conn.fetch(EDGES_AMONG, tenant, list(names), include_stale)
    return [edge_record(row) for row in rows]


async def services_named(conn: Conn, tenant: str, names: Sequence[str]) -> list[ServiceRecord]:
    rows = await conn.fetch(
        f"SELECT {SERVICE_COLUMNS} FROM services WHERE tenant_id = $1 AND name = ANY($2::text[])",
        tenant,
        list(names),
    )
    return [service_record(row) for row in rows]


async def list_cycles(conn: Conn, tenant: str, include_resolved: bool) -> list[CycleAlert]:
    """Cycle alerts: active first, then newest."""
    rows = await conn.fetch(CYCLES, tenant, include_resolved)
    return [
        CycleAlert(
            id=row["id"],
            path=tuple(row["cycle_path"]),
            status=row["status"],
            first_detected_us=row["first_detected_us"],
            detected_us=row["detected_us"],
            last_seen_us=row["last_seen_us"],
            resolved_us=row["resolved_us"],
        )
        for row in rows
    ]


# --------------------------------------------------------------------------- for incidents


async def service_criticality(conn: Conn, tenant: str, service: str) -> Criticality | None:
    """The criticality a person gave the service (None: unset, or unknown service)."""
    value = await conn.fetchval(
        "SELECT criticality FROM services WHERE tenant_id = $1 AND name = $2", tenant, service
    )
    return Criticality(value) if value else None


async def criticalities(conn: Conn, tenant: str, services: Sequence[str]) -> dict[str, Criticality]:
    """The criticality of each of `services` that has one set."""
    rows = await conn.fetch(
        "SELECT name, criticality FROM services "
        "WHERE tenant_id = $1 AND name = ANY($2::text[]) AND criticality IS NOT NULL",
        tenant,
        list(services),
    )
    return {row["name"]: Criticality(row["criticality"]) for row in rows}


async def blast_radius(
    conn: Conn, tenant: str, service: str, max_depth: int = BLAST_RADIUS_DEPTH
) -> list[Reached]:
    """The services that depend on `service`, directly or not (live edges, upstream),
    nearest first; empty for an unknown service."""
    return await traverse(conn, tenant, service, Direction.UPSTREAM, max_depth) or []
