"""IncidentService over a real grpc.aio server and real PostgreSQL, and the terminal client."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest

from analyzer import terminal
from analyzer.grouping import now_us, record_analysis
from analyzer.origin import Analysis, SpanRecord, analyse_trace
from analyzer.service import add_incident_service
from analyzer.severity import SeverityRules
from prodsentinel.v1 import incidents_pb2 as pb
from prodsentinel.v1 import incidents_pb2_grpc
from receiver.database import create_writer_pool
from receiver.settings import Settings

RULES = SeverityRules()


def analysis(
    exception_type: str, message: str, service: str = "api", *, root: bool = True
) -> Analysis:
    span = SpanRecord(
        signal_id=os.urandom(16),
        span_id=os.urandom(8),
        parent_span_id=None if root else os.urandom(8),
        service_name=service,
        name="GET /x",
        kind=2 if root else 1,
        status_code=2,
        status_message=message,
        start_unix_nano=now_us() * 1000,
        events=[
            {
                "name": "exception",
                "attributes": {"exception.type": exception_type, "exception.message": message},
            }
        ],
        attributes={},
    )
    result = analyse_trace(os.urandom(16), [span], [], RULES)
    assert result is not None
    return result


class Api:
    def __init__(self, port: int, pool: asyncpg.Pool) -> None:
        self.port = port
        self.pool = pool
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = incidents_pb2_grpc.IncidentServiceStub(self.channel)

    async def call(self, method: str, request: Any, tenant: str) -> Any:
        return await getattr(self.stub, method)(
            request, metadata=(("x-scope-orgid", tenant),), timeout=10
        )

    async def record(self, tenant: str, item: Analysis) -> None:
        async with self.pool.acquire() as conn:
            await record_analysis(conn, tenant, item, RULES, now_us())


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    """IncidentService on an ephemeral port, over a pool with the writer's codecs (as app.py has)."""
    pool = await create_writer_pool(database_url, 2, 10.0)
    server = grpc.aio.server()
    name = add_incident_service(server, pool, Settings())
    assert name == "prodsentinel.v1.IncidentService"
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = Api(port, pool)
    try:
        yield client
    finally:
        await client.channel.close()
        await server.stop(1.0)
        await pool.close()


async def test_list_is_scoped_to_the_callers_tenant(api: Api, tenant: str) -> None:
    """Given incidents of two tenants, each tenant lists only its own, and getting the other
    tenant's incident is NOT_FOUND."""
    other = tenant + "-other"
    await api.record(tenant, analysis("KeyError", "missing 'a'"))
    await api.record(other, analysis("KeyError", "missing 'a'"))
    mine = await api.call("ListIncidents", pb.ListIncidentsRequest(), tenant)
    theirs = await api.call("ListIncidents", pb.ListIncidentsRequest(), other)
    assert len(mine.incidents) == len(theirs.incidents) == 1
    assert mine.incidents[0].id != theirs.incidents[0].id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.call("GetIncident", pb.GetIncidentRequest(id=theirs.incidents[0].id), tenant)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_pages_cover_every_incident_once_and_filters_apply(api: Api, tenant: str) -> None:
    """Given five incidents (one in service `billing`, one below the root so low severity),
    pages of two return all five exactly once, and the service/severity filters select."""
    for n in range(3):
        await api.record(tenant, analysis(f"Error{n}", "boom"))
    await api.record(tenant, analysis("BillingError", "boom", service="billing"))
    await api.record(tenant, analysis("Minor", "boom", root=False))
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = await api.call(
            "ListIncidents", pb.ListIncidentsRequest(page_size=2, page_token=token), tenant
        )
        seen += [i.id for i in page.incidents]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    billing = await api.call("ListIncidents", pb.ListIncidentsRequest(service="billing"), tenant)
    assert [i.exception_type for i in billing.incidents] == ["BillingError"]
    high = await api.call(
        "ListIncidents", pb.ListIncidentsRequest(severities=[pb.INCIDENT_SEVERITY_HIGH]), tenant
    )
    assert len(high.incidents) == 4
    assert all(i.severity == pb.INCIDENT_SEVERITY_HIGH for i in high.incidents)


