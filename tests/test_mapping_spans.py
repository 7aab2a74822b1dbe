"""spans_to_rows: ExportTraceServiceRequest -> SpanRow (tier 1: pure code)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from receiver.mapping.common import UNKNOWN_SERVICE
from receiver.mapping.rows import PG_EPOCH_OFFSET_US, SpanRow, unix_nano_to_pg_us
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits

TENANT = "tenant-a"
JSON_FIELDS = ("attributes", "events", "links", "resource", "scope_attributes")
TEXT_FIELDS = (
    "tenant_id",
    "service_name",
    "name",
    "status_message",
    "trace_state",
    "resource_schema_url",
    "scope_name",
    "scope_version",
    "scope_schema_url",
)
MAX_UNIX_NANO = 2**63 - 1

TRACE_A = bytes.fromhex("5b8efff798038103d269b633813fc60c")
TRACE_B = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN_1 = bytes.fromhex("eee19b7ec3c1b174")
SPAN_2 = bytes.fromhex("b7ad6b7169203331")
SPAN_3 = bytes.fromhex("00f067aa0ba902b7")
SPAN_4 = bytes.fromhex("53995c3f42cd8ad8")
SPAN_5 = bytes.fromhex("1234567890abcdef")
SPAN_6 = bytes.fromhex("fedcba0987654321")
LINKED_TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
LINKED_SPAN = bytes.fromhex("00f067aa0ba902b8")

STACKTRACE = (
    "Traceback (most recent call last):\n"
    '  File "app.py", line 12, in pay\n'
    "    charge(card)\n"
    "ValueError: card declined"
)


def attr(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    assert isinstance(value, str)
    return AnyValue(string_value=value)


def decoded(row: SpanRow) -> SpanRow:
    """The row with its JSON columns parsed, for comparison with Python values."""
    return row._replace(**{field: orjson.loads(getattr(row, field)) for field in JSON_FIELDS})


def span(
    trace_id: bytes = TRACE_A, span_id: bytes = SPAN_1, start: int = 1_000, end: int = 2_000
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        name="op",
        start_time_unix_nano=start,
        end_time_unix_nano=end,
    )


def request_of(*spans: Span, resource: Resource | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource or Resource(attributes=[attr("service.name", "svc")]),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )


def sample_request() -> ExportTraceServiceRequest:
    """Two resources, three scopes, every span kind and status code, events, links."""
    checkout = ResourceSpans(
        resource=Resource(
            attributes=[
                attr("service.name", "checkout"),
                attr("host.name", "web-1"),
                attr("process.pid", 4242),
                attr("sampling.ratio", 0.25),
                attr("container", True),
            ],
            dropped_attributes_count=1,
        ),
        schema_url="https://opentelemetry.io/schemas/1.24.0",
        scope_spans=[
            ScopeSpans(
                scope=InstrumentationScope(
                    name="opentelemetry.instrumentation.flask",
                    version="0.45b0",
                    attributes=[attr("scope.attr", "x")],
                    dropped_attributes_count=2,
                ),
                schema_url="https://opentelemetry.io/schemas/1.21.0",
                spans=[
                    Span(
                        trace_id=TRACE_A,
                        span_id=SPAN_1,
                        trace_state="vendor=abc,other=1",
                        name="POST /pay",
                        kind=Span.SPAN_KIND_SERVER,
                        flags=0x301,
                        start_time_unix_nano=1_700_000_000_123_456_789,
                        end_time_unix_nano=1_700_000_000_987_654_321,
                        attributes=[
                            attr("http.route", "/pay"),
                            attr("http.status_code", 500),
                            attr("tags", ["a", "b"]),
                            attr("payload", b"\x00\x01\xff"),
                        ],
                        dropped_attributes_count=3,
                        events=[
                            Span.Event(
                                time_unix_nano=1_700_000_000_500_000_001,
                                name="exception",
                                attributes=[
                                    attr("exception.type", "ValueError"),
                                    attr("exception.message", "card declined"),
                                    attr("exception.stacktrace", STACKTRACE),
                                    attr("exception.escaped", True),
                                ],
                            ),
                            Span.Event(
                                time_unix_nano=1_700_000_000_600_000_999,
                                name="cache.miss",
                                attributes=[attr("cache.key", "k1")],
                                dropped_attributes_count=1,
                            ),
                        ],
                        dropped_events_count=4,
                        links=[
                            Span.Link(
                                trace_id=LINKED_TRACE,
                                span_id=LINKED_SPAN,
                                trace_state="linked=1",
                                attributes=[attr("link.kind", "follows")],
                                dropped_attributes_count=6,
                                flags=0x100,
                            )
                        ],
                        dropped_links_count=5,
                        status=Status(code=Status.STATUS_CODE_ERROR, message="card declined"),
                    ),
                    Span(
                        trace_id=TRACE_A,
                        span_id=SPAN_2,
                        parent_span_id=SPAN_1,
                        name="validate",
                        kind=Span.SPAN_KIND_INTERNAL,
                        start_time_unix_nano=1_700_000_000_200_000_000,
                        end_time_unix_nano=1_700_000_000_200_000_999,
                        status=Status(code=Status.STATUS_CODE_UNSET),
                    ),
                ],
            ),
            ScopeSpans(
                scope=InstrumentationScope(name="manual"),
                spans=[
                    Span(
                        trace_id=TRACE_A,
                        span_id=SPAN_3,
                        parent_span_id=SPAN_1,
                        name="charge",
                        kind=Span.SPAN_KIND_CLIENT,
                        start_time_unix_nano=1_700_000_000_300_000_001,
                        end_time_unix_nano=1_700_000_000_400_000_001,
                        status=Status(code=Status.STATUS_CODE_OK),
                    )
                ],
            ),
        ],
    )
    worker = ResourceSpans(
        resource=Resource(attributes=[attr("telemetry.sdk.language", "go")]),
        scope_spans=[
            ScopeSpans(
                spans=[
                    Span(
                        trace_id=TRACE_B,
                        span_id=SPAN_4,
                        name="publish",
                        kind=Span.SPAN_KIND_PRODUCER,
                        start_time_unix_nano=1_600_000_000_000_000_000,
                        end_time_unix_nano=1_600_000_000_000_001_500,
                    ),
                    Span(
                        trace_id=TRACE_B,
                        span_id=SPAN_5,
                        parent_span_id=SPAN_4,
                        name="consume",
                        kind=Span.SPAN_KIND_CONSUMER,
                        start_time_unix_nano=1_600_000_000_000_002_000,
                        end_time_unix_nano=1_600_000_000_000_002_000,
                    ),
                    Span(
                        trace_id=TRACE_B,
                        span_id=SPAN_6,
                        name="unspecified",
                        kind=Span.SPAN_KIND_UNSPECIFIED,
                        start_time_unix_nano=999,
                        end_time_unix_nano=1_001,
                    ),
                ]
            )
        ],
    )
    return ExportTraceServiceRequest(resource_spans=[checkout, worker])


def signal(trace_id: bytes, span_id: bytes) -> bytes:
    return hashlib.blake2b(trace_id + span_id, digest_size=16).digest()


CHECKOUT_RESOURCE = {
    "service.name": "checkout",
    "host.name": "web-1",
    "process.pid": 4242,
    "sampling.ratio": 0.25,
    "container": True,
}
FLASK_SCOPE: dict[str, Any] = {
    "resource": CHECKOUT_RESOURCE,
    "resource_dropped_attributes_count": 1,
    "resource_schema_url": "https://opentelemetry.io/schemas/1.24.0",
    "scope_name": "opentelemetry.instrumentation.flask",
    "scope_version": "0.45b0",
    "scope_attributes": {"scope.attr": "x"},
    "scope_dropped_attributes_count": 2,
    "scope_schema_url": "https://opentelemetry.io/schemas/1.21.0",
}
MANUAL_SCOPE = FLASK_SCOPE | {
    "scope_name": "manual",
    "scope_version": "",
    "scope_attributes": {},
    "scope_dropped_attributes_count": 0,
    "scope_schema_url": "",
}
WORKER_SCOPE = {
    "resource": {"telemetry.sdk.language": "go"},
    "resource_dropped_attributes_count": 0,
    "resource_schema_url": "",
    "scope_name": "",
    "scope_version": "",
    "scope_attributes": {},
    "scope_dropped_attributes_count": 0,
    "scope_schema_url": "",
}
PLAIN: dict[str, Any] = {
    "tenant_id": TENANT,
    "status_message": "",
    "trace_state": "",
    "flags": 0,
    "attributes": {},
    "dropped_attributes_count": 0,
    "events": [],
    "dropped_events_count": 0,
    "links": [],
    "dropped_links_count": 0,
}

EXPECTED_ROWS = [
    SpanRow(
        **PLAIN
        | FLASK_SCOPE
        | {
            "signal_id": signal(TRACE_A, SPAN_1),
            "trace_id": TRACE_A,
            "span_id": SPAN_1,
            "parent_span_id": None,
            "service_name": "checkout",
            "name": "POST /pay",
            "kind": 2,
            "start_time": 753_315_200_123_456,
            "end_time": 753_315_200_987_654,
            "start_time_unix_nano": 1_700_000_000_123_456_789,
            "end_time_unix_nano": 1_700_000_000_987_654_321,
            "status_code": 2,
            "status_message": "card declined",
            "trace_state": "vendor=abc,other=1",
            "flags": 0x301,
            "attributes": {
                "http.route": "/pay",
                "http.status_code": 500,
                "tags": ["a", "b"],
                "payload": {"@bytes": "AAH/"},
            },
            "dropped_attributes_count": 3,
            "events": [
                {
                    "time_unix_nano": 1_700_000_000_500_000_001,
                    "name": "exception",
                    "attributes": {
                        "exception.type": "ValueError",
                        "exception.message": "card declined",
                        "exception.stacktrace": STACKTRACE,
                        "exception.escaped": True,
                    },
                    "dropped_attributes_count": 0,
                },
                {
                    "time_unix_nano": 1_700_000_000_600_000_999,
                    "name": "cache.miss",
                    "attributes": {"cache.key": "k1"},
                    "dropped_attributes_count": 1,
                },
            ],
            "dropped_events_count": 4,
            "links": [
                {
                    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "span_id": "00f067aa0ba902b8",
                    "trace_state": "linked=1",
                    "attributes": {"link.kind": "follows"},
                    "dropped_attributes_count": 6,
                    "flags": 0x100,
                }
            ],
            "dropped_links_count": 5,
        }
    ),
    SpanRow(
        **PLAIN
        | FLASK_SCOPE
        | {
            "signal_id": signal(TRACE_A, SPAN_2),
            "trace_id": TRACE_A,
            "span_id": SPAN_2,
            "parent_span_id": SPAN_1,
            "service_name": "checkout",
            "name": "validate",
            "kind": 1,
            "start_time": 753_315_200_200_000,
            "end_time": 753_315_200_200_000,
            "start_time_unix_nano": 1_700_000_000_200_000_000,
            "end_time_unix_nano": 1_700_000_000_200_000_999,
            "status_code": 0,
        }
    ),
    SpanRow(
        **PLAIN
        | MANUAL_SCOPE
        | {
            "signal_id": signal(TRACE_A, SPAN_3),
            "trace_id": TRACE_A,
            "span_id": SPAN_3,
            "parent_span_id": SPAN_1,
            "service_name": "checkout",
            "name": "charge",
            "kind": 3,
            "start_time": 753_315_200_300_000,
            "end_time": 753_315_200_400_000,
            "start_time_unix_nano": 1_700_000_000_300_000_001,
            "end_time_unix_nano": 1_700_000_000_400_000_001,
            "status_code": 1,
        }
    ),
    SpanRow(
        **PLAIN
        | WORKER_SCOPE
        | {
            "signal_id": signal(TRACE_B, SPAN_4),
            "trace_id": TRACE_B,
            "span_id": SPAN_4,
            "parent_span_id": None,
            "service_name": UNKNOWN_SERVICE,
            "name": "publish",
            "kind": 4,
            "start_time": 653_315_200_000_000,
            "end_time": 653_315_200_000_001,
            "start_time_unix_nano": 1_600_000_000_000_000_000,
            "end_time_unix_nano": 1_600_000_000_000_001_500,
            "status_code": 0,
        }
    ),
    SpanRow(
        **PLAIN
        | WORKER_SCOPE
        | {
            "signal_id": signal(TRACE_B, SPAN_5),
            "trace_id": TRACE_B,
            "span_id": SPAN_5,
            "parent_span_id": SPAN_4,
            "service_name": UNKNOWN_SERVICE,
            "name": "consume",
            "kind": 5,
            "start_time": 653_315_200_000_002,
            "end_time": 653_315_200_000_002,
            "start_time_unix_nano": 1_600_000_000_000_002_000,
            "end_time_unix_nano": 1_600_000_000_000_002_000,
            "status_code": 0,
        }
    ),
    SpanRow(
        **PLAIN
        | WORKER_SCOPE
        | {
            "signal_id": signal(TRACE_B, SPAN_6),
            "trace_id": TRACE_B,
            "span_id": SPAN_6,
            "parent_span_id": None,
            "service_name": UNKNOWN_SERVICE,
            "name": "unspecified",
            "kind": 0,
            "start_time": -946_684_800_000_000,
            "end_time": -946_684_800_000_000 + 1,
            "start_time_unix_nano": 999,
            "end_time_unix_nano": 1_001,
            "status_code": 0,
        }
    ),
]


def test_sample_request_maps_to_the_expected_rows() -> None:
    """Every field of every span, resource and scope lands in its column, in request order."""
    mapped = spans_to_rows(sample_request(), TENANT, Limits())
    assert (mapped.rejected, mapped.problems, bool(mapped.cuts)) == (0, [], False)
    assert mapped.error_message() == ""
    assert len(mapped.rows) == len(EXPECTED_ROWS)
    for row, expected in zip(mapped.rows, EXPECTED_ROWS, strict=True):
        assert decoded(row) == expected


def test_rows_follow_the_copy_column_order() -> None:
    """Rows are SpanRow tuples, so their positions are the COPY column order."""
    mapped = spans_to_rows(sample_request(), TENANT, Limits())
    for row in mapped.rows:
        assert type(row) is SpanRow
        assert tuple(row) == tuple(getattr(row, field) for field in SpanRow._fields)


@pytest.mark.parametrize(
    ("unix_nano", "pg_us"),
    [
        (0, -946_684_800_000_000),
        (999, -946_684_800_000_000),
        (1_000, -946_684_799_999_999),
        (946_684_800_000_000_000, 0),
        (946_684_800_000_000_999, 0),
        (1_700_000_000_123_456_789, 753_315_200_123_456),
        (MAX_UNIX_NANO, 9_223_372_036_854_775 - 946_684_800_000_000),
    ],
)
def test_times_keep_nanoseconds_and_floor_to_postgres_microseconds(
    unix_nano: int, pg_us: int
) -> None:
    """*_unix_nano keep the exact nanoseconds; start/end_time are floor(ns/1000) - 2000-01-01."""
    mapped = spans_to_rows(request_of(span(start=unix_nano, end=unix_nano)), TENANT, Limits())
    (row,) = mapped.rows
    assert (row.start_time_unix_nano, row.end_time_unix_nano) == (unix_nano, unix_nano)
    assert (row.start_time, row.end_time) == (pg_us, pg_us)
    assert unix_nano_to_pg_us(unix_nano) == pg_us
    assert PG_EPOCH_OFFSET_US == 946_684_800_000_000


@pytest.mark.parametrize(
    ("resource", "service_name"),
    [
        (Resource(attributes=[attr("service.name", "payments")]), "payments"),
        (Resource(attributes=[attr("service.name", "pay\x00ments")]), "pay\ufffdments"),
        (Resource(), UNKNOWN_SERVICE),
        (Resource(attributes=[attr("host.name", "h")]), UNKNOWN_SERVICE),
        (Resource(attributes=[attr("service.name", "")]), UNKNOWN_SERVICE),
        (Resource(attributes=[attr("service.name", 42)]), UNKNOWN_SERVICE),
        (Resource(attributes=[attr("service.name", True)]), UNKNOWN_SERVICE),
        (Resource(attributes=[attr("service.name", b"svc")]), UNKNOWN_SERVICE),
        (Resource(attributes=[attr("service.name", ["svc"])]), UNKNOWN_SERVICE),
    ],
    ids=["string", "NUL", "no attributes", "missing", "empty", "int", "bool", "bytes", "array"],
)
def test_service_name_comes_from_the_resource(resource: Resource, service_name: str) -> None:
    """service_name is the resource's string `service.name`, else `unknown_service`."""
    (row,) = spans_to_rows(request_of(span(), resource=resource), TENANT, Limits()).rows
    assert row.service_name == service_name


