"""logs_to_rows: ExportLogsServiceRequest -> LogRow (tier 1: pure code)."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from receiver.mapping.common import UNKNOWN_SERVICE
from receiver.mapping.logs import logs_to_rows
from receiver.mapping.rows import PG_EPOCH_OFFSET_US, LogRow
from receiver.settings import Limits

TENANT = "tenant-a"
JSON_FIELDS = ("body", "attributes", "resource", "scope_attributes")
TEXT_FIELDS = (
    "tenant_id",
    "service_name",
    "severity_text",
    "event_name",
    "resource_schema_url",
    "scope_name",
    "scope_version",
    "scope_schema_url",
)
MAX_UNIX_NANO = 2**63 - 1
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
T1 = 1_700_000_000_123_456_789  # pg microseconds: 753_315_200_123_456
T2 = 1_700_000_001_000_000_999  # pg microseconds: 753_315_201_000_000


def attr(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def s(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def decoded(row: LogRow) -> LogRow:
    """The row with its JSON columns parsed, for comparison with Python values."""
    return row._replace(**{field: orjson.loads(getattr(row, field)) for field in JSON_FIELDS})


def request_of(*records: LogRecord, resource: Resource | None = None) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=resource or Resource(attributes=[attr("service.name", s("api"))]),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )


def record(**fields: Any) -> LogRecord:
    return LogRecord(**{"time_unix_nano": T1, "body": s("hello")} | fields)


def only_row(*records: LogRecord, limits: Limits | None = None) -> LogRow:
    mapped = logs_to_rows(request_of(*records), TENANT, limits or Limits())
    assert mapped.rejected == 0, mapped.problems
    (row,) = mapped.rows
    return row


def sample_request() -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[attr("service.name", s("api")), attr("pid", AnyValue(int_value=7))],
                    dropped_attributes_count=3,
                ),
                schema_url="https://opentelemetry.io/schemas/1.24.0",
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(
                            name="app.logger",
                            version="1.2",
                            attributes=[attr("logger.kind", s("std"))],
                            dropped_attributes_count=1,
                        ),
                        schema_url="https://opentelemetry.io/schemas/1.21.0",
                        log_records=[
                            LogRecord(
                                time_unix_nano=T1,
                                observed_time_unix_nano=T2,
                                severity_number=17,
                                severity_text="ERROR",
                                body=s("payment failed"),
                                attributes=[
                                    attr("exception.type", s("ValueError")),
                                    attr("retry", AnyValue(bool_value=False)),
                                ],
                                dropped_attributes_count=2,
                                flags=1,
                                trace_id=TRACE,
                                span_id=SPAN,
                            ),
                            LogRecord(
                                observed_time_unix_nano=T2,
                                severity_number=9,
                                body=AnyValue(
                                    kvlist_value=KeyValueList(
                                        values=[attr("button", s("pay")), attr("x", s("1"))]
                                    )
                                ),
                                event_name="browser.click",
                            ),
                        ],
                    )
                ],
            ),
            ResourceLogs(
                scope_logs=[ScopeLogs(log_records=[LogRecord(time_unix_nano=999)])],
            ),
        ]
    )


API_SCOPE: dict[str, Any] = {
    "tenant_id": TENANT,
    "service_name": "api",
    "resource": {"service.name": "api", "pid": 7},
    "resource_dropped_attributes_count": 3,
    "resource_schema_url": "https://opentelemetry.io/schemas/1.24.0",
    "scope_name": "app.logger",
    "scope_version": "1.2",
    "scope_attributes": {"logger.kind": "std"},
    "scope_dropped_attributes_count": 1,
    "scope_schema_url": "https://opentelemetry.io/schemas/1.21.0",
}
EXPECTED_ROWS = [
    LogRow(
        **API_SCOPE
        | {
            "signal_id": None,
            "trace_id": TRACE,
            "span_id": SPAN,
            "time": 753_315_200_123_456,
            "time_unix_nano": T1,
            "observed_time_unix_nano": T2,
            "severity_number": 17,
            "severity_text": "ERROR",
            "body": "payment failed",
            "attributes": {"exception.type": "ValueError", "retry": False},
            "dropped_attributes_count": 2,
            "flags": 1,
            "event_name": "",
        }
    ),
    LogRow(
        **API_SCOPE
        | {
            "signal_id": None,
            "trace_id": None,
            "span_id": None,
            "time": 753_315_201_000_000,
            "time_unix_nano": 0,
            "observed_time_unix_nano": T2,
            "severity_number": 9,
            "severity_text": "",
            "body": {"button": "pay", "x": "1"},
            "attributes": {},
            "dropped_attributes_count": 0,
            "flags": 0,
            "event_name": "browser.click",
        }
    ),
    LogRow(
        tenant_id=TENANT,
        signal_id=None,
        trace_id=None,
        span_id=None,
        service_name=UNKNOWN_SERVICE,
        time=-PG_EPOCH_OFFSET_US,
        time_unix_nano=999,
        observed_time_unix_nano=0,
        severity_number=0,
        severity_text="",
        body=None,
        attributes={},
        dropped_attributes_count=0,
        flags=0,
        event_name="",
        resource={},
        resource_dropped_attributes_count=0,
        resource_schema_url="",
        scope_name="",
        scope_version="",
        scope_attributes={},
        scope_dropped_attributes_count=0,
        scope_schema_url="",
    ),
]


def test_sample_request_maps_to_the_expected_rows() -> None:
    """Every field of every record, resource and scope lands in its column, in request order."""
    mapped = logs_to_rows(sample_request(), TENANT, Limits())
    assert (mapped.rejected, mapped.error_message()) == (0, "")
    assert [decoded(row)._replace(signal_id=None) for row in mapped.rows] == EXPECTED_ROWS
    ids = [row.signal_id for row in mapped.rows]
    assert all(isinstance(i, bytes) and len(i) == 16 for i in ids)
    assert len(set(ids)) == len(ids)


BODIES = {
    "string": (s("boom"), "boom"),
    "empty string": (s(""), ""),
    "int": (AnyValue(int_value=-(2**63)), -(2**63)),
    "double": (AnyValue(double_value=2.5), 2.5),
    "NaN": (AnyValue(double_value=math.nan), {"@double": "NaN"}),
    "-Infinity": (AnyValue(double_value=-math.inf), {"@double": "-Infinity"}),
    "bool": (AnyValue(bool_value=True), True),
    "bytes": (AnyValue(bytes_value=b"\x00\xff"), {"@bytes": "AP8="}),
    "array": (
        AnyValue(array_value=ArrayValue(values=[s("a"), AnyValue(int_value=1), AnyValue()])),
        ["a", 1, None],
    ),
    "kvlist": (
        AnyValue(
            kvlist_value=KeyValueList(
                values=[attr("msg", s("m")), attr("n", AnyValue(array_value=ArrayValue()))]
            )
        ),
        {"msg": "m", "n": []},
    ),
    'kvlist with only "@bytes"': (
        AnyValue(kvlist_value=KeyValueList(values=[attr("@bytes", s("x"))])),
        {"@kvlist": {"@bytes": "x"}},
    ),
    "unset": (AnyValue(), None),
    "string with NUL": (s("a\x00b"), "a\ufffdb"),
}


@pytest.mark.parametrize(("body", "stored"), BODIES.values(), ids=BODIES.keys())
def test_body_of_every_kind_is_stored_as_json(body: AnyValue, stored: object) -> None:
    """The body keeps its AnyValue kind in JSON (tagged where JSON cannot carry it)."""
    row = only_row(record(body=body))
    assert orjson.loads(row.body) == stored


def test_unset_body_is_json_null_not_sql_null() -> None:
    """A record without a body stores the JSON literal null (the column is jsonb NOT NULL)."""
    assert only_row(LogRecord(time_unix_nano=T1)).body == b"null"


@pytest.mark.parametrize(
    ("time_unix_nano", "observed", "time"),
    [
        (T1, T2, 753_315_200_123_456),
        (T1, 0, 753_315_200_123_456),
        (0, T2, 753_315_201_000_000),
        (0, 0, -PG_EPOCH_OFFSET_US),
        (MAX_UNIX_NANO, MAX_UNIX_NANO, MAX_UNIX_NANO // 1000 - PG_EPOCH_OFFSET_US),
    ],
)
def test_time_falls_back_to_observed_time(time_unix_nano: int, observed: int, time: int) -> None:
    """`time` uses time_unix_nano, or observed_time_unix_nano when it is 0; both are kept exactly."""
    row = only_row(record(time_unix_nano=time_unix_nano, observed_time_unix_nano=observed))
    assert (row.time, row.time_unix_nano, row.observed_time_unix_nano) == (
        time,
        time_unix_nano,
        observed,
    )


@pytest.mark.parametrize(
    ("trace_id", "span_id", "stored"),
    [
        (TRACE, SPAN, (TRACE, SPAN)),
        (TRACE, b"", (TRACE, None)),
        (b"", b"", (None, None)),
    ],
    ids=["both", "trace only", "neither"],
)
def test_trace_and_span_ids_are_kept_or_none(
    trace_id: bytes, span_id: bytes, stored: tuple[bytes | None, bytes | None]
) -> None:
    """Valid ids are stored as bytes; absent ids are NULL."""
    row = only_row(record(trace_id=trace_id, span_id=span_id))
    assert (row.trace_id, row.span_id) == stored


@pytest.mark.parametrize(
    ("trace_id", "span_id", "stored"),
    [
        (bytes(16), bytes(8), (None, None)),
        (bytes(16), SPAN, (None, SPAN)),
        (TRACE, bytes(8), (TRACE, None)),
    ],
    ids=["both zero", "zero trace_id", "zero span_id"],
)
def test_all_zero_ids_mean_no_trace(
    trace_id: bytes, span_id: bytes, stored: tuple[bytes | None, bytes | None]
) -> None:
    """logs.proto: an all-zero trace_id/span_id is invalid, and receivers SHOULD treat the record
    as not associated with a trace/span. The record is kept, with NULL ids, so it is not joined
    to a fictitious trace 000...0 together with every other such log."""
    row = only_row(record(trace_id=trace_id, span_id=span_id))
    assert (row.trace_id, row.span_id) == stored


REJECTIONS = {
    "trace_id of 15 bytes": (
        {"trace_id": TRACE[:15]},
        "log record: trace_id must be empty or 16 bytes, got 15",
    ),
    "span_id of 9 bytes": (
        {"span_id": SPAN + b"\x01"},
        "log record: span_id must be empty or 8 bytes, got 9",
    ),
    "time beyond 2**63-1": (
        {"time_unix_nano": 2**63},
        "log record: time_unix_nano is beyond year 2262",
    ),
    "observed time beyond 2**63-1": (
        {"observed_time_unix_nano": 2**64 - 1},
        "log record: time_unix_nano is beyond year 2262",
    ),
    "severity 25": (
        {"severity_number": 25},
        "log record: severity_number 25 is outside 0..24",
    ),
    "severity -1": (
        {"severity_number": -1},
        "log record: severity_number -1 is outside 0..24",
    ),
}


@pytest.mark.parametrize(("change", "problem"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_an_invalid_record_is_rejected_alone(change: dict[str, Any], problem: str) -> None:
    """One bad record is counted and described; the valid records around it are stored."""
    request = request_of(record(body=s("first")), record(**change), record(body=s("last")))
    mapped = logs_to_rows(request, TENANT, Limits())
    assert [orjson.loads(row.body) for row in mapped.rows] == ["first", "last"]
    assert (mapped.rejected, mapped.problems) == (1, [problem])
    assert mapped.error_message() == f"rejected 1: {problem}"


@pytest.mark.parametrize("severity", [0, 1, 9, 17, 24])
def test_severity_in_range_is_kept(severity: int) -> None:
    """severity_number 0..24 (UNSPECIFIED..FATAL4) is stored as given."""
    assert only_row(record(severity_number=severity)).severity_number == severity


def test_many_rejections_are_summarised() -> None:
    """Past five problems the message says how many more there were."""
    request = request_of(record(), *[record(severity_number=30 + n) for n in range(7)])
    mapped = logs_to_rows(request, TENANT, Limits())
    assert (len(mapped.rows), mapped.rejected) == (1, 7)
    assert mapped.error_message() == (
        "rejected 7: "
        + "; ".join(f"log record: severity_number {30 + n} is outside 0..24" for n in range(5))
        + "; and 2 more"
    )


def test_event_name_and_severity_text_are_kept() -> None:
    """event_name and severity_text are stored as text (NULs replaced)."""
    row = only_row(record(event_name="device.app.lifecycle", severity_text="WARN\x00"))
    assert (row.event_name, row.severity_text) == ("device.app.lifecycle", "WARN\ufffd")


def test_limits_apply_to_body_and_attributes() -> None:
    """The value-length limit cuts the body and attribute strings, the count limit drops
    attributes (counted in dropped_attributes_count); the outcome is a warning only."""
    row_record = record(
        body=s("abcdefgh"),
        attributes=[attr("a", s("123456")), attr("b", AnyValue(int_value=1))],
        dropped_attributes_count=4,
    )
    mapped = logs_to_rows(
        request_of(row_record), TENANT, Limits(attribute_value_length=3, attribute_count=1)
    )
    (row,) = map(decoded, mapped.rows)
    assert (row.body, row.attributes, row.dropped_attributes_count) == ("abc", {"a": "123"}, 5)
    assert mapped.rejected == 0
    assert mapped.error_message() == (
        "warning: limits applied: 2 value(s) truncated, 1 attribute(s) dropped"
    )


def test_same_record_gets_the_same_signal_id() -> None:
    """A retried export of the same record (same resource and scope) gives the same signal id."""
    first = logs_to_rows(sample_request(), TENANT, Limits())
    again = logs_to_rows(sample_request(), "other-tenant", Limits())
    assert [r.signal_id for r in first.rows] == [r.signal_id for r in again.rows]


@pytest.mark.parametrize(
    "change",
    [
        {"body": s("payment failed!")},
        {"body": AnyValue(bytes_value=b"payment failed")},
        {"time_unix_nano": T1 + 1},
        {"severity_number": 18},
        {"attributes": [attr("exception.type", s("KeyError"))]},
        {"trace_id": bytes.fromhex("0af7651916cd43dd8448eb211c80319c")},
    ],
    ids=["body text", "body kind", "time", "severity", "attributes", "trace_id"],
)
def test_changed_record_gets_another_signal_id(change: dict[str, Any]) -> None:
    """A record whose content differs (body, time, severity, ...) gets a different signal id."""
    original = logs_to_rows(sample_request(), TENANT, Limits()).rows[0]
    changed_request = sample_request()
    changed = changed_request.resource_logs[0].scope_logs[0].log_records[0]
    for field, value in change.items():
        if field == "attributes":
            del changed.attributes[:]
            changed.attributes.extend(value)
        elif field == "body":
            changed.body.CopyFrom(value)
        else:
            setattr(changed, field, value)
    assert logs_to_rows(changed_request, TENANT, Limits()).rows[0].signal_id != original.signal_id


def test_same_record_from_another_resource_or_scope_gets_another_signal_id() -> None:
    """The signal id covers the record's resource and scope, not only its own fields."""
    base = logs_to_rows(request_of(record()), TENANT, Limits()).rows[0].signal_id
    other_service = Resource(attributes=[attr("service.name", s("billing"))])
    other_resource = logs_to_rows(request_of(record(), resource=other_service), TENANT, Limits())
    other_scope_request = request_of(record())
    other_scope_request.resource_logs[0].scope_logs[0].scope.name = "other"
    other_scope = logs_to_rows(other_scope_request, TENANT, Limits())
    ids = {base, other_resource.rows[0].signal_id, other_scope.rows[0].signal_id}
    assert len(ids) == 3


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


