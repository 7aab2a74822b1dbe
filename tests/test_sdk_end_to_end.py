"""The OpenTelemetry Python SDK's own OTLP/gRPC exporters (gzip) against a real receiver.

The exporters are blocking, and the receiver runs on the test's event loop, so SDK code
runs in a worker thread. An exporter's flush returns after its Export RPC returned, and
the receiver answers only after the commit, so the rows are there when the thread ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
RESOURCE_SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
SCOPE_SCHEMA_URL = "https://opentelemetry.io/schemas/1.24.0"
LONG_DELAY_MILLIS = 3_600_000  # batch processors export only when flushed


def _resource() -> Resource:
    return Resource.create(
        {
            "service.name": "checkout",
            "service.version": "1.4.2",
            "deployment.environment.name": "test",
        },
        schema_url=RESOURCE_SCHEMA_URL,
    )


def _exporter_options(port: int | None, tenant: str) -> dict[str, Any]:
    return {
        "endpoint": f"127.0.0.1:{port}",
        "insecure": True,
        "headers": {"x-scope-orgid": tenant},
        "compression": grpc.Compression.Gzip,
        "timeout": 10,
    }


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """SDK attributes as the JSON the receiver stores (sequences become lists)."""
    return {
        key: list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        for key, value in (attributes or {}).items()
    }


def _timestamptz(unix_nano: int) -> dt.datetime:
    return UNIX_EPOCH + dt.timedelta(microseconds=unix_nano // 1000)


# --------------------------------------------------------------------------- traces

ROOT_ATTRIBUTES = {
    "http.request.method": "POST",
    "http.route": "/pay",
    "http.response.status_code": 502,
    "retried": False,
    "sample.ratio": 0.25,
    "tags": ("card", "eu"),
    "checks": (True, False),
    "attempts": (1, 2, 3),
    "weights": (0.5, -1.25),
}
CHILD_ATTRIBUTES = {"peer.service": "card-gateway", "rpc.retry": True, "payment.amount": 19.99}


def _export_traces(port: int | None, tenant: str) -> tuple[list[ReadableSpan], SpanContext]:
    """Record a SERVER span with a CLIENT child through the SDK; return the finished spans."""
    provider = TracerProvider(resource=_resource())
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(**_exporter_options(port, tenant)),
            schedule_delay_millis=LONG_DELAY_MILLIS,
        )
    )
    tracer = provider.get_tracer(
        "checkout.payments", "2.0.1", schema_url=SCOPE_SCHEMA_URL, attributes={"team": "pay"}
    )
    linked = SpanContext(
        trace_id=int.from_bytes(os.urandom(16), "big") | 1,
        span_id=int.from_bytes(os.urandom(8), "big") | 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with tracer.start_as_current_span(
        "POST /pay",
        kind=SpanKind.SERVER,
        attributes=ROOT_ATTRIBUTES,
        links=[Link(linked, {"link.reason": "retry-of"})],
    ) as root:
        with tracer.start_as_current_span(
            "charge card",
            kind=SpanKind.CLIENT,
            attributes=CHILD_ATTRIBUTES,
            record_exception=False,
            set_status_on_exception=False,
        ) as child:
            try:
                raise ValueError("card declined")
            except ValueError as error:
                child.record_exception(error, attributes={"card.brand": "visa"})
            child.set_status(Status(StatusCode.ERROR, "card declined"))
        root.set_status(Status(StatusCode.OK))
    try:
        assert provider.force_flush(timeout_millis=20_000)
    finally:
        provider.shutdown()
    return list(memory.get_finished_spans()), linked


async def test_sdk_spans_are_stored_field_by_field(receiver, db, tenant) -> None:
    """Spans from the SDK's OTLPSpanExporter (gzip, tenant header) are stored with every
    field as the SDK recorded it: ids and parent, kind numbers, exact nanosecond times,
    status, typed attributes, the exception event, the link, resource and scope."""
    spans, linked = await asyncio.to_thread(_export_traces, receiver.port, tenant)
    child, root = spans  # finished first, finished last
    assert (root.name, child.name) == ("POST /pay", "charge card")

    rows = {
        row["name"]: row
        for row in await db.fetch("SELECT * FROM spans WHERE tenant_id = $1", tenant)
    }
    assert set(rows) == {"POST /pay", "charge card"}
    trace_id = root.context.trace_id.to_bytes(16, "big")
    root_id = root.context.span_id.to_bytes(8, "big")
    for span in (root, child):
        row = rows[span.name]
        assert row["trace_id"] == trace_id
        assert row["span_id"] == span.context.span_id.to_bytes(8, "big")
        assert row["start_time_unix_nano"] == span.start_time
        assert row["end_time_unix_nano"] == span.end_time
        assert row["start_time"] == _timestamptz(span.start_time)
        assert row["end_time"] == _timestamptz(span.end_time)
        assert row["service_name"] == "checkout"
        assert row["trace_state"] == ""
        assert row["flags"] == 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE: parent is local
        assert row["dropped_attributes_count"] == 0
        assert row["dropped_events_count"] == 0
        assert row["dropped_links_count"] == 0
        assert json.loads(row["resource"]) == dict(_resource().attributes)
        assert json.loads(row["resource"])["service.version"] == "1.4.2"
        assert row["resource_schema_url"] == RESOURCE_SCHEMA_URL
        assert (row["scope_name"], row["scope_version"]) == ("checkout.payments", "2.0.1")
        assert json.loads(row["scope_attributes"]) == {"team": "pay"}
        assert row["scope_schema_url"] == SCOPE_SCHEMA_URL

    root_row, child_row = rows["POST /pay"], rows["charge card"]
    assert root_row["parent_span_id"] is None
    assert child_row["parent_span_id"] == root_id
    assert (root_row["kind"], child_row["kind"]) == (2, 3)  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
    assert (root_row["status_code"], root_row["status_message"]) == (1, "")  # OK
    assert (child_row["status_code"], child_row["status_message"]) == (2, "card declined")

    assert json.loads(root_row["attributes"]) == {
        "http.request.method": "POST",
        "http.route": "/pay",
        "http.response.status_code": 502,
        "retried": False,
        "sample.ratio": 0.25,
        "tags": ["card", "eu"],
        "checks": [True, False],
        "attempts": [1, 2, 3],
        "weights": [0.5, -1.25],
    }
    assert json.loads(child_row["attributes"]) == CHILD_ATTRIBUTES

    assert json.loads(root_row["events"]) == []
    (event,) = child.events
    (stored_event,) = json.loads(child_row["events"])
    assert stored_event == {
        "time_unix_nano": event.timestamp,
        "name": "exception",
        "attributes": _plain(event.attributes),
        "dropped_attributes_count": 0,
    }
    exception = stored_event["attributes"]
    assert exception["exception.type"] == "ValueError"
    assert exception["exception.message"] == "card declined"
    assert exception["card.brand"] == "visa"
    assert exception["exception.stacktrace"].startswith("Traceback (most recent call last):")
    assert "ValueError: card declined" in exception["exception.stacktrace"]

    assert json.loads(child_row["links"]) == []
    assert json.loads(root_row["links"]) == [
        {
            "trace_id": f"{linked.trace_id:032x}",
            "span_id": f"{linked.span_id:016x}",
            "trace_state": "",
            "attributes": {"link.reason": "retry-of"},
            "dropped_attributes_count": 0,
            "flags": 0x300,  # HAS_IS_REMOTE | IS_REMOTE
        }
    ]


# --------------------------------------------------------------------------- logs


def _export_logs(port: int | None, tenant: str) -> tuple[list[Any], SpanContext]:
    """Log INFO and ERROR (with exc_info) through a stdlib handler inside an active span."""
    logger_provider = LoggerProvider(resource=_resource())
    memory = InMemoryLogRecordExporter()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(**_exporter_options(port, tenant)),
            schedule_delay_millis=LONG_DELAY_MILLIS,
        )
    )
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider)
    logger = logging.getLogger(f"checkout.payments.{tenant}")  # a logger of this test's own
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    tracer = TracerProvider(resource=_resource()).get_tracer("checkout")
    try:
        with tracer.start_as_current_span("handle payment") as span:
            logger.info("payment %s accepted", "p-17", extra={"order.id": 42, "amount": 9.5})
            try:
                raise RuntimeError("gateway timeout")
            except RuntimeError:
                logger.exception("payment failed", extra={"retryable": True})
    finally:
        logger.removeHandler(handler)
    try:
        assert logger_provider.force_flush(timeout_millis=20_000)
    finally:
        logger_provider.shutdown()
    return list(memory.get_finished_logs()), span.get_span_context()


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
async def test_sdk_logs_from_stdlib_logging_are_stored(receiver, db, tenant) -> None:
    """Records logged through the SDK's LoggingHandler inside a span are stored with their
    severity number and text, formatted body, extra and code attributes, the exception
    attributes of logger.exception(), the active span's ids and flags, and the resource."""
    records, span_context = await asyncio.to_thread(_export_logs, receiver.port, tenant)
    assert len(records) == 2

    rows = await db.fetch(
        "SELECT * FROM logs WHERE tenant_id = $1 ORDER BY time_unix_nano, severity_number",
        tenant,
    )
    assert [(r["severity_number"], r["severity_text"]) for r in rows] == [
        (9, "INFO"),
        (17, "ERROR"),
    ]
    assert [json.loads(r["body"]) for r in rows] == ["payment p-17 accepted", "payment failed"]
    for row, readable in zip(rows, records, strict=True):
        record = readable.log_record
        assert row["time_unix_nano"] == record.timestamp
        assert row["observed_time_unix_nano"] == record.observed_timestamp
        assert row["time"] == _timestamptz(record.timestamp)
        assert row["trace_id"] == span_context.trace_id.to_bytes(16, "big")
        assert row["span_id"] == span_context.span_id.to_bytes(8, "big")
        assert row["flags"] == int(record.trace_flags)  # the span's W3C trace flags
        assert row["flags"] & 1  # sampled
        assert row["service_name"] == "checkout"
        assert json.loads(row["resource"]) == dict(_resource().attributes)
        assert row["scope_name"] == f"checkout.payments.{tenant}"
        assert json.loads(row["attributes"]) == _plain(record.attributes)

    info, error = (json.loads(r["attributes"]) for r in rows)
    assert (info["order.id"], info["amount"]) == (42, 9.5)
    assert info["code.function.name"] == "_export_logs"
    assert info["code.file.path"] == __file__
    assert isinstance(info["code.line.number"], int)
    assert not any(key.startswith("exception.") for key in info)
    assert error["retryable"] is True
    assert (error["exception.type"], error["exception.message"]) == (
        "RuntimeError",
        "gateway timeout",
    )
    assert "RuntimeError: gateway timeout" in error["exception.stacktrace"]