REJECTIONS = {
    "short trace_id": (
        {"trace_id": TRACE_B[:15]},
        "span 1234567890abcdef: trace_id must be 16 non-zero bytes, got 15",
    ),
    "long trace_id": (
        {"trace_id": TRACE_B + b"\x01"},
        "span 1234567890abcdef: trace_id must be 16 non-zero bytes, got 17",
    ),
    "empty trace_id": (
        {"trace_id": b""},
        "span 1234567890abcdef: trace_id must be 16 non-zero bytes, got 0",
    ),
    "all-zero trace_id": (
        {"trace_id": bytes(16)},
        "span 1234567890abcdef: trace_id must be 16 non-zero bytes, got 16",
    ),
    "short span_id": (
        {"span_id": SPAN_5[:7]},
        f"span in trace {TRACE_B.hex()}: span_id must be 8 non-zero bytes, got 7",
    ),
    "empty span_id": (
        {"span_id": b""},
        f"span in trace {TRACE_B.hex()}: span_id must be 8 non-zero bytes, got 0",
    ),
    "all-zero span_id": (
        {"span_id": bytes(8)},
        f"span in trace {TRACE_B.hex()}: span_id must be 8 non-zero bytes, got 8",
    ),
    "parent_span_id of 4 bytes": (
        {"parent_span_id": SPAN_4[:4]},
        "span 1234567890abcdef: parent_span_id must be empty or 8 bytes",
    ),
    "parent_span_id of 16 bytes": (
        {"parent_span_id": TRACE_A},
        "span 1234567890abcdef: parent_span_id must be empty or 8 bytes",
    ),
    "end before start": (
        {"start_time_unix_nano": 2_001, "end_time_unix_nano": 2_000},
        "span 1234567890abcdef: end_time_unix_nano is before start_time_unix_nano",
    ),
    "end beyond 2**63-1": (
        {"end_time_unix_nano": 2**63},
        "span 1234567890abcdef: end_time_unix_nano is beyond year 2262",
    ),
    "start and end beyond 2**63-1": (
        {"start_time_unix_nano": 2**63, "end_time_unix_nano": 2**64 - 1},
        "span 1234567890abcdef: end_time_unix_nano is beyond year 2262",
    ),
    "start beyond 2**63-1, end before it": (
        {"start_time_unix_nano": 2**64 - 1, "end_time_unix_nano": 2_000},
        "span 1234567890abcdef: end_time_unix_nano is before start_time_unix_nano",
    ),
}