TEXTS = st.one_of(
    st.text(max_size=6),
    st.text(alphabet='\x00\\u0"é😀a', max_size=6),
    st.sampled_from(["\x00", "\\u0000", "\\\x00", "a\x00b"]),
)
TIMES = st.one_of(
    st.integers(0, MAX_UNIX_NANO),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 999, MAX_UNIX_NANO, 2**63, 2**64 - 1]),
)
SCALARS = st.one_of(
    TEXTS.map(lambda v: AnyValue(string_value=v)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=6).map(lambda b: AnyValue(bytes_value=b)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.builds(AnyValue),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(
            lambda items: AnyValue(array_value=ArrayValue(values=items))
        ),
        st.lists(st.builds(KeyValue, key=TEXTS, value=children), max_size=3).map(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs))
        ),
    ),
    max_leaves=8,
)
ATTRIBUTES = st.lists(
    st.builds(KeyValue, key=st.one_of(TEXTS, st.just("service.name")), value=VALUES), max_size=4
)
RECORDS = st.builds(
    LogRecord,
    time_unix_nano=TIMES,
    observed_time_unix_nano=TIMES,
    severity_number=st.integers(-3, 30),
    severity_text=TEXTS,
    body=VALUES,
    attributes=ATTRIBUTES,
    flags=st.integers(0, 2**32 - 1),
    trace_id=st.one_of(st.just(b""), st.binary(min_size=16, max_size=16), st.binary(max_size=20)),
    span_id=st.one_of(st.just(b""), st.binary(min_size=8, max_size=8), st.binary(max_size=10)),
    event_name=TEXTS,
)
REQUESTS = st.builds(
    ExportLogsServiceRequest,
    resource_logs=st.lists(
        st.builds(
            ResourceLogs,
            resource=st.builds(Resource, attributes=ATTRIBUTES),
            schema_url=TEXTS,
            scope_logs=st.lists(
                st.builds(
                    ScopeLogs,
                    scope=st.builds(InstrumentationScope, name=TEXTS, attributes=ATTRIBUTES),
                    log_records=st.lists(RECORDS, max_size=4),
                ),
                max_size=2,
            ),
        ),
        max_size=2,
    ),
)


@settings(max_examples=120, deadline=None)
@given(REQUESTS)
def test_any_request_maps_and_accounts_for_every_record(request: ExportLogsServiceRequest) -> None:
    """Any request maps without raising; rejected + stored == sent; stored rows have valid ids,
    times in range and storable text and JSON."""
    mapped = logs_to_rows(request, TENANT, Limits(attribute_value_length=5, attribute_count=3))
    sent = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    assert mapped.rejected + len(mapped.rows) == sent
    assert len(mapped.problems) == min(mapped.rejected, 5)
    for row in mapped.rows:
        assert row.trace_id is None or len(row.trace_id) == 16
        assert row.span_id is None or len(row.span_id) == 8
        assert 0 <= row.severity_number <= 24
        assert max(row.time_unix_nano, row.observed_time_unix_nano) <= MAX_UNIX_NANO
        when = row.time_unix_nano or row.observed_time_unix_nano
        assert row.time == when // 1000 - PG_EPOCH_OFFSET_US
        assert len(row.signal_id) == 16
        for field in JSON_FIELDS:
            assert_pg_json(getattr(row, field))
        for field in TEXT_FIELDS:
            assert "\x00" not in getattr(row, field)
