"""Incidents, occurrences and events: grouping writes (race-free through unique keys and
row locks) and the reads behind the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg

from analyzer.lifecycle import (
    EventKind,
    IncidentEvent,
    IncidentSeverity,
    IncidentState,
    IncidentStatus,
)
from analyzer.origin import Analysis
from analyzer.store.common import Conn
from analyzer.store.common import ts as _ts
from analyzer.store.common import us as _us

INCIDENT_COLUMNS = f"""
    id, tenant_id, fingerprint, title, exception_type, message_template, service_name,
    operation, status, severity, occurrence_count, {_us("first_seen")} AS first_seen_us,
    {_us("last_seen")} AS last_seen_us, {_us("last_recorded")} AS last_recorded_us, services,
    sample_trace_ids, acknowledged_by, {_us("acknowledged_at")} AS acknowledged_at_us,
    resolved_by, {_us("resolved_at")} AS resolved_at_us, resolution_note,
    {_us("created_at")} AS created_at_us, {_us("updated_at")} AS updated_at_us
"""


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentRow:
    """An incident as stored: what it is (fixed at creation) and its lifecycle state."""

    id: int
    tenant_id: str
    fingerprint: str
    title: str
    exception_type: str
    message_template: str
    service_name: str
    operation: str
    state: IncidentState
    created_at_us: int
    updated_at_us: int


@dataclasses.dataclass(frozen=True, slots=True)
class OccurrenceRow:
    trace_id: bytes | None
    origin_kind: str
    origin_signal_id: bytes
    origin_span_id: bytes | None
    service_name: str
    operation: str
    services: tuple[str, ...]
    error_count: int
    severity: IncidentSeverity
    occurred_at_us: int
    recorded_at_us: int


def _incident(record: asyncpg.Record) -> IncidentRow:
    state = IncidentState(
        status=IncidentStatus(record["status"]),
        severity=IncidentSeverity(record["severity"]),
        occurrence_count=record["occurrence_count"],
        first_seen_us=record["first_seen_us"],
        last_seen_us=record["last_seen_us"],
        last_recorded_us=record["last_recorded_us"],
        services=tuple(record["services"]),
        sample_trace_ids=tuple(record["sample_trace_ids"]),
        acknowledged_by=record["acknowledged_by"],
        acknowledged_at_us=record["acknowledged_at_us"],
        resolved_by=record["resolved_by"],
        resolved_at_us=record["resolved_at_us"],
        resolution_note=record["resolution_note"],
    )
    return IncidentRow(
        id=record["id"],
        tenant_id=record["tenant_id"],
        fingerprint=record["fingerprint"],
        title=record["title"],
        exception_type=record["exception_type"],
        message_template=record["message_template"],
        service_name=record["service_name"],
        operation=record["operation"],
        state=state,
        created_at_us=record["created_at_us"],
        updated_at_us=record["updated_at_us"],
    )


# --------------------------------------------------------------------------- grouping


async def occurrence_exists(conn: Conn, tenant: str, key: bytes) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM incident_occurrences WHERE tenant_id = $1 AND occurrence_key = $2",
        tenant,
        key,
    )
    return found is not None


async def upsert_incident(
    conn: Conn, tenant: str, analysis: Analysis, now_us: int
) -> tuple[IncidentRow, bool]:
    """The incident for the analysis' fingerprint, row-locked until commit; True if just created.

    A new row is a placeholder (no occurrence yet) that the caller completes in the same
    transaction. ON CONFLICT DO UPDATE both finds and locks an existing row, so concurrent
    workers adding to one incident take turns.
    """
    record = await conn.fetchrow(
        f"""
        INSERT INTO incidents AS i (tenant_id, fingerprint, title, exception_type,
            message_template, service_name, operation, status, severity, occurrence_count,
            first_seen, last_seen, last_recorded)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, 0, {_ts(9)}, {_ts(9)}, {_ts(10)})
        ON CONFLICT (tenant_id, fingerprint) DO UPDATE SET updated_at = i.updated_at
        RETURNING {INCIDENT_COLUMNS}, (xmax = 0) AS created
        """,
        tenant,
        analysis.fingerprint,
        analysis.title,
        analysis.exception_type,
        analysis.message_template,
        analysis.service_name,
        analysis.operation,
        analysis.severity.value,
        analysis.occurred_at_us,
        now_us,
    )
    assert record is not None
    return _incident(record), bool(record["created"])


async def insert_occurrence(
    conn: Conn, tenant: str, incident_id: int, analysis: Analysis, severity: IncidentSeverity
) -> bool:
    """Record the occurrence; False when its trace (or log) already belongs to an incident."""
    inserted = await conn.fetchval(
        f"""
        INSERT INTO incident_occurrences (tenant_id, incident_id, occurrence_key, trace_id,
            origin_kind, origin_signal_id, origin_span_id, service_name, operation, services,
            error_count, severity, occurred_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, {_ts(13)})
        ON CONFLICT (tenant_id, occurrence_key) DO NOTHING
        RETURNING id
        """,
        tenant,
        incident_id,
        analysis.occurrence_key,
        analysis.trace_id,
        analysis.origin_kind,
        analysis.origin_signal_id,
        analysis.origin_span_id,
        analysis.service_name,
        analysis.operation,
        list(analysis.services),
        analysis.error_count,
        severity.value,
        analysis.occurred_at_us,
    )
    return inserted is not None


async def recent_counts(
    conn: Conn, incident_id: int, now_us: int, window_seconds: float
) -> tuple[int, int]:
    """(occurrences in the last window, occurrences in the hour before it), by record time."""
    window_us = int(window_seconds * 1_000_000)
    record = await conn.fetchrow(
        f"""
        SELECT count(*) FILTER (WHERE recorded_at >= {_ts(2)}) AS recent,
               count(*) FILTER (WHERE recorded_at < {_ts(2)}) AS before
        FROM incident_occurrences
        WHERE incident_id = $1 AND recorded_at >= {_ts(3)}
        """,
        incident_id,
        now_us - window_us,
        now_us - window_us - 3_600_000_000,
    )
    assert record is not None
    return int(record["recent"]), int(record["before"])


async def save_state(conn: Conn, incident_id: int, state: IncidentState) -> None:
    await conn.execute(
        f"""
        UPDATE incidents SET status = $2, severity = $3, occurrence_count = $4,
            first_seen = {_ts(5)}, last_seen = {_ts(6)}, last_recorded = {_ts(7)},
            services = $8, sample_trace_ids = $9,
            acknowledged_by = $10, acknowledged_at = {_ts(11)},
            resolved_by = $12, resolved_at = {_ts(13)}, resolution_note = $14,
            updated_at = clock_timestamp()
        WHERE id = $1
        """,
        incident_id,
        state.status.value,
        state.severity.value,
        state.occurrence_count,
        state.first_seen_us,
        state.last_seen_us,
        state.last_recorded_us,
        list(state.services),
        list(state.sample_trace_ids),
        state.acknowledged_by,
        state.acknowledged_at_us,
        state.resolved_by,
        state.resolved_at_us,
        state.resolution_note,
    )


async def insert_events(
    conn: Conn, tenant: str, incident_id: int, events: Sequence[IncidentEvent]
) -> None:
    if not events:
        return
    await conn.executemany(
        f"""
        INSERT INTO incident_events (tenant_id, incident_id, kind, from_value, to_value, reason,
            actor, note, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {_ts(9)})
        """,
        [
            (
                tenant,
                incident_id,
                e.kind.value,
                e.from_value,
                e.to_value,
                e.reason,
                e.actor,
                e.note,
                e.at_us,
            )
            for e in events
        ],
    )


# --------------------------------------------------------------------------- reading


async def lock_incident(conn: Conn, tenant: str, incident_id: int) -> IncidentRow | None:
    record = await conn.fetchrow(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
        tenant,
        incident_id,
    )
    return None if record is None else _incident(record)


async def get_incident(conn: Conn, tenant: str, incident_id: int) -> IncidentRow | None:
    record = await conn.fetchrow(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE tenant_id = $1 AND id = $2",
        tenant,
        incident_id,
    )
    return None if record is None else _incident(record)


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentFilter:
    statuses: tuple[IncidentStatus, ...] = ()
    severities: tuple[IncidentSeverity, ...] = ()
    service: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    after: tuple[int, int] | None = None  # keyset: (last_seen_us, id) of the previous page's end


async def list_incidents(
    conn: Conn, tenant: str, where: IncidentFilter, limit: int
) -> list[IncidentRow]:
    """Incidents, most recently seen first, filtered; keyset-paginated."""
    clauses = ["tenant_id = $1"]
    args: list[Any] = [tenant]

    def arg(value: Any) -> int:
        args.append(value)
        return len(args)

    if where.statuses:
        clauses.append(f"status = ANY(${arg([s.value for s in where.statuses])}::text[])")
    if where.severities:
        clauses.append(f"severity = ANY(${arg([s.value for s in where.severities])}::text[])")
    if where.service:
        n = arg(where.service)
        clauses.append(f"(service_name = ${n} OR ${n} = ANY(services))")
    if where.since_us is not None:
        clauses.append(f"last_seen >= {_ts(arg(where.since_us))}")
    if where.until_us is not None:
        clauses.append(f"first_seen < {_ts(arg(where.until_us))}")
    if where.after is not None:
        seen, last_id = where.after
        clauses.append(f"(last_seen, id) < ({_ts(arg(seen))}, ${arg(last_id)}::bigint)")
    rows = await conn.fetch(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {' AND '.join(clauses)} "
        f"ORDER BY last_seen DESC, id DESC LIMIT ${arg(limit)}",
        *args,
    )
    return [_incident(r) for r in rows]


async def list_occurrences(
    conn: Conn, tenant: str, incident_id: int, limit: int
) -> list[OccurrenceRow]:
    rows = await conn.fetch(
        f"""
        SELECT trace_id, origin_kind, origin_signal_id, origin_span_id, service_name, operation,
               services, error_count, severity, {_us("occurred_at")} AS occurred_at_us,
               {_us("recorded_at")} AS recorded_at_us
        FROM incident_occurrences WHERE tenant_id = $1 AND incident_id = $2
        ORDER BY recorded_at DESC, id DESC LIMIT $3
        """,
        tenant,
        incident_id,
        limit,
    )
    return [
        OccurrenceRow(
            trace_id=r["trace_id"],
            origin_kind=r["origin_kind"],
            origin_signal_id=r["origin_signal_id"],
            origin_span_id=r["origin_span_id"],
            service_name=r["service_name"],
            operation=r["operation"],
            services=tuple(r["services"]),
            error_count=r["error_count"],
            severity=IncidentSeverity(r["severity"]),
            occurred_at_us=r["occurred_at_us"],
            recorded_at_us=r["recorded_at_us"],
        )
        for r in rows
    ]


async def list_events(conn: Conn, tenant: str, incident_id: int, limit: int) -> list[IncidentEvent]:
    rows = await conn.fetch(
        f"""
        SELECT kind, from_value, to_value, reason, actor, note, {_us("at")} AS at_us
        FROM incident_events WHERE tenant_id = $1 AND incident_id = $2
        ORDER BY at, id LIMIT $3
        """,
        tenant,
        incident_id,
        limit,
    )
    return [
        IncidentEvent(
            EventKind(r["kind"]),
            r["from_value"],
            r["to_value"],
            r["reason"],
            r["actor"],
            r["at_us"],
            r["note"],
        )
        for r in rows
    ]


async def quiet_incidents(conn: Conn, before_us: int, limit: int) -> list[tuple[str, int]]:
    """Active incidents with no occurrence recorded since `before_us`."""
    rows = await conn.fetch(
        f"""
        SELECT tenant_id, id FROM incidents
        WHERE status <> 'resolved' AND last_recorded < {_ts(1)}
        ORDER BY last_recorded LIMIT $2
        """,
        before_us,
        limit,
    )
    return [(r["tenant_id"], r["id"]) for r in rows]
