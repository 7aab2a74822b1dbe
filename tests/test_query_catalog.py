"""GetServices and GetOperations against a real receiver: what was seen in the window,
from every signal, paged, per tenant."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from test_query_find import MINUTE, ts
from test_query_server import (
    as_tenant,
    export_logs,
    export_metrics,
    export_spans,
    kv,
    simple_spans,
    status_details,
)

from prodsentinel.v1 import query_pb2

pytest_plugins = ["test_query_server"]

HOUR, DAY = 60 * MINUTE, 24 * 60 * MINUTE
SERVER, CLIENT, INTERNAL = 2, 3, 1


async def _spans(port, tenant, *specs: tuple[str, str, int, int]) -> None:
    """(service, span name, kind, start) each as a span of its own trace."""
    await export_spans(
        port,
        tenant,
        simple_spans(
            [
                {"service": s, "name": n, "kind": k, "trace_id": os.urandom(16), "start": t}
                for s, n, k, t in specs
            ]
        ),
    )


async def _log_and_metric(port, tenant, now: int) -> None:
    logs = ExportLogsServiceRequest()
    resource_logs = logs.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", "only-logs"))
    resource_logs.scope_logs.add().log_records.add(time_unix_nano=now)
    await export_logs(port, tenant, logs)
    metrics = ExportMetricsServiceRequest()
    resource_metrics = metrics.resource_metrics.add()
    resource_metrics.resource.attributes.append(kv("service.name", "only-metrics"))
    gauge = resource_metrics.scope_metrics.add().metrics.add(name="g").gauge
    gauge.data_points.add(time_unix_nano=now, as_double=1.0)
    await export_metrics(port, tenant, metrics)


async def test_services_from_every_signal_in_the_window(receiver, query, tenant) -> None:
    """GetServices lists, sorted, the services that sent spans, logs or metrics in the
    window (the last 7 days by default); one seen only before the window is left out,
    and another tenant's are never listed."""
    now = time.time_ns()
    await _spans(
        receiver.port,
        tenant,
        ("web", "GET /", SERVER, now - MINUTE),
        ("db", "query", CLIENT, now - 2 * HOUR),
        ("old", "job", INTERNAL, now - 2 * DAY),
    )
    await _log_and_metric(receiver.port, tenant, now - MINUTE)
    await _spans(receiver.port, f"{tenant}-b", ("foreign", "x", SERVER, now - MINUTE))

    everything = await query.GetServices(query_pb2.GetServicesRequest(), metadata=as_tenant(tenant))
    assert list(everything.services) == ["db", "old", "only-logs", "only-metrics", "web"]

    last_hour = query_pb2.GetServicesRequest(start_time=ts(now - HOUR), end_time=ts(now))
    recent = await query.GetServices(last_hour, metadata=as_tenant(tenant))
    assert list(recent.services) == ["only-logs", "only-metrics", "web"]


async def test_services_are_paged(receiver, query, tenant) -> None:
    """Five services in pages of two: three pages, each name once, in order."""
    now = time.time_ns()
    await _spans(receiver.port, tenant, *((f"svc-{n}", "op", SERVER, now - n) for n in range(5)))
    request = query_pb2.GetServicesRequest(page_size=2)
    pages = []
    while True:
        response = await query.GetServices(request, metadata=as_tenant(tenant))
        pages.append(list(response.services))
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token
    assert pages == [["svc-0", "svc-1"], ["svc-2", "svc-3"], ["svc-4"]]


async def test_operations_by_name_and_kind(receiver, query, tenant) -> None:
    """GetOperations lists a service's distinct (span name, kind) pairs in the window,
    by name then kind; a kind filter keeps one kind; other services' are not listed."""
    now = time.time_ns()
    await _spans(
        receiver.port,
        tenant,
        ("api", "GET /a", SERVER, now - MINUTE),
        ("api", "GET /a", SERVER, now - 2 * MINUTE),
        ("api", "GET /a", CLIENT, now - MINUTE),
        ("api", "cache", INTERNAL, now - MINUTE),
        ("api", "ancient", SERVER, now - 3 * DAY),
        ("web", "render", SERVER, now - MINUTE),
    )

    def pairs(response: query_pb2.GetOperationsResponse) -> list[tuple[str, int]]:
        return [(operation.name, operation.span_kind) for operation in response.operations]

    day = {"start_time": ts(now - DAY), "end_time": ts(now)}
    all_kinds = await query.GetOperations(
        query_pb2.GetOperationsRequest(service_name="api", **day), metadata=as_tenant(tenant)
    )
    assert pairs(all_kinds) == [("GET /a", SERVER), ("GET /a", CLIENT), ("cache", INTERNAL)]

    servers = await query.GetOperations(
        query_pb2.GetOperationsRequest(service_name="api", span_kind=SERVER, **day),
        metadata=as_tenant(tenant),
    )
    assert pairs(servers) == [("GET /a", SERVER)]

    request = query_pb2.GetOperationsRequest(service_name="api", page_size=1)
    seen = []
    while True:
        response = await query.GetOperations(request, metadata=as_tenant(tenant))
        seen += pairs(response)
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token
    assert seen == [
        ("GET /a", SERVER),
        ("GET /a", CLIENT),
        ("ancient", SERVER),
        ("cache", INTERNAL),
    ]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({}, "service_name"),
        ({"service_name": "api", "span_kind": 9}, "span_kind"),
        ({"service_name": "api", "start_time": ts(0)}, "end_time"),  # 7 days at most
        ({"service_name": "api", "page_size": -5}, "page_size"),
    ],
)
async def test_bad_operation_requests_name_the_field(query, tenant, request_fields, field) -> None:
    """A missing service, an unknown span kind, an over-long range and a negative page
    size get INVALID_ARGUMENT naming the field."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.GetOperations(
            query_pb2.GetOperationsRequest(**request_fields), metadata=as_tenant(tenant)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in status_details(caught.value)] == [field]
