"""How the receiver answers awkward Exports, driven by a raw grpc.aio client and real storage.

Bad items get partial success while good ones are stored; limits truncate and warn; retries
store nothing twice; oversize and undecodable requests get error statuses without taking
the server down; a bad tenant header gets INVALID_ARGUMENT with a field violation.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in Unix nanoseconds
TENANT_HEADER = "x-scope-orgid"
TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# The codes OTLP clients retry (OTLP specification, "Failures"); any other error is permanent.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


# --------------------------------------------------------------------------- request builders


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(
    name: str,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    start: int = T0,
    end: int = T0 + 1_000_000,
    attributes: dict[str, str | int | bool] | None = None,
) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=os.urandom(16) if trace_id is None else trace_id,
        span_id=os.urandom(8) if span_id is None else span_id,
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[_kv(k, v) for k, v in (attributes or {}).items()],
    )


def _trace_request(
    *spans: trace_pb2.Span, service: str = "checkout"
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_kv("service.name", service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def _log(
    body: str, *, time: int = T0, trace_id: bytes = b"", span_id: bytes = b""
) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=time,
        observed_time_unix_nano=time + 1,
        severity_number=logs_pb2.SEVERITY_NUMBER_ERROR,
        severity_text="ERROR",
        body=AnyValue(string_value=body),
        trace_id=trace_id,
        span_id=span_id,
    )


def _logs_request(*records: logs_pb2.LogRecord) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(_kv("service.name", "checkout"))
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def _gauge(name: str, *values: float) -> metrics_pb2.Metric:
    points = [
        metrics_pb2.NumberDataPoint(time_unix_nano=T0 + n, as_double=value)
        for n, value in enumerate(values)
    ]
    return metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))


def _histogram_point(
    bounds: list[float], counts: list[int], time: int = T0
) -> metrics_pb2.HistogramDataPoint:
    return metrics_pb2.HistogramDataPoint(
        time_unix_nano=time,
        start_time_unix_nano=T0 - 60_000_000_000,
        count=sum(counts),
        sum=12.5,
        explicit_bounds=bounds,
        bucket_counts=counts,
    )


def _metrics_request(
    *metrics: metrics_pb2.Metric,
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(_kv("service.name", "checkout"))
    resource_metrics.scope_metrics.add().metrics.extend(metrics)
    return request


def _metadata(tenant: str) -> tuple[tuple[str, str], ...]:
    return ((TENANT_HEADER, tenant),)


def _channel(port: int | None) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


async def _count(db: Any, table: str, tenant: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant))


# --------------------------------------------------------------------------- partial success


async def test_invalid_spans_are_rejected_and_valid_ones_stored(receiver, db, tenant) -> None:
    """Given one request with two valid spans, a 5-byte trace_id and an end-before-start span,
    then partial_success.rejected_spans is 2, its message names both problems, and exactly
    the two valid spans are stored."""
    trace_id = os.urandom(16)
    backwards_id = bytes.fromhex("0badbadbadbadbad")
    request = _trace_request(
        _span("good-1", trace_id=trace_id),
        _span("bad-trace-id", trace_id=b"\x01\x02\x03\x04\x05"),
        _span("good-2", trace_id=trace_id),
        _span("backwards", span_id=backwards_id, start=T0 + 5, end=T0),
    )
    async with _channel(receiver.port) as channel:
        response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            request, metadata=_metadata(tenant)
        )

    assert response.HasField("partial_success")
    assert response.partial_success.rejected_spans == 2
    message = response.partial_success.error_message
    assert "trace_id must be 16" in message
    assert "got 5" in message
    assert backwards_id.hex() in message
    assert "before start" in message
    names = await db.fetch("SELECT name FROM spans WHERE tenant_id = $1 ORDER BY name", tenant)
    assert [row["name"] for row in names] == ["good-1", "good-2"]


async def test_invalid_log_records_are_rejected_and_valid_ones_stored(receiver, db, tenant) -> None:
    """Given two valid log records and one whose span_id has 3 bytes, then
    rejected_log_records is 1, the message names span_id, and the two valid ones are stored
    (with their ids)."""
    trace_id, span_id = os.urandom(16), os.urandom(8)
    request = _logs_request(
        _log("first", trace_id=trace_id, span_id=span_id),
        _log("short span id", trace_id=trace_id, span_id=b"\x01\x02\x03"),
        _log("second", time=T0 + 1),
    )
    async with _channel(receiver.port) as channel:
        response = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            request, metadata=_metadata(tenant)
        )

    assert response.partial_success.rejected_log_records == 1
    assert "span_id must be empty or 8 bytes, got 3" in response.partial_success.error_message
    rows = await db.fetch(
        "SELECT body, trace_id, span_id FROM logs WHERE tenant_id = $1 ORDER BY time_unix_nano",
        tenant,
    )
    assert [(json.loads(r["body"]), r["trace_id"], r["span_id"]) for r in rows] == [
        ("first", trace_id, span_id),
        ("second", None, None),
    ]


async def test_invalid_histogram_points_are_rejected_and_valid_points_stored(
    receiver, db, tenant
) -> None:
    """Given a gauge point, a valid histogram point and a histogram point with 3 bucket
    counts for 1 bound, then rejected_data_points is 1, the message names the metric and the
    mismatch, and the other two points are stored."""
    histogram = metrics_pb2.Metric(
        name="http.server.duration",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[
                _histogram_point([10.0], [1, 2]),
                _histogram_point([10.0], [1, 2, 3], time=T0 + 1),
            ],
        ),
    )
    request = _metrics_request(_gauge("cpu.usage", 0.75), histogram)
    async with _channel(receiver.port) as channel:
        response = await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            request, metadata=_metadata(tenant)
        )

    assert response.partial_success.rejected_data_points == 1
    message = response.partial_success.error_message
    assert "http.server.duration" in message
    assert "3 bucket counts for 1 bounds" in message
    rows = await db.fetch(
        "SELECT metric_name, metric_type, value, distribution FROM metric_points "
        "WHERE tenant_id = $1 ORDER BY metric_name",
        tenant,
    )
    assert [(r["metric_name"], r["metric_type"], r["value"]) for r in rows] == [
        ("cpu.usage", "gauge", 0.75),
        ("http.server.duration", "histogram", None),
    ]
    distribution = json.loads(rows[1]["distribution"])
    assert (distribution["explicit_bounds"], distribution["bucket_counts"]) == ([10.0], [1, 2])


# --------------------------------------------------------------------------- limits


async def test_attribute_limits_truncate_and_warn_without_rejecting(
    make_receiver, db, tenant
) -> None:
    """Given a receiver limited to 3 attributes of at most 8 characters, when a span with 5
    attributes (one of 13 characters) is exported, then the first 3 are stored with the long
    one cut to 8, dropped_attributes_count adds the 2 dropped, and the response is a warning:
    rejected 0 with a non-empty error_message."""
    limited = await make_receiver(
        PRODSENTINEL_ATTRIBUTE_COUNT_LIMIT=3, PRODSENTINEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=8
    )
    span = _span(
        "limited",
        attributes={"a": "0123456789abc", "b": 1, "c": True, "d": "dropped", "e": "dropped"},
    )
    span.dropped_attributes_count = 1  # the SDK had already dropped one
    async with _channel(limited.port) as channel:
        response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            _trace_request(span), metadata=_metadata(tenant)
        )

    assert response.HasField("partial_success")
    assert response.partial_success.rejected_spans == 0
    message = response.partial_success.error_message
    assert "warning" in message
    assert "1 value(s) truncated" in message
    assert "2 attribute(s) dropped" in message
    row = await db.fetchrow(
        "SELECT attributes, dropped_attributes_count FROM spans WHERE tenant_id = $1", tenant
    )
    assert json.loads(row["attributes"]) == {"a": "01234567", "b": 1, "c": True}
    assert row["dropped_attributes_count"] == 3


# --------------------------------------------------------------------------- empty requests


async def test_empty_requests_succeed_without_partial_success(receiver, db, tenant) -> None:
    """Given empty Export requests for all three signals, then each succeeds with no
    partial_success field set, and nothing is stored."""
    async with _channel(receiver.port) as channel:
        metadata = _metadata(tenant)
        traces = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            trace_service_pb2.ExportTraceServiceRequest(), metadata=metadata
        )
        logs = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_service_pb2.ExportLogsServiceRequest(), metadata=metadata
        )
        metrics = await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            metrics_service_pb2.ExportMetricsServiceRequest(), metadata=metadata
        )

    assert not traces.HasField("partial_success")
    assert not logs.HasField("partial_success")
    assert not metrics.HasField("partial_success")
    for table in ("spans", "logs", "metric_points"):
        assert await _count(db, table, tenant) == 0


# --------------------------------------------------------------------------- retries


def _retry_requests() -> tuple[
    trace_service_pb2.ExportTraceServiceRequest,
    logs_service_pb2.ExportLogsServiceRequest,
    metrics_service_pb2.ExportMetricsServiceRequest,
]:
    """Two spans, two log records and two metric points, all distinct."""
    trace_id = os.urandom(16)
    return (
        _trace_request(_span("a", trace_id=trace_id), _span("b", trace_id=trace_id)),
        _logs_request(_log("one"), _log("two", time=T0 + 1)),
        _metrics_request(_gauge("queue.depth", 3.0, 4.0)),
    )


async def _export_all(channel: grpc.aio.Channel, tenant: str, requests: Any) -> list[Any]:
    traces, logs, metrics = requests
    metadata = _metadata(tenant)
    return list(
        await asyncio.gather(
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(traces, metadata=metadata),
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, metadata=metadata),
            metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, metadata=metadata),
        )
    )


async def test_retried_exports_store_each_item_once(receiver, db, tenant) -> None:
    """Given an exporter that resends the same requests 3 times (a lost acknowledgement),
    then every retry succeeds without partial success and each span, log record and metric
    point is stored exactly once."""
    requests = _retry_requests()
    async with _channel(receiver.port) as channel:
        for _ in range(3):
            responses = await _export_all(channel, tenant, requests)
            assert not any(response.HasField("partial_success") for response in responses)

    assert await _count(db, "spans", tenant) == 2
    assert await _count(db, "logs", tenant) == 2
    assert await _count(db, "metric_points", tenant) == 2


async def test_concurrent_duplicate_exports_store_each_item_once(receiver, db, tenant) -> None:
    """Given the same requests exported 5 times at once (so the copies can share one
    group-commit batch or race in two), then all succeed and each item is stored once."""
    requests = _retry_requests()
    async with _channel(receiver.port) as channel:
        rounds = await asyncio.gather(*(_export_all(channel, tenant, requests) for _ in range(5)))

    assert not any(r.HasField("partial_success") for responses in rounds for r in responses)
    assert await _count(db, "spans", tenant) == 2
    assert await _count(db, "logs", tenant) == 2
    assert await _count(db, "metric_points", tenant) == 2


# --------------------------------------------------------------------------- bad requests


async def test_oversize_request_is_resource_exhausted_and_server_keeps_serving(
    make_receiver, db, tenant
) -> None:
    """Given PRODSENTINEL_MAX_RECV_MESSAGE_BYTES=65536, when a 100 KB request is exported,
    then it fails with RESOURCE_EXHAUSTED and stores nothing, and the next small request on
    the same channel is served and stored."""
    small_limit = await make_receiver(PRODSENTINEL_MAX_RECV_MESSAGE_BYTES=65536)
    huge = _trace_request(_span("huge", attributes={"blob": "x" * 100_000}))
    assert huge.ByteSize() > 65536
    async with _channel(small_limit.port) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        try:
            await stub.Export(huge, metadata=_metadata(tenant))
        except grpc.aio.AioRpcError as error:
            code = error.code()
        else:
            raise AssertionError("an oversize request was accepted")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED

        response = await stub.Export(_trace_request(_span("small")), metadata=_metadata(tenant))

    assert not response.HasField("partial_success")
    names = await db.fetch("SELECT name FROM spans WHERE tenant_id = $1", tenant)
    assert [row["name"] for row in names] == ["small"]


async def test_undecodable_request_gets_an_error_status_and_server_keeps_serving(
    receiver, db, tenant
) -> None:
    """Given raw bytes that are not a protobuf message sent to TraceService/Export, then
    the call ends with INVALID_ARGUMENT (permanent: exporters must not resend it) rather
    than a hang or a dropped connection, and the server then still answers health checks
    and stores the next Export on the same channel."""
    garbage = b"\x0a\xff\xff\xff\xff\x0f\x00garbage"  # field 1, length far past the end
    async with _channel(receiver.port) as channel:
        raw_export = channel.unary_unary(TRACE_EXPORT_METHOD)  # bytes in, bytes out
        try:
            await raw_export(garbage, metadata=_metadata(tenant), timeout=10)
        except grpc.aio.AioRpcError as error:
            code = error.code()
        else:
            raise AssertionError("garbage was accepted as an Export request")
        # The receiver decodes the request itself, so a malformed one is the client's fault.
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert code not in RETRYABLE_CODES

        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            _trace_request(_span("after-garbage")), metadata=_metadata(tenant)
        )

    names = await db.fetch("SELECT name FROM spans WHERE tenant_id = $1", tenant)
    assert [row["name"] for row in names] == ["after-garbage"]


async def test_too_long_tenant_is_invalid_argument_naming_the_header(receiver, db) -> None:
    """Given a tenant header of 129 characters, then Export fails with INVALID_ARGUMENT
    whose google.rpc.Status carries a BadRequest field violation naming the header, and
    nothing is stored for that tenant."""
    too_long = "t" * 129
    async with _channel(receiver.port) as channel:
        try:
            await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
                _trace_request(_span("x")), metadata=_metadata(too_long)
            )
        except grpc.aio.AioRpcError as error:
            failure = error
        else:
            raise AssertionError("a 129-character tenant was accepted")

    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(failure)
    assert status is not None, "no grpc-status-details-bin trailer"
    assert status.code == code_pb2.INVALID_ARGUMENT
    (detail,) = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    (violation,) = bad_request.field_violations
    assert violation.field == TENANT_HEADER
    assert "128" in violation.description
    assert await _count(db, "spans", too_long) == 0


async def test_tenant_of_exactly_128_characters_is_accepted(receiver, db, tenant) -> None:
    """The tenant length limit is inclusive: a 128-character tenant is stored as sent."""
    long_tenant = tenant.ljust(128, "x")
    async with _channel(receiver.port) as channel:
        await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            _trace_request(_span("edge")), metadata=_metadata(long_tenant)
        )
    assert await _count(db, "spans", long_tenant) == 1


# --------------------------------------------------------------------------- health


async def test_health_reports_serving_for_server_and_trace_service(receiver) -> None:
    """grpc.health.v1 Check is SERVING for the whole server ("") and for TraceService."""
    async with _channel(receiver.port) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


# --------------------------------------------------------------------------- NUL characters


async def test_nul_characters_are_stored_as_replacement_characters(receiver, db, tenant) -> None:
    """PostgreSQL text and jsonb cannot hold U+0000: given NULs in a span name, an
    attribute key, an attribute value and service.name, then the span is stored with each
    NUL replaced by U+FFFD, the batch's other span is stored too, and nothing is rejected."""
    trace_id = os.urandom(16)
    request = _trace_request(
        _span("pay\x00ment", trace_id=trace_id, attributes={"k\x00ey": "v\x00al", "ok": "fine"}),
        _span("plain", trace_id=trace_id),
        service="check\x00out",
    )
    async with _channel(receiver.port) as channel:
        response = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            request, metadata=_metadata(tenant)
        )

    assert not response.HasField("partial_success")
    rows = await db.fetch(
        "SELECT name, service_name, attributes FROM spans WHERE tenant_id = $1 ORDER BY name",
        tenant,
    )
    assert [(r["name"], r["service_name"], json.loads(r["attributes"])) for r in rows] == [
        ("pay\ufffdment", "check\ufffdout", {"k\ufffdey": "v\ufffdal", "ok": "fine"}),
        ("plain", "check\ufffdout", {}),
    ]