@pytest.mark.parametrize(("change", "problem"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_an_invalid_span_is_rejected_alone(change: dict[str, Any], problem: str) -> None:
    """One bad span is counted and described; the valid spans around it are still stored."""
    bad = span(trace_id=TRACE_B, span_id=SPAN_5)
    for field, value in change.items():
        setattr(bad, field, value)
    request = request_of(span(span_id=SPAN_1), bad, span(span_id=SPAN_2))
    mapped = spans_to_rows(request, TENANT, Limits())
    assert [row.span_id for row in mapped.rows] == [SPAN_1, SPAN_2]
    assert mapped.rejected == 1
    assert mapped.rejected + len(mapped.rows) == 3
    assert mapped.problems == [problem]
    assert mapped.error_message() == f"rejected 1: {problem}"


def test_boundary_values_are_accepted() -> None:
    """end == start and end == 2**63-1 are valid; an 8-byte parent is kept."""
    request = request_of(
        span(span_id=SPAN_1, start=5, end=5),
        span(span_id=SPAN_2, start=MAX_UNIX_NANO, end=MAX_UNIX_NANO),
    )
    request.resource_spans[0].scope_spans[0].spans[1].parent_span_id = SPAN_1
    mapped = spans_to_rows(request, TENANT, Limits())
    assert mapped.rejected == 0
    assert [row.parent_span_id for row in mapped.rows] == [None, SPAN_1]
    assert mapped.rows[1].end_time_unix_nano == MAX_UNIX_NANO


@pytest.mark.parametrize(
    ("bad_spans", "suffix"), [(5, ""), (6, "; and 1 more"), (9, "; and 4 more")]
)
def test_error_message_names_the_first_five_problems(bad_spans: int, suffix: str) -> None:
    """The partial-success message lists the first 5 problems and counts the rest."""
    bad = [span(trace_id=bytes([n + 1]) * 15) for n in range(bad_spans)]
    mapped = spans_to_rows(request_of(span(), *bad), TENANT, Limits())
    assert (mapped.rejected, len(mapped.rows)) == (bad_spans, 1)
    assert len(mapped.problems) == 5
    problems = "; ".join(["span eee19b7ec3c1b174: trace_id must be 16 non-zero bytes, got 15"] * 5)
    assert mapped.error_message() == f"rejected {bad_spans}: {problems}{suffix}"


def test_limits_drop_and_truncate_attributes_everywhere() -> None:
    """The count limit drops extras (added to dropped_attributes_count), the length limit cuts
    strings and bytes; nothing is rejected, and the message is only a warning."""
    limited = Span(
        trace_id=TRACE_A,
        span_id=SPAN_1,
        name="a very long span name is not an attribute",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes=[attr("s", "abcdefgh"), attr("b", b"123456"), attr("i", 1234567)],
        dropped_attributes_count=10,
        events=[
            Span.Event(
                name="exception",
                attributes=[attr("exception.type", "ValueError"), attr("x", 1), attr("y", 2)],
            )
        ],
        links=[
            Span.Link(
                trace_id=TRACE_B,
                span_id=SPAN_2,
                attributes=[attr("k", "linked-value")],
                dropped_attributes_count=1,
            )
        ],
    )
    resource = Resource(attributes=[attr("service.name", "svc"), attr("a", 1), attr("b", 2)])
    mapped = spans_to_rows(
        request_of(limited, resource=resource),
        TENANT,
        Limits(attribute_value_length=4, attribute_count=2),
    )
    (row,) = map(decoded, mapped.rows)
    assert row.name == "a very long span name is not an attribute"
    assert row.attributes == {"s": "abcd", "b": {"@bytes": "MTIzNA=="}}
    assert row.dropped_attributes_count == 11
    assert row.events[0]["attributes"] == {"exception.type": "Valu", "x": 1}
    assert row.events[0]["dropped_attributes_count"] == 1
    assert row.links[0]["attributes"] == {"k": "link"}
    assert row.links[0]["dropped_attributes_count"] == 1
    assert row.resource == {"service.name": "svc", "a": 1}
    assert row.resource_dropped_attributes_count == 1
    assert row.service_name == "svc"
    assert mapped.rejected == 0
    assert (mapped.cuts.truncated_values, mapped.cuts.dropped_attributes) == (4, 3)
    assert mapped.error_message() == (
        "warning: limits applied: 4 value(s) truncated, 3 attribute(s) dropped"
    )


def test_rejections_and_warning_share_the_message() -> None:
    """With both rejections and cuts, the message has both parts, rejections first."""
    long_value = span(span_id=SPAN_2)
    long_value.attributes.append(attr("k", "x" * 20))
    mapped = spans_to_rows(
        request_of(span(span_id=b"\x01"), long_value), TENANT, Limits(attribute_value_length=8)
    )
    assert mapped.error_message() == (
        f"rejected 1: span in trace {TRACE_A.hex()}: span_id must be 8 non-zero bytes, got 1"
        " | warning: limits applied: 1 value(s) truncated, 0 attribute(s) dropped"
    )


def test_nul_characters_are_replaced_in_text_and_json() -> None:
    """PostgreSQL cannot store U+0000: text columns and JSON strings get U+FFFD instead."""
    nul = Span(
        trace_id=TRACE_A,
        span_id=SPAN_1,
        name="a\x00b",
        trace_state="t\x00s",
        status=Status(message="m\x00"),
        attributes=[attr("k\x00", "v\x00"), attr("literal", "\\u0000")],
        events=[Span.Event(name="e\x00")],
        links=[Span.Link(trace_id=TRACE_B, span_id=SPAN_2, trace_state="l\x00")],
    )
    scope = InstrumentationScope(name="s\x00", version="v\x00")
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[attr("service.name", "svc\x00")]),
                schema_url="r\x00",
                scope_spans=[ScopeSpans(scope=scope, schema_url="u\x00", spans=[nul])],
            )
        ]
    )
    (raw,) = spans_to_rows(request, TENANT, Limits()).rows
    assert_row_storable(raw)
    row = decoded(raw)
    assert (row.name, row.trace_state, row.status_message) == ("a\ufffdb", "t\ufffds", "m\ufffd")
    assert (row.service_name, row.scope_name, row.scope_version) == (
        "svc\ufffd",
        "s\ufffd",
        "v\ufffd",
    )
    assert (row.resource_schema_url, row.scope_schema_url) == ("r\ufffd", "u\ufffd")
    assert row.attributes == {"k\ufffd": "v\ufffd", "literal": "\\u0000"}
    assert row.events[0]["name"] == "e\ufffd"
    assert row.links[0]["trace_state"] == "l\ufffd"


