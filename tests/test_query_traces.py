"""GetTrace against a real receiver: what went in through OTLP comes back out equal.

Spans go in through the OpenTelemetry SDK's OTLP exporter (and, for what the SDK cannot
produce, as raw OTLP through the Export stub); they come back through a real gRPC client.
"Equal" is protobuf equality up to the order of items (resources, scopes, spans,
attributes), which is what storing them can change.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState
from test_query_server import as_tenant, export_spans, kv, simple_spans, status_details

from prodsentinel.v1 import query_pb2

pytest_plugins = ["test_query_server"]
pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")

KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"


def _sorted_key_values(message: Message) -> None:
    """Sort every repeated KeyValue field by key, recursively (storage keeps no order)."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        items = list(value) if field.is_repeated else [value]
        for item in items:
            _sorted_key_values(item)
        if field.is_repeated and field.message_type.full_name == KEY_VALUE:
            ordered = sorted(items, key=lambda item: item.key)
            copies = [type(item)() for item in ordered]
            for copy, item in zip(copies, ordered, strict=True):
                copy.CopyFrom(item)
            del value[:]
            value.extend(copies)


def _canonical(message: Message) -> bytes:
    copy = type(message)()
    copy.CopyFrom(message)
    _sorted_key_values(copy)
    return copy.SerializeToString(deterministic=True)


def span_set(resource_spans: Any) -> collections.Counter[tuple[bytes, ...]]:
    """Each span with its resource and scope, as canonical bytes, in a multiset."""
    out: collections.Counter[tuple[bytes, ...]] = collections.Counter()
    for resource_group in resource_spans:
        resource = (_canonical(resource_group.resource), resource_group.schema_url.encode())
        for scope_group in resource_group.scope_spans:
            scope = (_canonical(scope_group.scope), scope_group.schema_url.encode())
            for span in scope_group.spans:
                out[(*resource, *scope, _canonical(span))] += 1
    return out


def log_set(resource_logs: Any) -> collections.Counter[tuple[bytes, ...]]:
    out: collections.Counter[tuple[bytes, ...]] = collections.Counter()
    for resource_group in resource_logs:
        resource = (_canonical(resource_group.resource), resource_group.schema_url.encode())
        for scope_group in resource_group.scope_logs:
            scope = (_canonical(scope_group.scope), scope_group.schema_url.encode())
            for record in scope_group.log_records:
                out[(*resource, *scope, _canonical(record))] += 1
    return out


# --------------------------------------------------------------------------- SDK


def _record_with_sdk(port: int | None, tenant: str) -> tuple[list[Any], list[Any], int]:
    """Two services (two providers, two resources) record one trace that continues a
    remote parent with a trace state; the child logs through the SDK's LoggingHandler.
    Returns the finished spans, the log records and the trace id."""
    options = {
        "endpoint": f"127.0.0.1:{port}",
        "insecure": True,
        "headers": {"x-scope-orgid": tenant},
    }
    spans: list[Any] = []
    providers = []
    for service in ("checkout", "payments"):
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "host.cores": 8}, "https://x/1.26")
        )
        memory = _Collect(spans)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(**options)))
        providers.append(provider)
    log_provider = LoggerProvider(resource=providers[1].resource)
    records: list[Any] = []
    log_provider.add_log_record_processor(SimpleLogRecordProcessor(_Collect(records)))
    log_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(**options)))
    logger = logging.getLogger(f"payments.{tenant}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=log_provider)
    logger.addHandler(handler)

    remote = SpanContext(
        trace_id=int.from_bytes(os.urandom(16), "big") | 1,
        span_id=int.from_bytes(os.urandom(8), "big") | 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "abc"), ("other", "1")]),
    )
    linked = SpanContext(int.from_bytes(os.urandom(16), "big") | 1, 7, is_remote=False)
    checkout = providers[0].get_tracer("checkout.http", "1.0", attributes={"team": "web"})
    payments = providers[1].get_tracer("payments.core", "2.1", schema_url="https://x/1.24")
    parent = otel_trace.set_span_in_context(NonRecordingSpan(remote))
    try:
        with checkout.start_as_current_span(
            "POST /pay",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.route": "/pay", "retry": False, "ratio": 0.5, "tags": ("a", "b")},
            links=[Link(linked, {"why": "batch", "n": 3})],
        ) as root:
            root.add_event("accepted", {"queue.depth": 4, "weights": (1.5, 2.0)})
            token = otel_context.attach(otel_trace.set_span_in_context(root))
            try:
                with payments.start_as_current_span(
                    "charge", kind=SpanKind.CLIENT, attributes={"amount": 19.99, "ids": (1, 2)}
                ) as child:
                    logger.warning("charge slow", extra={"attempt": 2})
                    child.set_status(Status(StatusCode.ERROR, "card declined"))
                    with payments.start_as_current_span("db", kind=SpanKind.INTERNAL):
                        pass
            finally:
                otel_context.detach(token)
    finally:
        logger.removeHandler(handler)
        for provider in providers:
            provider.shutdown()
        log_provider.shutdown()
    return spans, records, remote.trace_id