# --------------------------------------------------------------------------- metrics


def _export_metrics(port: int | None, tenant: str) -> tuple[MetricExportResult, MetricsData]:
    """Record a counter (delta), an up-down counter, a histogram and an observable gauge,
    collect once, and export exactly that collection with the OTLP exporter."""
    reader = InMemoryMetricReader(preferred_temporality={Counter: AggregationTemporality.DELTA})
    provider = MeterProvider(resource=_resource(), metric_readers=[reader])
    meter = provider.get_meter("checkout.metrics", "3.1.0")

    payments = meter.create_counter("payments", unit="{payment}", description="Payments taken")
    payments.add(5, {"route": "/pay"})
    payments.add(2, {"route": "/pay"})
    queue = meter.create_up_down_counter("queue.depth", unit="{item}")
    queue.add(10.5)
    queue.add(-3.25)
    latency = meter.create_histogram("request.latency", unit="ms")
    for value in (3, 7, 120):
        latency.record(value, {"route": "/pay"})

    def temperature(options: CallbackOptions) -> list[Observation]:
        return [Observation(61.5, {"core": "0"})]

    meter.create_observable_gauge("cpu.temperature", callbacks=[temperature], unit="Cel")

    data = reader.get_metrics_data()
    assert data is not None
    exporter = OTLPMetricExporter(**_exporter_options(port, tenant))
    try:
        result = exporter.export(data)
    finally:
        exporter.shutdown()
        provider.shutdown()
    return result, data


