"""Edges from stored spans: one SQL aggregation over a window of span end times.

A call is counted once, in the run whose window holds the end time of the span that
identifies it:

- trace edges: a span whose parent (looked up in the same trace, whichever request or
  receiver stored it) is in another service: parent service -> span's service. Async
  when the parent is a PRODUCER or the child a CONSUMER. Latency is the caller's CLIENT
  span when there is one, else the callee's span. An error on either side is an error.
- peer edges: a CLIENT or PRODUCER span with no child in another service (the callee is
  not instrumented) naming its peer: `peer.service`, else `db.system(.name)` (a database
  node, `system@server.address`), else `messaging.system` (a broker node), else
  `server.address` / `net.peer.name` (an external host).

Windows are consecutive ([watermark, hi)) and the watermark moves in the same transaction
as the counts, so re-running never counts a call twice; counts are added with upserts
keyed per (tenant, source, target, discovery source). Because windows are on end times
and `hi` trails the database clock by `settle_seconds`, both spans of a call are stored
before its window is read however long the call took: only spans exported later than
`settle_seconds` after they ended are missed.
"""

from __future__ import annotations

import dataclasses

from analyzer.graph.config import GraphConfig
from analyzer.graph.model import CONFIDENCE, LATENCY_BUCKETS, Conn, ts, us

SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5
STATUS_ERROR = 2
SECOND_US = 1_000_000
WATERMARK_LOCK = 0x70726F6467726170  # pg advisory lock key: one upkeep at a time


def attr(column: str, key: str) -> str:
    """SQL: a non-empty string attribute, else NULL (other JSON types are not names)."""
    return (
        f"(CASE WHEN jsonb_typeof({column} -> '{key}') = 'string' "
        f"THEN nullif({column} ->> '{key}', '') END)"
    )


def protocol_sql(attributes: str) -> str:
    """SQL: the protocol a span's attributes show (semantic conventions), else NULL."""
    return f"""(CASE
        WHEN {attributes} ?| ARRAY['db.system', 'db.system.name'] THEN 'db'
        WHEN {attributes} ? 'messaging.system' THEN 'messaging'
        WHEN {attributes} ->> 'rpc.system' = 'grpc' THEN 'grpc'
        WHEN {attributes} ?| ARRAY['http.request.method', 'http.method', 'url.full',
                                    'http.url', 'http.route'] THEN 'http'
    END)"""


def _confidence_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{source}' THEN {value}" for source, value in CONFIDENCE.items())
    return f"(CASE {column} {cases} END)"


def _histogram_sql(latency: str) -> str:
    counts = ", ".join(f"count(*) FILTER (WHERE {latency} = {i})" for i in range(LATENCY_BUCKETS))
    return f"ARRAY[{counts}]::bigint[]"