class _Collect:
    """An in-memory exporter for both spans and log records."""

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def export(self, batch: Any) -> Any:
        self.into.extend(batch)
        return 0  # SUCCESS for both SpanExportResult and LogExportResult

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


async def test_sdk_trace_round_trips_with_its_logs(receiver, query, tenant) -> None:
    """A trace recorded by the SDK across two services (two resources, three scopes),
    with a remote parent's trace state, a link, events, an error status and typed and
    array attributes, comes back from GetTrace equal to what the SDK exporter encoded;
    the log record written inside it comes back under `logs`."""
    spans, records, trace_id = await asyncio.to_thread(_record_with_sdk, receiver.port, tenant)
    assert len(spans) == 3
    assert len(records) == 1

    response = await query.GetTrace(
        query_pb2.GetTraceRequest(trace_id=f"{trace_id:032x}"), metadata=as_tenant(tenant)
    )

    sent = encode_spans(spans)
    assert span_set(response.trace.resource_spans) == span_set(sent.resource_spans)
    assert len(response.trace.resource_spans) == 2  # grouped by resource as received
    assert log_set(response.logs.resource_logs) == log_set(encode_logs(records).resource_logs)
    assert not response.spans_truncated
    assert not response.logs_truncated


# --------------------------------------------------------------------------- raw OTLP


def _every_kind() -> dict[str, AnyValue]:
    """One attribute per AnyValue kind and edge the SDK cannot produce."""
    values: dict[str, Any] = {
        "string": "zoë ☕",
        "empty_string": "",
        "bool": True,
        "int_min": -(2**63),
        "int_max": 2**63 - 1,
        "double": -1.25,
        "nan": math.nan,
        "inf": math.inf,
        "minus_inf": -math.inf,
        "bytes": b"\x00\xffraw",
        "empty_bytes": b"",
        "array": ["a", 1, 2.5, False, b"\x01", ["nested"], {"k": "v"}],
        "empty_array": [],
        "kvlist": {"inner": {"deeper": [1, 2]}, "flag": True, "blob": b"\x02"},
        "empty_kvlist": {},
        "tag_like_kvlist": {"@bytes": "not base64!"},
        "double_tag_like": {"@double": "NaN"},
    }
    out = {key: kv(key, value).value for key, value in values.items()}
    out["empty_value"] = AnyValue()
    return out


