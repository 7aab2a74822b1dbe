"""Service, operation and metric point queries (asyncpg): the SQL of GetServices,
GetOperations and QueryMetrics.

Services and operations are listed with a loose index scan (a recursive CTE that jumps
from one distinct value to the next along an index), so the cost is one index probe per
partition and distinct value, not one per row. The jumps run over the daily partitions
the window touches (whole days, so every entry qualifies and a jump never walks);
each candidate is then checked against the exact window with one more probe.
"""

from __future__ import annotations

import dataclasses

import asyncpg

from receiver.errors import InvalidRequestError
from receiver.query.sql import WhereBuilder, bounds, database_errors, day_bounds
from receiver.query.validation import CatalogQuery, MetricQuery, TimeRange

MAX_METRIC_POINTS = 200_000

# table -> its time column; each has an index (tenant_id, service_name, <time>).
SERVICE_TABLES = {"spans": "start_time", "logs": "time", "metric_points": "time"}

_SERVICES = """
WITH RECURSIVE candidates(name) AS (
    (SELECT service_name FROM {table}
     WHERE tenant_id = $1 AND {time} >= $2 AND {time} < $3 AND service_name > $6
     ORDER BY service_name LIMIT 1)
  UNION ALL
    SELECT (SELECT service_name FROM {table}
            WHERE tenant_id = $1 AND {time} >= $2 AND {time} < $3
              AND service_name > candidates.name
            ORDER BY service_name LIMIT 1)
    FROM candidates WHERE candidates.name IS NOT NULL
)
SELECT name FROM candidates
WHERE name IS NOT NULL AND EXISTS (
    SELECT 1 FROM {table}
    WHERE tenant_id = $1 AND service_name = candidates.name AND {time} >= $4 AND {time} < $5)
LIMIT $7
"""

# Uses the index spans_operations (tenant_id, service_name, name, kind, start_time).
_OPERATIONS = """
WITH RECURSIVE candidates(name, kind) AS (
    (SELECT name, kind FROM spans
     WHERE tenant_id = $1 AND service_name = $2 AND start_time >= $3 AND start_time < $4
       AND (name, kind) > ($7, $8)
     ORDER BY name, kind LIMIT 1)
  UNION ALL
    SELECT next.name, next.kind FROM candidates, LATERAL (
        SELECT name, kind FROM spans
        WHERE tenant_id = $1 AND service_name = $2 AND start_time >= $3 AND start_time < $4
          AND (name, kind) > (candidates.name, candidates.kind)
        ORDER BY name, kind LIMIT 1) AS next
)
SELECT name, kind FROM candidates
WHERE ($9 = 0 OR kind = $9) AND EXISTS (
    SELECT 1 FROM spans
    WHERE tenant_id = $1 AND service_name = $2 AND name = candidates.name
      AND kind = candidates.kind AND start_time >= $5 AND start_time < $6)
LIMIT $10
"""


@dataclasses.dataclass(frozen=True, slots=True)
class MetricKind:
    metric_type: str
    is_monotonic: bool | None
    unit: str


class CatalogStore:
    """Reads services, operations and metric points of one tenant at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def services(self, tenant: str, query: CatalogQuery, after: str) -> list[str]:
        """Up to page_size + 1 service names after `after`, from every signal table."""
        names: set[str] = set()
        async with database_errors(), self._pool.acquire() as connection:
            for table, time in SERVICE_TABLES.items():
                rows = await connection.fetch(
                    _SERVICES.format(table=table, time=time),
                    tenant,
                    *_window_params(query.window),
                    after,
                    query.page_size + 1,
                )
                names.update(row["name"] for row in rows)
        return sorted(names)[: query.page_size + 1]

    async def operations(
        self, tenant: str, query: CatalogQuery, after: tuple[str, int]
    ) -> list[tuple[str, int]]:
        """Up to page_size + 1 (span name, kind) pairs of the service after `after`."""
        async with database_errors(), self._pool.acquire() as connection:
            rows = await connection.fetch(
                _OPERATIONS,
                tenant,
                query.service,
                *_window_params(query.window),
                *after,
                query.span_kind,
                query.page_size + 1,
            )
        return [(row["name"], row["kind"]) for row in rows]

    async def metric_kind(self, tenant: str, query: MetricQuery) -> MetricKind | None:
        """The type of the newest matching point (None when nothing matches)."""
        where = _metric_filters(tenant, query, query.window)
        async with database_errors(), self._pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT metric_type, is_monotonic, metric_unit FROM metric_points "
                f"WHERE {where.sql} ORDER BY time DESC LIMIT 1",
                *where.params,
            )
        return None if row is None else MetricKind(*row)

    async def metric_points(
        self, tenant: str, query: MetricQuery, metric_type: str
    ) -> list[asyncpg.Record]:
        """The matching points of `metric_type`, oldest first, from one step before the
        window (baselines for rates and cumulative histograms)."""
        window = TimeRange(max(0, query.window.start_ns - query.step_ns), query.window.end_ns)
        where = _metric_filters(tenant, query, window)
        where.add("metric_type = {}", metric_type)
        limit = where.param(MAX_METRIC_POINTS + 1)
        async with database_errors(), self._pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT service_name, attributes, resource, scope_name, start_time_unix_nano, "
                "time_unix_nano, aggregation_temporality, value, distribution "
                f"FROM metric_points WHERE {where.sql} ORDER BY time, time_unix_nano "
                f"LIMIT {limit}",
                *where.params,
            )
        if len(rows) > MAX_METRIC_POINTS:
            raise InvalidRequestError(
                "start_time",
                f"the query matches more than {MAX_METRIC_POINTS} points of "
                f"{query.metric_name}: shorten the range or filter by service or attributes",
            )
        return list(rows)


def _window_params(window: TimeRange) -> tuple[object, ...]:
    return (*day_bounds(window), *bounds(window))


def _metric_filters(tenant: str, query: MetricQuery, window: TimeRange) -> WhereBuilder:
    where = WhereBuilder(tenant)
    where.add("metric_name = {}", query.metric_name)
    where.window(window, "time", "time_unix_nano")
    if query.service is not None:
        where.add("service_name = {}", query.service)
    where.attributes(query.attributes, "attributes", "resource")
    return where