async def test_sdk_metrics_are_stored_per_instrument(receiver, db, tenant) -> None:
    """Points from the SDK's OTLPMetricExporter are stored with the right metric type,
    temporality (delta counter, cumulative others), monotonicity, value (and value_int for
    integers), exact times, attributes and, for the histogram, the full distribution."""
    result, data = await asyncio.to_thread(_export_metrics, receiver.port, tenant)
    assert result == MetricExportResult.SUCCESS
    (resource_metrics,) = data.resource_metrics
    (scope_metrics,) = resource_metrics.scope_metrics
    sdk_points = {m.name: m.data.data_points for m in scope_metrics.metrics}

    rows = {
        row["metric_name"]: row
        for row in await db.fetch("SELECT * FROM metric_points WHERE tenant_id = $1", tenant)
    }
    assert set(rows) == {"payments", "queue.depth", "request.latency", "cpu.temperature"}
    for name, row in rows.items():
        (point,) = sdk_points[name]
        assert row["time_unix_nano"] == point.time_unix_nano, name
        assert row["time"] == _timestamptz(point.time_unix_nano), name
        assert row["start_time_unix_nano"] == (point.start_time_unix_nano or 0), name
        assert json.loads(row["attributes"]) == _plain(point.attributes), name
        assert row["service_name"] == "checkout"
        assert json.loads(row["resource"]) == dict(_resource().attributes)
        assert (row["scope_name"], row["scope_version"]) == ("checkout.metrics", "3.1.0")
        assert json.loads(row["exemplars"]) == []

    def summary(name: str) -> tuple[Any, ...]:
        row = rows[name]
        return (
            row["metric_type"],
            row["aggregation_temporality"],
            row["is_monotonic"],
            row["value"],
            row["value_int"],
        )

    assert summary("payments") == ("sum", 1, True, 7.0, 7)  # DELTA, as preferred
    assert (rows["payments"]["metric_unit"], rows["payments"]["metric_description"]) == (
        "{payment}",
        "Payments taken",
    )
    assert json.loads(rows["payments"]["attributes"]) == {"route": "/pay"}
    assert summary("queue.depth") == ("sum", 2, False, 7.25, None)
    assert summary("cpu.temperature") == ("gauge", 0, None, 61.5, None)
    assert json.loads(rows["cpu.temperature"]["attributes"]) == {"core": "0"}
    assert summary("request.latency") == ("histogram", 2, None, None, None)
    assert rows["payments"]["distribution"] is None

    (histogram_point,) = sdk_points["request.latency"]
    bounds = list(histogram_point.explicit_bounds)
    assert bounds[:8] == [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0]
    expected_counts = [0] * (len(bounds) + 1)
    expected_counts[1] = expected_counts[2] = expected_counts[7] = 1  # 3, 7 and 120
    assert json.loads(rows["request.latency"]["distribution"]) == {
        "count": 3,
        "sum": 130.0,
        "min": 3.0,
        "max": 120.0,
        "explicit_bounds": bounds,
        "bucket_counts": expected_counts,
    }