async def test_acknowledge_then_resolve_and_the_history(api: Api, tenant: str) -> None:
    """Acknowledge records who; resolve records who and the note; acknowledging a resolved
    incident is FAILED_PRECONDITION; GetIncident shows occurrences and the whole history."""
    await api.record(tenant, analysis("Timeout", "upstream 10.0.0.1 timed out"))
    (incident,) = (await api.call("ListIncidents", pb.ListIncidentsRequest(), tenant)).incidents
    acked = await api.call(
        "AcknowledgeIncident", pb.AcknowledgeIncidentRequest(id=incident.id, by="bob"), tenant
    )
    assert (acked.incident.status, acked.incident.acknowledged_by) == (
        pb.INCIDENT_STATUS_ACKNOWLEDGED,
        "bob",
    )
    resolved = await api.call(
        "ResolveIncident",
        pb.ResolveIncidentRequest(id=incident.id, by="carol", note="rolled back"),
        tenant,
    )
    assert resolved.incident.status == pb.INCIDENT_STATUS_RESOLVED
    assert (resolved.incident.resolved_by, resolved.incident.resolution_note) == (
        "carol",
        "rolled back",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.call(
            "AcknowledgeIncident", pb.AcknowledgeIncidentRequest(id=incident.id, by="bob"), tenant
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    full = await api.call("GetIncident", pb.GetIncidentRequest(id=incident.id), tenant)
    assert len(full.occurrences) == 1
    assert full.incident.message_template == "upstream <ip> timed out"
    assert [
        (e.to_value, e.actor) for e in full.events if e.kind == pb.IncidentEvent.KIND_STATUS
    ] == [
        ("open", "system"),
        ("acknowledged", "bob"),
        ("resolved", "carol"),
    ]


@pytest.mark.parametrize(
    ("method", "request_message", "field"),
    [
        ("AcknowledgeIncident", pb.AcknowledgeIncidentRequest(id="1", by=""), "by"),
        ("ResolveIncident", pb.ResolveIncidentRequest(id="x", by="me"), "id"),
        ("ListIncidents", pb.ListIncidentsRequest(page_token="%%%"), "page_token"),
        ("ListIncidents", pb.ListIncidentsRequest(page_size=-1), "page_size"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    api: Api, tenant: str, method: str, request_message: Any, field: str
) -> None:
    """A malformed request is INVALID_ARGUMENT naming the field."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.call(method, request_message, tenant)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")


async def test_terminal_lists_shows_and_acknowledges(
    api: Api, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prodsentinel incidents` prints the incident; `prodsentinel incident ID --acknowledge`
    acknowledges it as --by and prints its history."""
    await api.record(tenant, analysis("PaymentDeclined", "card 4242 declined"))
    parser = argparse.ArgumentParser()
    terminal.add_commands(parser.add_subparsers())
    common = ["--address", f"127.0.0.1:{api.port}", "--tenant", tenant]
    settings = Settings()

    args = parser.parse_args(["incidents", *common])
    assert await asyncio.to_thread(args.run, args, settings) == 0
    listing = capsys.readouterr().out
    (line,) = [
        line for line in listing.splitlines() if "PaymentDeclined: card <int> declined" in line
    ]
    incident_id = line.split()[0]

    args = parser.parse_args(["incident", incident_id, "--acknowledge", "--by", "dave", *common])
    assert await asyncio.to_thread(args.run, args, settings) == 0
    shown = capsys.readouterr().out
    assert "acknowledged by dave" in shown
    assert "open -> acknowledged" in shown

    args = parser.parse_args(["incident", "999999999", *common])
    assert await asyncio.to_thread(args.run, args, settings) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
