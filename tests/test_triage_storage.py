"""Tier-1 analyses stored in analysis_results: wiring from the incident actor, idempotency,
re-analysis on a severity rise, and the table's constraints."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest
from analyzer_fixtures import *  # noqa: F403 - the fixtures
from analyzer_fixtures import (
    TriggerFactory,
    WorkerFactory,
    error_span,
    eventually,
    export_spans,
    trace_request,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from analyzer import terminal
from analyzer.lifecycle import IncidentSeverity
from analyzer.store import analyses as analysis_store
from analyzer.triage.runner import run_tier1, trigger_of
from prodsentinel.v1 import incidents_pb2 as pb
from receiver import migrations
from receiver.app import Receiver
from tests import test_incidents_api
from tests.test_analyzer_migration import fresh_database, tables
from tests.test_incidents_api import Api, analysis
from tests.test_triage_tier1 import chain_a_b_c

incident_api = test_incidents_api.api  # IncidentService on a real server (a fixture)
__all__ = ["fresh_database"]  # a fixture, used by name
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


def chain_request(trace_id: bytes) -> ExportTraceServiceRequest:
    """gateway -> orders -> inventory, inventory raising and the error reaching the root."""
    gateway = error_span(trace_id, name="GET /checkout", exception_type=None, kind=SERVER)
    call = error_span(trace_id, exception_type=None, parent=gateway.span_id, kind=CLIENT)
    orders = error_span(trace_id, exception_type=None, parent=call.span_id, kind=SERVER)
    call2 = error_span(trace_id, exception_type=None, parent=orders.span_id, kind=CLIENT)
    inventory = error_span(
        trace_id, exception_type="KeyError", message="sku 7 missing", parent=call2.span_id
    )
    request = trace_request("gateway", [gateway, call])
    request.MergeFrom(trace_request("orders", [orders, call2]))
    request.MergeFrom(trace_request("inventory", [inventory]))
    return request


async def test_new_incident_gets_one_tier1_analysis_naming_the_root_cause(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given a trace failing in inventory below orders and the gateway, when a worker records
    the new incident, then one tier-1 analysis is stored naming inventory, with the
    gateway and orders as the blast radius."""
    await attach_trigger(receiver)
    await start_worker()
    await export_spans(receiver.port or 0, tenant, chain_request(os.urandom(16)))

    async def stored() -> list[asyncpg.Record]:
        return list(
            await db.fetch(
                "SELECT incident_id, tier, trigger, status, result::text AS result "
                "FROM analysis_results WHERE tenant_id = $1",
                tenant,
            )
        )

    rows = await eventually(stored)
    assert len(rows) == 1
    assert (rows[0]["tier"], rows[0]["trigger"], rows[0]["status"]) == (1, "created", "ok")
    listed = await analysis_store.list_analyses(db, tenant, rows[0]["incident_id"])
    result = listed[0].result
    assert result["root_cause_service"] == "inventory"
    assert result["blast_radius"] == ["orders", "gateway"]
    assert result["fatal"] is True
    assert result["history"]["occurrences"] == 1


async def test_tier1_is_idempotent_per_trigger(db: asyncpg.Connection, tenant: str) -> None:
    """Running tier 1 twice for one trigger stores one row; a severity rise stores another."""
    incident_id = await db.fetchval(
        """
        INSERT INTO incidents (tenant_id, fingerprint, title, exception_type, message_template,
            service_name, operation, status, severity, first_seen, last_seen, last_recorded)
        VALUES ($1, 'fp', 't', 'KeyError', 'm', 'c', 'op', 'open', 'high', now(), now(), now())
        RETURNING id
        """,
        tenant,
    )
    spans = chain_a_b_c()
    assert await run_tier1(db, tenant, incident_id, "created", spans, [])
    assert not await run_tier1(db, tenant, incident_id, "created", spans, [])
    assert await run_tier1(db, tenant, incident_id, "severity:critical", spans, [])
    rows = await analysis_store.list_analyses(db, tenant, incident_id)
    assert [r.trigger for r in rows] == ["severity:critical", "created"]
    assert all(r.result["root_cause_service"] == "c" for r in rows)


def test_triggers() -> None:
    """A new incident and a severity rise trigger triage; an unchanged or lower one does not."""
    high, low = IncidentSeverity.HIGH, IncidentSeverity.LOW
    assert trigger_of(True, None, low) == "created"
    assert trigger_of(False, low, high) == "severity:high"
    assert trigger_of(False, high, high) is None
    assert trigger_of(False, high, low) is None


async def test_table_rejects_bad_rows(db: asyncpg.Connection, tenant: str) -> None:
    """CHECKs: tier 2 names its provider and model, failures carry an error, result is an object."""
    incident_id = await db.fetchval(
        """
        INSERT INTO incidents (tenant_id, fingerprint, title, exception_type, message_template,
            service_name, operation, status, severity, first_seen, last_seen, last_recorded)
        VALUES ($1, 'fp2', 't', 'E', 'm', 's', 'op', 'open', 'low', now(), now(), now())
        RETURNING id
        """,
        tenant,
    )
    insert = (
        "INSERT INTO analysis_results (tenant_id, incident_id, tier, trigger, status, result, "
        "error, provider, model) VALUES ($1, $2, $3, 'created', $4, $5::jsonb, $6, $7, $8)"
    )
    bad = [
        (2, "ok", "{}", "", None, None),
        (1, "failed", "{}", "", None, None),
        (1, "ok", "[]", "", None, None),
        (3, "ok", "{}", "", None, None),
    ]
    for values in bad:
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(insert, tenant, incident_id, *values)
    await db.execute(insert, tenant, incident_id, 2, "ok", "{}", "", "openai", "gpt")


async def test_get_incident_and_terminal_show_the_analyses(incident_api: Api, tenant: str) -> None:
    """GetIncident returns the stored tier-1 analysis (field 4) and `prodsentinel incident`
    prints its root cause, summary and next steps."""
    await incident_api.record(tenant, analysis("KeyError", "missing key 42", service="c"))
    listed = await incident_api.call("ListIncidents", pb.ListIncidentsRequest(), tenant)
    incident_id = int(listed.incidents[0].id)
    async with incident_api.pool.acquire() as conn:
        assert await run_tier1(conn, tenant, incident_id, "created", chain_a_b_c(), [])
    response = await incident_api.call(
        "GetIncident", pb.GetIncidentRequest(id=str(incident_id)), tenant
    )
    assert len(response.analyses) == 1
    shown = response.analyses[0]
    assert (shown.tier, shown.trigger, shown.status) == (1, "created", "ok")
    assert shown.root_cause_service == "c"
    assert 0 < shown.confidence <= 0.95
    assert shown.next_steps
    assert json.loads(shown.result_json)["blast_radius"] == ["b", "a"]
    text = terminal.format_incident(response)
    assert "analyses (latest first):" in text
    assert "root cause c (" in text
    assert shown.summary in text


def test_migration_downgrade_drops_only_analysis_results(fresh_database: str) -> None:
    """Downgrading 0005 by one step drops analysis_results and keeps the incident tables;
    upgrading to heads brings it back."""
    migrations.upgrade(fresh_database)
    assert "analysis_results" in asyncio.run(tables(fresh_database))
    migrations.downgrade(fresh_database, "0005_analysis_results@-1")
    remaining = asyncio.run(tables(fresh_database))
    assert "analysis_results" not in remaining
    assert {"incidents", "incident_occurrences"} <= remaining
    migrations.upgrade(fresh_database)
    assert "analysis_results" in asyncio.run(tables(fresh_database))
