"""A first end-to-end check: one raw OTLP Export over gRPC lands in PostgreSQL."""

from __future__ import annotations

import os

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


async def test_export_is_stored(receiver, db, tenant) -> None:
    """Given a running receiver, when a span is exported, then it is in `spans` on return."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), "op"
    span.start_time_unix_nano, span.end_time_unix_nano = (
        1_700_000_000_000_000_000,
        1_700_000_000_500_000_000,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        response = await stub.Export(request, metadata=(("x-scope-orgid", tenant),))
    assert not response.HasField("partial_success")
    row = await db.fetchrow(
        "SELECT name, service_name, span_id FROM spans WHERE tenant_id = $1", tenant
    )
    assert row is not None
    assert (row["name"], row["service_name"], row["span_id"]) == (
        "op",
        "unknown_service",
        span.span_id,
    )