# --------------------------------------------------------------------------- non-finite doubles


async def test_non_finite_doubles_in_distributions_are_kept_tagged(receiver, db, tenant) -> None:
    """JSON has no NaN or infinities, and the mapping's convention (receiver/mapping/values.py)
    is to tag them as {"@double": "NaN" | "Infinity" | "-Infinity"} rather than lose them.

    Given a summary whose quantiles are NaN (what Prometheus clients report for a window
    with no observations) and a histogram whose sum and max are +Inf, then the stored
    distributions keep those values tagged, not as null (which reads as "field absent")."""
    nan, inf = float("nan"), float("inf")
    summary = metrics_pb2.Metric(
        name="rpc.latency.summary",
        summary=metrics_pb2.Summary(
            data_points=[
                metrics_pb2.SummaryDataPoint(
                    time_unix_nano=T0,
                    count=0,
                    sum=0.0,
                    quantile_values=[
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=nan),
                        metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=nan),
                    ],
                )
            ]
        ),
    )
    point = _histogram_point([10.0], [1, 1])
    point.sum, point.min, point.max = inf, 1.0, inf
    histogram = metrics_pb2.Metric(
        name="payload.size", histogram=metrics_pb2.Histogram(data_points=[point])
    )
    async with _channel(receiver.port) as channel:
        response = await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            _metrics_request(summary, histogram), metadata=_metadata(tenant)
        )

    assert not response.HasField("partial_success")
    rows = {
        row["metric_name"]: json.loads(row["distribution"])
        for row in await db.fetch(
            "SELECT metric_name, distribution FROM metric_points WHERE tenant_id = $1", tenant
        )
    }
    assert rows["rpc.latency.summary"]["quantile_values"] == [
        {"quantile": 0.5, "value": {"@double": "NaN"}},
        {"quantile": 0.99, "value": {"@double": "NaN"}},
    ]
    stored = rows["payload.size"]
    assert (stored["sum"], stored["min"], stored["max"]) == (
        {"@double": "Infinity"},
        1.0,
        {"@double": "Infinity"},
    )
