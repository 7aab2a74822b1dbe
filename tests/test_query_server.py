"""The query API's server: fixtures shared by the test_query_* modules, and the server
seen from outside (reflection with grpcurl, the tenant header, service registration).

Until receiver/app.py registers QueryService itself, the `query_port` fixture serves it
from a second in-process grpc.aio server on the same test database, beside the normal
`receiver` fixture that ingests. Other modules use these fixtures with
`pytest_plugins = ["test_query_server"]`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from test_grpcurl import _run_grpcurl

from prodsentinel.v1 import query_pb2, query_pb2_grpc
from receiver.app import Receiver
from receiver.query.service import QUERY_SERVICE, add_query_service
from receiver.query.sql import create_query_pool

TENANT_HEADER = "x-scope-orgid"
SECOND = 1_000_000_000


@pytest.fixture
async def query_port(receiver: Receiver, database_url: str) -> AsyncIterator[int]:
    """A grpc.aio server with QueryService (and reflection) on an ephemeral port."""
    pool = await create_query_pool(database_url, size=2)
    server = grpc.aio.server()
    name = add_query_service(server, pool, receiver.settings)
    reflection.enable_server_reflection((name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)
        await pool.close()


@pytest.fixture
async def query(query_port: int) -> AsyncIterator[query_pb2_grpc.QueryServiceAsyncStub]:
    """A real gRPC client of the query service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{query_port}") as channel:
        yield query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[call-overload]


def as_tenant(tenant: str) -> tuple[tuple[str, str]]:
    """Call metadata naming the tenant (as ingestion does)."""
    return ((TENANT_HEADER, tenant),)


def kv(key: str, value: Any) -> KeyValue:
    """A KeyValue from a Python value (str, bool, int, float, bytes, list, dict)."""
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, list):
        out.array_value.SetInParent()
        out.array_value.values.extend(any_value(item) for item in value)
    elif isinstance(value, dict):
        out.kvlist_value.SetInParent()
        out.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
    return out


async def export_spans(
    port: int | None, tenant: str, request: trace_service_pb2.ExportTraceServiceRequest
) -> None:
    """Send raw OTLP through the receiver's TraceService/Export; it returns once stored."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            request, metadata=as_tenant(tenant)
        )
    assert not response.HasField("partial_success"), response


async def export_logs(
    port: int | None, tenant: str, request: logs_service_pb2.ExportLogsServiceRequest
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            request, metadata=as_tenant(tenant)
        )
    assert not response.HasField("partial_success"), response


async def export_metrics(
    port: int | None, tenant: str, request: metrics_service_pb2.ExportMetricsServiceRequest
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            request, metadata=as_tenant(tenant)
        )
    assert not response.HasField("partial_success"), response


def simple_spans(
    specs: Sequence[dict[str, Any]],
) -> trace_service_pb2.ExportTraceServiceRequest:
    """A request with one resource per service; each spec: service, name, trace_id, span_id,
    start (ns), duration (ns), and optionally parent, kind, error, attributes, resource."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    for spec in specs:
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(kv("service.name", spec["service"]))
        for key, value in spec.get("resource", {}).items():
            resource_spans.resource.attributes.append(kv(key, value))
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "tests"
        span = scope.spans.add(
            trace_id=spec["trace_id"],
            span_id=spec.get("span_id") or os.urandom(8),
            parent_span_id=spec.get("parent", b""),
            name=spec["name"],
            kind=spec.get("kind", 2),
            start_time_unix_nano=spec["start"],
            end_time_unix_nano=spec["start"] + spec.get("duration", 1_000_000),
        )
        span.status.code = 2 if spec.get("error") else 0
        for key, value in spec.get("attributes", {}).items():
            span.attributes.append(kv(key, value))
    return request