# $1, $2: window [lo, hi) of span end times (µs); $3 latency bounds (ms);
# $4 pair lookback, $5 clock skew, $6 longest span (µs).
CALLS = f"""
CREATE TEMP TABLE graph_calls ON COMMIT DROP AS
WITH recent AS MATERIALIZED (
    SELECT tenant_id, trace_id, span_id, parent_span_id, service_name, kind, status_code,
           start_time, end_time, attributes,
           (end_time_unix_nano - start_time_unix_nano) / 1e6 AS latency_ms
    FROM spans
    WHERE end_time >= {ts("$1")} AND end_time < {ts("$2")}
      AND start_time >= {ts("$1")} - $6 * interval '1 microsecond' AND start_time < {ts("$2")}
),
pairs AS (
    SELECT c.tenant_id, p.service_name AS source, c.service_name AS target,
           'service' AS target_kind, true AS target_instrumented, 'trace' AS discovery,
           CASE WHEN p.kind = {SPAN_KIND_PRODUCER} OR c.kind = {SPAN_KIND_CONSUMER}
                THEN 'async' ELSE 'sync' END AS mode,
           coalesce({protocol_sql("p.attributes")}, {protocol_sql("c.attributes")}, 'other')
               AS protocol,
           (p.status_code = {STATUS_ERROR} OR c.status_code = {STATUS_ERROR}) AS failed,
           CASE WHEN p.kind = {SPAN_KIND_CLIENT} THEN p.latency_ms ELSE c.latency_ms END
               AS latency_ms,
           c.end_time AS observed
    FROM recent c
    CROSS JOIN LATERAL (
        SELECT s.service_name, s.kind, s.status_code, s.attributes,
               (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6 AS latency_ms
        FROM spans s
        WHERE s.tenant_id = c.tenant_id AND s.trace_id = c.trace_id
          AND s.span_id = c.parent_span_id
          AND s.start_time >= c.start_time - $4 * interval '1 microsecond'
          AND s.start_time <= c.start_time + $5 * interval '1 microsecond'
        LIMIT 1
    ) p
    WHERE c.parent_span_id IS NOT NULL AND p.service_name <> c.service_name
),
callers AS (
    SELECT s.*,
           {attr("s.attributes", "peer.service")} AS peer,
           coalesce({attr("s.attributes", "db.system.name")},
                    {attr("s.attributes", "db.system")}) AS db,
           {attr("s.attributes", "messaging.system")} AS messaging,
           coalesce({attr("s.attributes", "server.address")},
                    {attr("s.attributes", "net.peer.name")}) AS address
    FROM recent s
    WHERE s.kind IN ({SPAN_KIND_CLIENT}, {SPAN_KIND_PRODUCER})
      AND NOT EXISTS (
        SELECT 1 FROM spans c
        WHERE c.tenant_id = s.tenant_id AND c.trace_id = s.trace_id
          AND c.parent_span_id = s.span_id AND c.service_name <> s.service_name
          AND c.start_time >= s.start_time - $5 * interval '1 microsecond'
          AND c.start_time <= s.end_time + $5 * interval '1 microsecond'
      )
),
peers AS (
    SELECT tenant_id, service_name AS source,
           CASE WHEN peer IS NOT NULL THEN peer
                WHEN db IS NOT NULL THEN db || coalesce('@' || address, '')
                WHEN messaging IS NOT NULL THEN messaging || coalesce('@' || address, '')
                ELSE address END AS target,
           CASE WHEN db IS NOT NULL THEN 'database'
                WHEN messaging IS NOT NULL THEN 'messaging'
                WHEN peer IS NOT NULL THEN 'service'
                ELSE 'external' END AS target_kind,
           false AS target_instrumented,
           CASE WHEN peer IS NOT NULL THEN 'peer_service'
                WHEN db IS NOT NULL THEN 'db_system'
                WHEN messaging IS NOT NULL THEN 'messaging_system'
                ELSE 'server_address' END AS discovery,
           CASE WHEN kind = {SPAN_KIND_PRODUCER} THEN 'async' ELSE 'sync' END AS mode,
           coalesce({protocol_sql("attributes")}, 'other') AS protocol,
           status_code = {STATUS_ERROR} AS failed, latency_ms, end_time AS observed
    FROM callers
    WHERE coalesce(peer, db, messaging, address) IS NOT NULL
),
calls AS (
    SELECT *, width_bucket(latency_ms, $3::float8[]) AS latency_bucket
    FROM (SELECT * FROM pairs UNION ALL SELECT * FROM peers) u
    WHERE source <> target
)
SELECT tenant_id, source, target, discovery,
       date_trunc('hour', observed, 'UTC') AS bucket,
       mode() WITHIN GROUP (ORDER BY target_kind) AS target_kind,
       bool_or(target_instrumented) AS target_instrumented,
       mode() WITHIN GROUP (ORDER BY mode) AS mode,
       mode() WITHIN GROUP (ORDER BY protocol) AS protocol,
       count(*) AS calls,
       count(*) FILTER (WHERE failed) AS errors,
       sum(latency_ms) AS latency_sum_ms,
       min(latency_ms) AS latency_min_ms,
       max(latency_ms) AS latency_max_ms,
       {_histogram_sql("latency_bucket")} AS latency_buckets,
       min(observed) AS first_observed,
       max(observed) AS last_observed
FROM calls
GROUP BY GROUPING SETS ((tenant_id, source, target, discovery, date_trunc('hour', observed, 'UTC')),
                        (tenant_id, source, target, discovery))
"""

_MERGE_BUCKETS = (
    "ARRAY(SELECT a + b FROM unnest({old}.latency_buckets, excluded.latency_buckets)"
    " WITH ORDINALITY AS u(a, b, i) ORDER BY i)"
)

# Edge totals: the rows of graph_calls without an hour (the second grouping set).
UPSERT_EDGES = f"""
INSERT INTO service_dependencies AS d (
    tenant_id, source_id, target_id, discovery_source, communication_mode, protocol,
    confidence, call_count, error_count, latency_sum_ms, latency_min_ms, latency_max_ms,
    latency_buckets, first_observed_at, last_observed_at)
SELECT g.tenant_id, src.id, dst.id, g.discovery, g.mode, g.protocol,
       {_confidence_sql("g.discovery")}, g.calls, g.errors, g.latency_sum_ms,
       g.latency_min_ms, g.latency_max_ms, g.latency_buckets, g.first_observed, g.last_observed
FROM graph_calls g
JOIN services src ON src.tenant_id = g.tenant_id AND src.name = g.source
JOIN services dst ON dst.tenant_id = g.tenant_id AND dst.name = g.target
WHERE g.bucket IS NULL
ON CONFLICT (tenant_id, source_id, target_id, discovery_source) DO UPDATE SET
    communication_mode = excluded.communication_mode,
    protocol = excluded.protocol,
    confidence = excluded.confidence,
    call_count = d.call_count + excluded.call_count,
    error_count = d.error_count + excluded.error_count,
    latency_sum_ms = d.latency_sum_ms + excluded.latency_sum_ms,
    latency_min_ms = least(d.latency_min_ms, excluded.latency_min_ms),
    latency_max_ms = greatest(d.latency_max_ms, excluded.latency_max_ms),
    latency_buckets = {_MERGE_BUCKETS.format(old="d")},
    first_observed_at = least(d.first_observed_at, excluded.first_observed_at),
    last_observed_at = greatest(d.last_observed_at, excluded.last_observed_at)
RETURNING tenant_id
"""

