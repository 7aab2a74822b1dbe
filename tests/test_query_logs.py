"""SearchLogs against a real receiver: round trip, each filter, newest-first pages.

Records go in through the SDK's OTLP log exporter (and raw OTLP for bodies the SDK
cannot produce) and come back through a real gRPC client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from test_query_find import MINUTE, ts
from test_query_server import SECOND, any_value, as_tenant, export_logs, kv, status_details
from test_query_traces import _Collect, log_set

from prodsentinel.v1 import query_pb2

pytest_plugins = ["test_query_server"]
pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")


def _log_with_sdk(port: int | None, tenant: str) -> list[Any]:
    """Three records through the stdlib logging handler of the SDK, then flushed."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "sdk-logs"}))
    records: list[Any] = []
    provider.add_log_record_processor(SimpleLogRecordProcessor(_Collect(records)))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(
                endpoint=f"127.0.0.1:{port}", insecure=True, headers={"x-scope-orgid": tenant}
            )
        )
    )
    logger = logging.getLogger(f"sdk.logs.{tenant}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.debug("warming %s", "up", extra={"step": 1})
        logger.info("order placed", extra={"order.id": 7, "total": 12.5})
        try:
            raise KeyError("sku")
        except KeyError:
            logger.exception("stock lookup failed")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    return records


def _search(start: int, end: int, **filters: Any) -> query_pb2.SearchLogsRequest:
    return query_pb2.SearchLogsRequest(start_time=ts(start), end_time=ts(end), **filters)


def _bodies(response: query_pb2.SearchLogsResponse) -> list[Any]:
    """Bodies in response order (resource -> scope -> record), as plain strings."""
    return [
        record.body.string_value
        for group in response.logs.resource_logs
        for scope in group.scope_logs
        for record in scope.log_records
    ]


async def test_sdk_logs_round_trip_newest_first(receiver, query, tenant) -> None:
    """Records from the SDK's OTLPLogExporter come back from SearchLogs equal to what the
    exporter encoded (severity, body, attributes incl. exception ones, times, scope,
    resource), newest first."""
    records = await asyncio.to_thread(_log_with_sdk, receiver.port, tenant)
    now = time.time_ns()

    response = await query.SearchLogs(
        _search(now - MINUTE, now + MINUTE), metadata=as_tenant(tenant)
    )

    assert log_set(response.logs.resource_logs) == log_set(encode_logs(records).resource_logs)
    assert _bodies(response) == ["stock lookup failed", "order placed", "warming up"]
    assert response.next_page_token == ""


def _raw_logs(base: int, trace_id: bytes) -> ExportLogsServiceRequest:
    """Records alternating between two resources, with every body kind and field."""
    request = ExportLogsServiceRequest()
    bodies: list[Any] = [
        b"\x00bin",
        {"msg": "structured", "n": [1, 2.5], "blob": b"\x01"},
        ["a", math.inf],
        "text body",
        None,
        {"@double": "tag-like"},
    ]
    for index, body in enumerate(bodies):
        resource_logs = request.resource_logs.add(schema_url="https://s/r")
        service = "api" if index % 2 else "worker"
        resource_logs.resource.attributes.extend([kv("service.name", service), kv("zone", "eu")])
        scope_logs = resource_logs.scope_logs.add(schema_url="https://s/s")
        scope_logs.scope.name = "raw"
        record = scope_logs.log_records.add(
            observed_time_unix_nano=base + index * SECOND + 1,
            severity_number=5 + index * 3,
            severity_text=f"S{index}",
            dropped_attributes_count=index,
            flags=1,
            event_name="evt" if index == 2 else "",
        )
        if index != 4:  # the last-but-one has only an observed time
            record.time_unix_nano = base + index * SECOND
        if body is not None:
            record.body.CopyFrom(any_value(body))
        if index >= 3:
            record.trace_id, record.span_id = trace_id, os.urandom(8)
        record.attributes.extend([kv("index", index), kv("even", index % 2 == 0)])
    return request


async def test_raw_logs_with_every_body_kind_round_trip(receiver, query, tenant) -> None:
    """Raw OTLP records with bytes, kvlist, array, tag-like and absent bodies, event names,
    flags, trace context and observed-only times come back equal, and consecutive records
    of different resources keep the newest-first order across groups."""
    base, trace_id = time.time_ns() - 10 * MINUTE, os.urandom(16)
    sent = _raw_logs(base, trace_id)
    await export_logs(receiver.port, tenant, sent)

    response = await query.SearchLogs(_search(base, base + MINUTE), metadata=as_tenant(tenant))

    assert log_set(response.logs.resource_logs) == log_set(sent.resource_logs)
    order = [
        record.severity_text
        for group in response.logs.resource_logs
        for scope in group.scope_logs
        for record in scope.log_records
    ]
    assert order == ["S5", "S4", "S3", "S2", "S1", "S0"]
    assert len(response.logs.resource_logs) == 6  # alternating resources: one group each


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"service_name": "api"}, ["S5", "S3", "S1"]),
        ({"min_severity": 14}, ["S5", "S4", "S3"]),  # severity 5 + 3i >= 14
        ({"trace_id": "TRACE"}, ["S5", "S4", "S3"]),
        ({"body_contains": "text bo"}, ["S3"]),
        ({"body_contains": "structured"}, ["S1"]),  # a kvlist body's JSON text
        ({"body_contains": "Text"}, []),  # case-sensitive
        ({"attributes": [kv("index", 2)]}, ["S2"]),
        ({"attributes": [kv("even", True), kv("zone", "eu")]}, ["S4", "S2", "S0"]),
        ({"attributes": [kv("zone", "us")]}, []),
        ({"service_name": "worker", "min_severity": 11}, ["S4", "S2"]),
    ],
)
async def test_each_log_filter(receiver, query, tenant, filters, expected) -> None:
    """Each filter (service, minimum severity, trace id, body substring, record or
    resource attribute) narrows the records; together they all apply."""
    base, trace_id = time.time_ns() - 10 * MINUTE, os.urandom(16)
    await export_logs(receiver.port, tenant, _raw_logs(base, trace_id))
    if filters.get("trace_id") == "TRACE":
        filters["trace_id"] = trace_id.hex()
    response = await query.SearchLogs(
        _search(base, base + MINUTE, **filters), metadata=as_tenant(tenant)
    )
    texts = [
        record.severity_text
        for group in response.logs.resource_logs
        for scope in group.scope_logs
        for record in scope.log_records
    ]
    assert texts == expected