def test_a_retried_span_gets_the_same_signal_id() -> None:
    """Signal ids derive from (trace_id, span_id): mapping the same span again, even with other
    content or another tenant, gives the same id, so a retried export deduplicates."""
    first = spans_to_rows(sample_request(), TENANT, Limits())
    retried = sample_request()
    retried.resource_spans[0].scope_spans[0].spans[0].name = "renamed"
    second = spans_to_rows(retried, "other-tenant", Limits())
    assert [r.signal_id for r in first.rows] == [r.signal_id for r in second.rows]


def test_distinct_spans_get_distinct_signal_ids() -> None:
    """Spans differing in trace_id or span_id have different 16-byte signal ids."""
    request = request_of(
        span(TRACE_A, SPAN_1),
        span(TRACE_A, SPAN_2),
        span(TRACE_B, SPAN_1),
        span(TRACE_B, SPAN_2),
    )
    ids = [row.signal_id for row in spans_to_rows(request, TENANT, Limits()).rows]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert all(len(i) == 16 for i in ids)


# --- properties -------------------------------------------------------------------------

_ESCAPED_NUL = re.compile(rb"\\u0000")


def assert_pg_json(data: bytes) -> None:
    """Valid JSON with no escaped NUL (a \\u0000 must be preceded by an odd number of '\\')."""
    parsed = orjson.loads(data)
    for match in _ESCAPED_NUL.finditer(data):
        before = data[: match.start()]
        assert (len(before) - len(before.rstrip(b"\\"))) % 2 == 1, data
    stack = [parsed]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            assert "\x00" not in item
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])