UPSERT_STATS = f"""
INSERT INTO service_dependency_stats AS st (
    edge_id, bucket, call_count, error_count, latency_sum_ms, latency_min_ms,
    latency_max_ms, latency_buckets)
SELECT d.id, g.bucket, g.calls, g.errors, g.latency_sum_ms, g.latency_min_ms,
       g.latency_max_ms, g.latency_buckets
FROM graph_calls g
JOIN services src ON src.tenant_id = g.tenant_id AND src.name = g.source
JOIN services dst ON dst.tenant_id = g.tenant_id AND dst.name = g.target
JOIN service_dependencies d ON d.tenant_id = g.tenant_id AND d.source_id = src.id
    AND d.target_id = dst.id AND d.discovery_source = g.discovery
WHERE g.bucket IS NOT NULL
ON CONFLICT (edge_id, bucket) DO UPDATE SET
    call_count = st.call_count + excluded.call_count,
    error_count = st.error_count + excluded.error_count,
    latency_sum_ms = st.latency_sum_ms + excluded.latency_sum_ms,
    latency_min_ms = least(st.latency_min_ms, excluded.latency_min_ms),
    latency_max_ms = greatest(st.latency_max_ms, excluded.latency_max_ms),
    latency_buckets = {_MERGE_BUCKETS.format(old="st")}
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """The span end times one run reads: [start_us, end_us); `behind` if more remain."""

    start_us: int
    end_us: int
    behind: bool

    @property
    def empty(self) -> bool:
        return self.end_us <= self.start_us


def plan_window(
    watermark_us: int | None, now_us: int, database_now_us: int, config: GraphConfig
) -> Window:
    """Where this run reads: from the watermark (or the initial lookback) to the settled
    present, never past the database's own clock, at most `max_window_seconds`."""
    end = min(now_us, database_now_us) - round(config.settle_seconds * SECOND_US)
    start = (
        watermark_us
        if watermark_us is not None
        else end - round(config.initial_lookback_seconds * SECOND_US)
    )
    limit = start + round(config.max_window_seconds * SECOND_US)
    if end > limit:
        return Window(start, limit, behind=True)
    return Window(start, max(start, end), behind=False)


async def lock_upkeep(conn: Conn) -> bool:
    """Take the upkeep's transaction-scoped lock; False when another run holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", WATERMARK_LOCK))


async def read_watermark(conn: Conn) -> tuple[int | None, int]:
    """(watermark or None before the first run, the database's clock), both in µs."""
    row = await conn.fetchrow(
        f"SELECT (SELECT {us('processed_until')} FROM service_graph_watermark) AS watermark, "
        f"{us('clock_timestamp()')} AS now"
    )
    assert row is not None
    return row["watermark"], row["now"]


async def write_watermark(conn: Conn, end_us: int) -> None:
    await conn.execute(
        f"INSERT INTO service_graph_watermark (processed_until) VALUES ({ts('$1')}) "
        "ON CONFLICT (singleton) DO UPDATE SET processed_until = "
        "greatest(service_graph_watermark.processed_until, excluded.processed_until)",
        end_us,
    )


async def collect_calls(
    conn: Conn, window: Window, config: GraphConfig, bounds: list[float]
) -> int:
    """Aggregate the window's calls into the transaction's temp table `graph_calls`;
    return how many calls it holds."""
    await conn.execute(
        CALLS,
        window.start_us,
        window.end_us,
        bounds,
        round(config.pair_lookback_seconds * SECOND_US),
        round(config.clock_skew_seconds * SECOND_US),
        round(config.max_span_seconds * SECOND_US),
    )
    calls = await conn.fetchval(
        "SELECT coalesce(sum(calls), 0) FROM graph_calls WHERE bucket IS NULL"
    )
    return int(calls)


async def upsert_edges(conn: Conn) -> tuple[int, set[str]]:
    """Add `graph_calls` to the edges and their hourly stats; return (edges upserted,
    tenants whose edges were touched: their cycle alerts are synced in the same run)."""
    rows = await conn.fetch(UPSERT_EDGES)
    await conn.execute(UPSERT_STATS)
    return len(rows), {row["tenant_id"] for row in rows}