def _raw_trace(trace_id: bytes, start: int) -> ExportTraceServiceRequest:
    """Two resources, one with two scopes; spans with every field set."""
    request = ExportTraceServiceRequest()
    first = request.resource_spans.add(schema_url="https://schemas/r1")
    first.resource.attributes.extend([kv("service.name", "raw-a"), kv("bytes", b"\x03")])
    first.resource.dropped_attributes_count = 2
    second = request.resource_spans.add()
    second.resource.attributes.append(kv("service.name", "raw-b"))
    root_id = os.urandom(8)
    for index, resource_spans in enumerate((first, first, second)):
        scope_spans = resource_spans.scope_spans.add(schema_url=f"https://schemas/s{index}")
        scope_spans.scope.name = f"scope-{index}"
        scope_spans.scope.version = "1.0" if index else ""
        scope_spans.scope.attributes.append(kv("scope.kind", {"k": [1.5]}))
        scope_spans.scope.dropped_attributes_count = index
        span = scope_spans.spans.add(
            trace_id=trace_id,
            span_id=root_id if index == 0 else os.urandom(8),
            parent_span_id=b"" if index == 0 else root_id,
            trace_state="vendor=x,other=y",
            flags=0x301,
            name=f"span-{index}",
            kind=index + 1,
            start_time_unix_nano=start + index * 1_000_001,
            end_time_unix_nano=start + index * 1_000_001 + 123_456_789,
            dropped_attributes_count=3,
            dropped_events_count=4,
            dropped_links_count=5,
        )
        for key, value in _every_kind().items():
            span.attributes.add(key=key).value.CopyFrom(value)
        event = span.events.add(time_unix_nano=start + 7, name="boom", dropped_attributes_count=1)
        event.attributes.extend([kv("nan", math.nan), kv("list", [b"\x09", {"x": 1}])])
        span.events.add(time_unix_nano=start + 8, name="empty")
        link = span.links.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            trace_state="l=1",
            dropped_attributes_count=6,
            flags=0x100,
        )
        link.attributes.append(kv("kv", {"a": {"b": "c"}}))
        span.status.code = index % 3
        span.status.message = "bad" if index == 2 else ""
    return request


async def test_raw_trace_with_every_value_kind_round_trips(receiver, query, tenant) -> None:
    """Raw OTLP with every AnyValue kind (bytes, nested arrays and kvlists, NaN and
    infinities, extreme ints, empty values, kvlists that look like storage tags), events,
    links, trace states, flags, dropped counts, schema URLs and scope attributes comes back
    from GetTrace equal, with the nanosecond times untouched."""
    trace_id = os.urandom(16)
    sent = _raw_trace(trace_id, 1_800_000_000_123_456_789)
    await export_spans(receiver.port, tenant, sent)

    response = await query.GetTrace(
        query_pb2.GetTraceRequest(trace_id=trace_id.hex().upper()), metadata=as_tenant(tenant)
    )

    assert span_set(response.trace.resource_spans) == span_set(sent.resource_spans)
    # grouping: resource raw-a holds two scopes, raw-b one
    shape = sorted(len(group.scope_spans) for group in response.trace.resource_spans)
    assert shape == [1, 2]
    assert len(response.logs.resource_logs) == 0


async def test_unknown_trace_is_not_found(receiver, query, tenant) -> None:
    """A well-formed trace id the tenant has no span of gets NOT_FOUND."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.GetTrace(
            query_pb2.GetTraceRequest(trace_id=os.urandom(16).hex()), metadata=as_tenant(tenant)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("bad", ["", "abc", "zz" * 16, "0" * 31, "0" * 33, " " + "0" * 31])
async def test_malformed_trace_id_is_invalid_argument(query, tenant, bad) -> None:
    """A trace id that is not 32 hex characters gets INVALID_ARGUMENT naming trace_id."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.GetTrace(query_pb2.GetTraceRequest(trace_id=bad), metadata=as_tenant(tenant))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in status_details(caught.value)] == ["trace_id"]


async def test_another_tenant_cannot_read_the_trace(receiver, query, tenant) -> None:
    """Tenant A's trace is NOT_FOUND for tenant B, and B writing spans of the same trace
    id does not mix them into A's answer."""
    trace_id, start = os.urandom(16), 1_800_000_000_000_000_000
    other = f"{tenant}-other"
    await export_spans(
        receiver.port,
        tenant,
        simple_spans([{"service": "a", "name": "mine", "trace_id": trace_id, "start": start}]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await query.GetTrace(
            query_pb2.GetTraceRequest(trace_id=trace_id.hex()), metadata=as_tenant(other)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    await export_spans(
        receiver.port,
        other,
        simple_spans([{"service": "b", "name": "theirs", "trace_id": trace_id, "start": start}]),
    )
    for who, name in ((tenant, "mine"), (other, "theirs")):
        response = await query.GetTrace(
            query_pb2.GetTraceRequest(trace_id=trace_id.hex()), metadata=as_tenant(who)
        )
        names = [
            span.name
            for group in response.trace.resource_spans
            for scope in group.scope_spans
            for span in scope.spans
        ]
        assert names == [name]
