"""Grouping end to end: receiver -> trigger -> Redis -> real Dramatiq worker -> incidents."""

from __future__ import annotations

import os
import uuid

import asyncpg
from analyzer_fixtures import *  # noqa: F403 - the fixtures
from analyzer_fixtures import (
    TriggerFactory,
    WorkerFactory,
    error_log_request,
    error_span,
    eventually,
    export_logs,
    export_spans,
    trace_request,
)

from analyzer.actions import resolve_incident
from receiver.app import Receiver


async def occurrences_of(db: asyncpg.Connection, tenant: str) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM incident_occurrences WHERE tenant_id = $1", tenant)
    )


async def test_same_exception_in_20_traces_is_one_incident_with_20_occurrences(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given 20 traces failing with the same exception whose messages differ only in ids and
    numbers, when they are exported, then they form one incident with 20 occurrences."""
    await attach_trigger(receiver)
    await start_worker()
    for n in range(20):
        message = f"order {n * 7919} of user {uuid.uuid4()} failed after {n}.5 s at 0x{n + 4096:x}"
        span = error_span(os.urandom(16), exception_type="PaymentDeclined", message=message)
        await export_spans(receiver.port or 0, tenant, trace_request("payments", [span]))

    async def twenty() -> bool:
        return await occurrences_of(db, tenant) == 20

    await eventually(twenty)
    incidents = await db.fetch(
        "SELECT id, occurrence_count, status, title FROM incidents WHERE tenant_id = $1", tenant
    )
    assert len(incidents) == 1
    assert incidents[0]["occurrence_count"] == 20
    assert incidents[0]["status"] == "open"
    assert incidents[0]["title"] == (
        "PaymentDeclined: order <int> of user <uuid> failed after <float> s at <hex>"
    )


async def test_different_exceptions_are_different_incidents(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given traces failing with three different exceptions (two traces each), then there are
    three incidents of two occurrences each."""
    await attach_trigger(receiver)
    await start_worker()
    kinds = [
        ("KeyError", "'sku'"),
        ("TimeoutError", "upstream timed out"),
        ("ValueError", "bad amount"),
    ]
    for exception_type, message in kinds * 2:
        span = error_span(os.urandom(16), exception_type=exception_type, message=message)
        await export_spans(receiver.port or 0, tenant, trace_request("checkout", [span]))

    async def six() -> bool:
        return await occurrences_of(db, tenant) == 6

    await eventually(six)
    rows = await db.fetch(
        "SELECT exception_type, occurrence_count FROM incidents WHERE tenant_id = $1 ORDER BY 1",
        tenant,
    )
    assert [(r["exception_type"], r["occurrence_count"]) for r in rows] == [
        ("KeyError", 2),
        ("TimeoutError", 2),
        ("ValueError", 2),
    ]


async def test_recurrence_after_resolve_regresses_the_incident(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given a resolved incident, when the same error happens in a new trace, then the same
    incident is reopened as regressed and the history records resolve then regress."""
    await attach_trigger(receiver)
    await start_worker()
    span = error_span(
        os.urandom(16), exception_type="DiskFull", message="no space left: 512 bytes free"
    )
    await export_spans(receiver.port or 0, tenant, trace_request("storage", [span]))

    async def incident_id() -> int | None:
        value = await db.fetchval("SELECT id FROM incidents WHERE tenant_id = $1", tenant)
        return None if value is None else int(value)

    first = await eventually(incident_id)
    await resolve_incident(db, tenant, first, "alice", "freed space")
    again = error_span(
        os.urandom(16), exception_type="DiskFull", message="no space left: 0 bytes free"
    )
    await export_spans(receiver.port or 0, tenant, trace_request("storage", [again]))

    async def regressed() -> bool:
        status = await db.fetchval("SELECT status FROM incidents WHERE id = $1", first)
        return bool(status == "regressed")

    await eventually(regressed)
    assert await db.fetchval("SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant) == 1
    history = await db.fetch(
        "SELECT from_value, to_value, actor FROM incident_events "
        "WHERE incident_id = $1 AND kind = 'status' ORDER BY at, id",
        first,
    )
    assert [(h["from_value"], h["to_value"], h["actor"]) for h in history] == [
        (None, "open", "system"),
        ("open", "resolved", "alice"),
        ("resolved", "regressed", "system"),
    ]
    row = await db.fetchrow(
        "SELECT occurrence_count, resolved_by FROM incidents WHERE id = $1", first
    )
    assert row is not None
    assert (row["occurrence_count"], row["resolved_by"]) == (2, None)


async def test_error_logs_without_a_trace_group_by_fingerprint(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given error logs without a trace, five of one message shape and two of another, then
    they form two incidents (each log an occurrence), and an INFO log forms none."""
    await attach_trigger(receiver)
    await start_worker()
    for n in range(5):
        await export_logs(
            receiver.port or 0, tenant, error_log_request("billing", f"invoice {n} not found")
        )
    for n in range(2):
        await export_logs(
            receiver.port or 0, tenant, error_log_request("billing", f"card {n}234 expired")
        )
    await export_logs(
        receiver.port or 0, tenant, error_log_request("billing", "all fine", severity=9)
    )

    async def seven() -> bool:
        return await occurrences_of(db, tenant) == 7

    await eventually(seven)
    rows = await db.fetch(
        "SELECT message_template, occurrence_count FROM incidents WHERE tenant_id = $1 ORDER BY 1",
        tenant,
    )
    assert [(r["message_template"], r["occurrence_count"]) for r in rows] == [
        ("card <int> expired", 2),
        ("invoice <int> not found", 5),
    ]


async def test_critical_service_in_the_catalog_escalates_severity(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given the service catalog marks `ledger` critical, when the same kind of entry-span error
    happens in `ledger` and in `catalog`, then ledger's incident is one level higher (critical
    vs high) and its history says why."""
    await db.execute(
        "INSERT INTO services (tenant_id, name, kind, instrumented, criticality, first_seen, "
        "last_seen) VALUES ($1, 'ledger', 'service', true, 'critical', now(), now())",
        tenant,
    )
    await attach_trigger(receiver)
    await start_worker()
    for service in ("ledger", "catalog"):
        span = error_span(os.urandom(16), exception_type="RuntimeError", message="boom")
        await export_spans(receiver.port or 0, tenant, trace_request(service, [span]))

    async def two() -> bool:
        return await occurrences_of(db, tenant) == 2

    await eventually(two)
    rows = await db.fetch(
        "SELECT service_name, severity FROM incidents WHERE tenant_id = $1 ORDER BY 1", tenant
    )
    assert [(r["service_name"], r["severity"]) for r in rows] == [
        ("catalog", "high"),
        ("ledger", "critical"),
    ]
    reasons = await db.fetchval(
        "SELECT string_agg(e.reason, ' | ') FROM incident_events e JOIN incidents i "
        "ON i.id = e.incident_id WHERE i.tenant_id = $1 AND i.service_name = 'ledger'",
        tenant,
    )
    assert "ledger is a critical service" in reasons