def assert_row_storable(row: SpanRow) -> None:
    for field in JSON_FIELDS:
        assert_pg_json(getattr(row, field))
    for field in TEXT_FIELDS:
        assert "\x00" not in getattr(row, field)


TEXTS = st.one_of(
    st.text(max_size=6),
    st.text(alphabet='\x00\\u0"é😀a', max_size=6),
    st.sampled_from(["\x00", "\\u0000", "\\\x00", "a\x00b"]),
)
TIMES = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 999, MAX_UNIX_NANO - 1, MAX_UNIX_NANO, 2**63, 2**64 - 1]),
)
TRACE_IDS = st.one_of(
    st.binary(min_size=16, max_size=16), st.binary(max_size=20), st.just(bytes(16))
)
SPAN_IDS = st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=10), st.just(bytes(8)))
SCALARS = st.one_of(
    TEXTS.map(lambda s: AnyValue(string_value=s)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=6).map(lambda b: AnyValue(bytes_value=b)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.builds(AnyValue),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3).map(
        lambda items: AnyValue(array_value=ArrayValue(values=items))
    ),
    max_leaves=6,
)
ATTRIBUTES = st.lists(
    st.builds(
        KeyValue, key=st.one_of(TEXTS, st.sampled_from(["service.name", "@bytes"])), value=VALUES
    ),
    max_size=4,
)
EVENTS = st.builds(Span.Event, time_unix_nano=TIMES, name=TEXTS, attributes=ATTRIBUTES)
LINKS = st.builds(
    Span.Link, trace_id=TRACE_IDS, span_id=SPAN_IDS, trace_state=TEXTS, attributes=ATTRIBUTES
)
SPAN_CONTENT = st.builds(
    Span,
    name=TEXTS,
    kind=st.integers(0, 5),
    trace_state=TEXTS,
    flags=st.integers(0, 2**32 - 1),
    attributes=ATTRIBUTES,
    dropped_attributes_count=st.integers(0, 2**32 - 1),
    events=st.lists(EVENTS, max_size=2),
    links=st.lists(LINKS, max_size=2),
    status=st.builds(Status, code=st.integers(0, 2), message=TEXTS),
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    """A span with valid ids and times, then (often) one field replaced by an arbitrary value."""
    span = draw(SPAN_CONTENT)
    span.trace_id = draw(st.binary(min_size=16, max_size=16).filter(any))
    span.span_id = draw(st.binary(min_size=8, max_size=8).filter(any))
    span.parent_span_id = draw(st.sampled_from([b"", draw(st.binary(min_size=8, max_size=8))]))
    span.start_time_unix_nano = draw(st.integers(0, MAX_UNIX_NANO))
    span.end_time_unix_nano = min(
        MAX_UNIX_NANO, span.start_time_unix_nano + draw(st.integers(0, 10**12))
    )
    corrupt = draw(st.sampled_from(["", "", "", "trace", "span", "parent", "start", "end"]))
    if corrupt == "trace":
        span.trace_id = draw(TRACE_IDS)
    elif corrupt == "span":
        span.span_id = draw(SPAN_IDS)
    elif corrupt == "parent":
        span.parent_span_id = draw(SPAN_IDS)
    elif corrupt == "start":
        span.start_time_unix_nano = draw(TIMES)
    elif corrupt == "end":
        span.end_time_unix_nano = draw(TIMES)
    return span


SCOPE_SPANS = st.builds(
    ScopeSpans,
    scope=st.builds(InstrumentationScope, name=TEXTS, version=TEXTS, attributes=ATTRIBUTES),
    spans=st.lists(spans(), max_size=4),
    schema_url=TEXTS,
)
REQUESTS = st.builds(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            ResourceSpans,
            resource=st.builds(Resource, attributes=ATTRIBUTES),
            scope_spans=st.lists(SCOPE_SPANS, max_size=2),
            schema_url=TEXTS,
        ),
        max_size=2,
    ),
)
LIMITS = st.builds(
    Limits, attribute_value_length=st.integers(0, 8), attribute_count=st.integers(0, 5)
) | st.just(Limits())


@settings(max_examples=150, deadline=None)
@given(REQUESTS, LIMITS)
def test_any_request_maps_and_accounts_for_every_span(
    request: ExportTraceServiceRequest, limits: Limits
) -> None:
    """Any request, valid or not, maps without raising; rejected + stored == sent; every stored
    row has valid ids and storable text and JSON."""
    mapped = spans_to_rows(request, TENANT, limits)
    sent = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    assert mapped.rejected + len(mapped.rows) == sent
    assert len(mapped.problems) == min(mapped.rejected, 5)
    assert mapped.error_message().startswith("rejected ") == (mapped.rejected > 0)
    for row in mapped.rows:
        assert len(row.trace_id) == 16
        assert row.trace_id != bytes(16)
        assert len(row.span_id) == 8
        assert row.parent_span_id is None or len(row.parent_span_id) == 8
        assert row.start_time_unix_nano <= row.end_time_unix_nano <= MAX_UNIX_NANO
        assert row.start_time == row.start_time_unix_nano // 1000 - PG_EPOCH_OFFSET_US
        assert row.end_time == row.end_time_unix_nano // 1000 - PG_EPOCH_OFFSET_US
        assert row.signal_id == signal(row.trace_id, row.span_id)
        assert_row_storable(row)