def status_details(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The BadRequest field violations of a rich error status."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, "no rich status"
    violations = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations += [(v.field, v.description) for v in bad.field_violations]
    return violations


# --------------------------------------------------------------------------- tests


async def test_add_query_service_returns_the_full_service_name(query_port: int) -> None:
    """add_query_service returns the name reflection and health need: the proto's service."""
    assert QUERY_SERVICE == "prodsentinel.v1.QueryService"
    output = await _run_grpcurl("-plaintext", f"127.0.0.1:{query_port}", "list")
    assert QUERY_SERVICE in output.split()


async def test_grpcurl_describes_query_service_through_reflection(query_port: int) -> None:
    """Reflection serves the query API's descriptors, with the OpenTelemetry types it
    imports: grpcurl describes GetTrace's response down to TracesData."""
    address = f"127.0.0.1:{query_port}"
    service = await _run_grpcurl("-plaintext", address, "describe", QUERY_SERVICE)
    for method in ("GetTrace", "FindTraces", "SearchLogs", "QueryMetrics", "GetServices"):
        assert f"rpc {method} " in service
    response = await _run_grpcurl(
        "-plaintext", address, "describe", "prodsentinel.v1.GetTraceResponse"
    )
    assert ".opentelemetry.proto.trace.v1.TracesData trace = 1;" in response


async def test_grpcurl_finds_and_gets_a_trace(receiver, query_port, tenant) -> None:
    """grpcurl, knowing the API only through reflection, calls FindTraces with JSON
    (RFC 3339 times) and GetTrace with the hex id it got back, under the tenant header."""
    trace_id, now = os.urandom(16), _now()
    await export_spans(
        receiver.port,
        tenant,
        simple_spans(
            [{"service": "grpcurl-svc", "name": "GET /", "trace_id": trace_id, "start": now}]
        ),
    )
    address, header = f"127.0.0.1:{query_port}", f"{TENANT_HEADER}: {tenant}"
    window = {"startTime": _rfc3339(now - 60 * SECOND), "endTime": _rfc3339(now + 60 * SECOND)}
    found = json.loads(
        await _run_grpcurl(
            "-plaintext",
            "-H",
            header,
            "-d",
            json.dumps(window),
            address,
            f"{QUERY_SERVICE}/FindTraces",
        )
    )
    # Python's descriptors carry no json_name, so grpcurl prints the proto field names.
    assert [t["trace_id"] for t in found["traces"]] == [trace_id.hex()]
    assert found["traces"][0]["root_service_name"] == "grpcurl-svc"

    trace = json.loads(
        await _run_grpcurl(
            "-plaintext",
            "-H",
            header,
            "-d",
            json.dumps({"traceId": trace_id.hex()}),
            address,
            f"{QUERY_SERVICE}/GetTrace",
        )
    )
    (resource_spans,) = trace["trace"]["resource_spans"]
    (span,) = resource_spans["scope_spans"][0]["spans"]
    assert (span["name"], span["start_time_unix_nano"]) == ("GET /", str(now))


async def test_bad_tenant_header_is_invalid_argument(query, tenant) -> None:
    """A tenant header that is not 1-128 printable characters is refused, naming the header."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.GetServices(
            query_pb2.GetServicesRequest(), metadata=((TENANT_HEADER, "x" * 200),)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in status_details(caught.value)] == [TENANT_HEADER]


def _now() -> int:
    return time.time_ns()


def _rfc3339(unix_nano: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_nano // SECOND, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{unix_nano % SECOND:09d}Z"


async def test_unreachable_database_is_unavailable_with_retry_info(receiver, tenant) -> None:
    """When the read pool cannot reach PostgreSQL, a query gets UNAVAILABLE with a
    RetryInfo (clients back off and retry), not INTERNAL."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    pool = await create_query_pool("postgresql://postgres@127.0.0.1:1/nothing", size=1)
    server = grpc.aio.server()
    add_query_service(server, pool, receiver.settings)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)  # type: ignore[call-overload]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetServices(query_pb2.GetServicesRequest(), metadata=as_tenant(tenant))
    finally:
        await server.stop(None)
        await pool.close()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(caught.value)
    assert status is not None
    assert any(detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for detail in status.details)