async def test_time_range_uses_the_observed_time_when_a_record_has_none(
    receiver, query, tenant
) -> None:
    """The window applies to the record's time, or its observed time when it has none,
    to the nanosecond; another tenant sees nothing."""
    base, trace_id = time.time_ns() - 10 * MINUTE, os.urandom(16)
    await export_logs(receiver.port, tenant, _raw_logs(base, trace_id))
    observed_only = base + 4 * SECOND + 1
    response = await query.SearchLogs(
        _search(observed_only, observed_only + 1), metadata=as_tenant(tenant)
    )
    assert [
        r.severity_text
        for g in response.logs.resource_logs
        for s in g.scope_logs
        for r in s.log_records
    ] == ["S4"]
    empty = await query.SearchLogs(_search(base, base + MINUTE), metadata=as_tenant(f"{tenant}-b"))
    assert len(empty.logs.resource_logs) == 0


async def test_pages_go_newest_first_and_return_each_record_once(receiver, query, tenant) -> None:
    """31 records, several sharing a microsecond or an exact time, paged 7 at a time:
    every record once, newest first, the last page without a token."""
    base = time.time_ns() - 10 * MINUTE
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for index in range(31):
        scope_logs.log_records.add(
            time_unix_nano=base + (index // 3) * 1000 + (index % 3 == 1),
            body=any_value(f"r{index}"),
        )
    await export_logs(receiver.port, tenant, request)

    seen: list[str] = []
    search = _search(base, base + MINUTE, page_size=7)
    pages = 0
    while True:
        response = await query.SearchLogs(search, metadata=as_tenant(tenant))
        page = _bodies(response)
        assert len(page) <= 7
        seen += page
        pages += 1
        if not response.next_page_token:
            break
        search.page_token = response.next_page_token
    assert pages == 5
    assert sorted(seen) == sorted(f"r{index}" for index in range(31))
    times = {f"r{i}": base + (i // 3) * 1000 + (i % 3 == 1) for i in range(31)}
    assert [times[body] for body in seen] == sorted(times.values(), reverse=True)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"start_time": None}, "start_time"),
        ({"end_time": ts(10 * SECOND - 1)}, "end_time"),
        ({"end_time": ts(10 * SECOND + 8 * 86_400 * SECOND)}, "end_time"),
        ({"min_severity": 25}, "min_severity"),
        ({"trace_id": "xyz"}, "trace_id"),
        ({"body_contains": "a\x00b"}, "body_contains"),
    ],
)
async def test_bad_log_searches_name_the_field(query, tenant, fields, field) -> None:
    """Bad ranges, severities, trace ids and texts get INVALID_ARGUMENT naming the field."""
    request = {"start_time": ts(10 * SECOND), "end_time": ts(20 * SECOND), **fields}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.SearchLogs(
            query_pb2.SearchLogsRequest(**{k: v for k, v in request.items() if v is not None}),
            metadata=as_tenant(tenant),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [name for name, _ in status_details(caught.value)] == [field]
