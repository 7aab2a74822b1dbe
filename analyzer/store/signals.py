"""Reading signals: a trace's spans and error logs, and the sweeper's searches for error
signals that belong to no incident."""

from __future__ import annotations

import asyncpg
import orjson

from analyzer.origin import LogRecord, SpanRecord
from analyzer.store.common import Conn
from analyzer.store.common import ts as _ts
from analyzer.store.common import us as _us

# --------------------------------------------------------------------------- signals


async def load_trace(
    conn: Conn, tenant: str, trace_id: bytes, limit: int
) -> tuple[list[SpanRecord], list[LogRecord]]:
    """A trace's spans (up to `limit`) and its error logs."""
    spans = await conn.fetch(
        """
        SELECT uuid_send(signal_id) AS signal_id, span_id, parent_span_id, service_name, name,
               kind, status_code, status_message, start_time_unix_nano,
               events::text AS events, attributes::text AS attributes
        FROM spans WHERE tenant_id = $1 AND trace_id = $2
        ORDER BY start_time_unix_nano LIMIT $3
        """,
        tenant,
        trace_id,
        limit,
    )
    logs = await conn.fetch(
        f"""
        SELECT {_LOG_FIELDS} FROM logs
        WHERE tenant_id = $1 AND trace_id = $2 AND severity_number >= 17
        ORDER BY time_unix_nano LIMIT $3
        """,
        tenant,
        trace_id,
        limit,
    )
    return [_span(r) for r in spans], [_log(r) for r in logs]


_LOG_FIELDS = """
    uuid_send(signal_id) AS signal_id, trace_id, service_name, scope_name,
    coalesce(nullif(time_unix_nano, 0), observed_time_unix_nano) AS time_unix_nano,
    severity_number, severity_text, body::text AS body, attributes::text AS attributes
"""


async def load_unassigned_traceless_logs(
    conn: Conn, tenant: str, since_us: int, limit: int
) -> list[LogRecord]:
    """Error logs without a trace that no incident holds yet."""
    rows = await conn.fetch(
        f"""
        SELECT {_LOG_FIELDS} FROM logs l
        WHERE l.tenant_id = $1 AND l.severity_number >= 17 AND l.trace_id IS NULL
          AND l.time >= {_ts(2)}
          AND NOT EXISTS (SELECT 1 FROM incident_occurrences o
                          WHERE o.tenant_id = l.tenant_id
                            AND o.occurrence_key = uuid_send(l.signal_id))
        ORDER BY l.time LIMIT $3
        """,
        tenant,
        since_us,
        limit,
    )
    return [_log(r) for r in rows]


def _span(r: asyncpg.Record) -> SpanRecord:
    return SpanRecord(
        signal_id=r["signal_id"],
        span_id=r["span_id"],
        parent_span_id=r["parent_span_id"],
        service_name=r["service_name"],
        name=r["name"],
        kind=r["kind"],
        status_code=r["status_code"],
        status_message=r["status_message"],
        start_unix_nano=r["start_time_unix_nano"],
        events=orjson.loads(r["events"]),
        attributes=orjson.loads(r["attributes"]),
    )


def _log(r: asyncpg.Record) -> LogRecord:
    return LogRecord(
        signal_id=r["signal_id"],
        trace_id=r["trace_id"],
        service_name=r["service_name"],
        scope_name=r["scope_name"],
        time_unix_nano=r["time_unix_nano"],
        severity_number=r["severity_number"],
        severity_text=r["severity_text"],
        body=orjson.loads(r["body"]),
        attributes=orjson.loads(r["attributes"]),
    )


# --------------------------------------------------------------------------- sweeping

SWEEP_LOCK_KEY = 0x70726F6473656E74  # "prodsent": one sweeper at a time, whatever the workers


async def try_lock_sweep(conn: Conn) -> bool:
    """Take the sweeper's transaction-scoped advisory lock, or return False at once."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK_KEY))


async def sweep_watermark(conn: Conn, first_us: int) -> int:
    """Up to where earlier sweeps have looked (`first_us` the very first time)."""
    await conn.execute(
        f"INSERT INTO incident_sweeps (id, swept_until) VALUES (1, {_ts(1)}) ON CONFLICT DO NOTHING",
        first_us,
    )
    value = await conn.fetchval(f"SELECT {_us('swept_until')} FROM incident_sweeps WHERE id = 1")
    return int(value)


async def advance_sweep(conn: Conn, until_us: int) -> None:
    await conn.execute(
        f"UPDATE incident_sweeps SET swept_until = greatest(swept_until, {_ts(1)}) WHERE id = 1",
        until_us,
    )


async def unassigned_error_traces(
    conn: Conn, lower_us: int, upper_us: int, limit: int
) -> list[tuple[str, bytes]]:
    """Traces with an error signal in [lower, upper) that belong to no incident, oldest first."""
    rows = await conn.fetch(
        f"""
        SELECT tenant_id, trace_id, min(at) AS first_at FROM (
            SELECT tenant_id, trace_id, start_time AS at FROM spans
            WHERE prodsentinel_span_is_error(status_code, kind, events, attributes)
              AND start_time >= {_ts(1)} AND start_time < {_ts(2)}
            UNION ALL
            SELECT tenant_id, trace_id, time AS at FROM logs
            WHERE severity_number >= 17 AND trace_id IS NOT NULL
              AND time >= {_ts(1)} AND time < {_ts(2)}
        ) errors
        WHERE NOT EXISTS (SELECT 1 FROM incident_occurrences o
                          WHERE o.tenant_id = errors.tenant_id
                            AND o.occurrence_key = errors.trace_id)
        GROUP BY tenant_id, trace_id
        ORDER BY first_at LIMIT $3
        """,
        lower_us,
        upper_us,
        limit,
    )
    return [(r["tenant_id"], r["trace_id"]) for r in rows]


async def unassigned_traceless_logs(
    conn: Conn, lower_us: int, upper_us: int, limit: int
) -> list[tuple[str, LogRecord]]:
    """Error logs without a trace in [lower, upper) that belong to no incident."""
    rows = await conn.fetch(
        f"""
        SELECT tenant_id, {_LOG_FIELDS} FROM logs l
        WHERE severity_number >= 17 AND trace_id IS NULL
          AND time >= {_ts(1)} AND time < {_ts(2)}
          AND NOT EXISTS (SELECT 1 FROM incident_occurrences o
                          WHERE o.tenant_id = l.tenant_id
                            AND o.occurrence_key = uuid_send(l.signal_id))
        ORDER BY time LIMIT $3
        """,
        lower_us,
        upper_us,
        limit,
    )
    return [(r["tenant_id"], _log(r)) for r in rows]
