"""The worker's periodic graph upkeep: a thread with its own loop and pool finds new edges."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg
import grpc
from analyzer_fixtures import eventually
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from analyzer.graph.config import GraphConfig
from analyzer.graph.schedule import GraphUpkeepThread


def two_service_trace(
    caller: str, callee: str
) -> list[trace_service_pb2.ExportTraceServiceRequest]:
    """A SERVER span in `caller` and its child SERVER span in `callee`, in separate requests.

    They end a second from now: other tests' upkeep runs may have moved the (global)
    watermark up to the database clock, and spans older than it are never read again.
    """
    trace_id, parent_id = os.urandom(16), os.urandom(8)
    end = time.time_ns() + 1_000_000_000
    requests = []
    for service, span_id, parent in ((caller, parent_id, b""), (callee, os.urandom(8), parent_id)):
        request = trace_service_pb2.ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = service
        resource_spans.scope_spans.add().spans.add(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=f"{service} op",
            kind=2,
            start_time_unix_nano=end - 5_000_000,
            end_time_unix_nano=end,
        )
        requests.append(request)
    return requests


async def test_upkeep_thread_aggregates_new_spans_until_stopped(
    receiver, database_url: str, db: asyncpg.Connection, tenant: str
) -> None:
    """Given the upkeep thread running every 0.1 s, when a two-service trace is stored, then the
    caller -> callee edge appears without anyone calling the upkeep; stop() ends the thread."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for request in two_service_trace("sched-a", "sched-b"):
            await stub.Export(request, metadata=(("x-scope-orgid", tenant),))

    async def edge_found() -> bool:
        return bool(
            await db.fetchval(
                "SELECT count(*) FROM service_dependencies d "
                "JOIN services s ON s.id = d.source_id JOIN services t ON t.id = d.target_id "
                "WHERE d.tenant_id = $1 AND s.name = 'sched-a' AND t.name = 'sched-b'",
                tenant,
            )
        )

    thread = GraphUpkeepThread(
        database_url, GraphConfig(settle_seconds=0, upkeep_interval_seconds=0.1)
    )
    thread.start()
    try:
        await eventually(edge_found)
    finally:
        await asyncio.to_thread(thread.stop)
    assert not thread.is_alive()
