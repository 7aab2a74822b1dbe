"""Error detection (pure), on rows from the real mappers, and its SQL twin used by the sweeper."""

from __future__ import annotations

import os
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from analyzer.detection import detect_errors, span_is_error, span_row_is_error
from receiver.mapping.logs import logs_to_rows
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits

SERVER, CLIENT = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT


def span_rows(**fields: Any) -> list[Any]:
    """Map one span with the given fields (plus `attributes` / `events` dicts) through the mapper."""
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name="op",
            start_time_unix_nano=1,
            end_time_unix_nano=2,
        )
    )
    for key, value in fields.pop("attributes", {}).items():
        target = span.attributes.add(key=key).value
        if isinstance(value, str):
            target.string_value = value
        elif isinstance(value, float):
            target.double_value = value
        else:
            target.int_value = value
    for name in fields.pop("events", ()):
        span.events.add(name=name)
    if fields.pop("error", False):
        span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    for key, value in fields.items():
        setattr(span, key, value)
    return spans_to_rows(request, "t", Limits()).rows


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),
        ({"error": True}, True),
        ({"events": ["exception"]}, True),
        ({"events": ["retry", "cache-miss"]}, False),
        ({"kind": SERVER, "attributes": {"http.response.status_code": 503}}, True),
        ({"kind": SERVER, "attributes": {"http.status_code": "500"}}, True),
        ({"kind": SERVER, "attributes": {"http.response.status_code": 502.0}}, True),
        ({"kind": SERVER, "attributes": {"http.response.status_code": 404}}, False),
        ({"kind": CLIENT, "attributes": {"http.response.status_code": 503}}, False),
        ({"kind": SERVER, "attributes": {"http.response.status_code": "oops"}}, False),
    ],
)
def test_span_rules_on_mapped_rows(fields: dict[str, Any], expected: bool) -> None:
    """A span is an error for status ERROR, an exception event, or a server span with HTTP >= 500."""
    (row,) = span_rows(**fields)
    assert span_row_is_error(row) is expected


def test_detect_errors_groups_by_tenant_and_trace_and_keeps_traceless_logs() -> None:
    """Two error spans of one trace give one key; an error log with a trace joins trace keys;
    one without a trace is kept as a log; INFO logs and good spans give nothing."""
    (bad,) = span_rows(error=True)
    (also_bad,) = span_rows(error=True)
    (good,) = span_rows()
    also_bad = also_bad._replace(trace_id=bad.trace_id)
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add(severity_number=17, trace_id=os.urandom(16)).body.string_value = "traced"
    records.add(severity_number=21).body.string_value = "no trace"
    records.add(severity_number=9).body.string_value = "info"
    log_rows = logs_to_rows(logs, "t", Limits()).rows
    found = detect_errors(
        [("spans", [bad, also_bad, good]), ("logs", log_rows), ("metric_points", [])]
    )
    assert found.traces == {("t", bad.trace_id), ("t", log_rows[0].trace_id)}
    assert [log.body for log in found.traceless_logs] == ["no trace"]
    assert not detect_errors([("spans", [good])])


json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 100_000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["500", "503", "404", "5000", "abc", "", " 500"]),
)
span_shapes = st.fixed_dictionaries(
    {
        "status_code": st.integers(0, 3),
        "kind": st.integers(0, 5),
        "events": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["exception", "Exception", "log", ""])}),
            max_size=3,
        ),
        "attributes": st.dictionaries(
            st.sampled_from(["http.response.status_code", "http.status_code", "other"]),
            json_values,
            max_size=3,
        ),
    }
)


@settings(max_examples=150, deadline=None)
@given(shapes=st.lists(span_shapes, min_size=1, max_size=20))
async def test_sql_detection_agrees_with_python(
    test_database: Any, shapes: list[dict[str, Any]]
) -> None:
    """prodsentinel_span_is_error (the sweeper's partial-index predicate) says exactly what
    span_is_error says, for any status, kind, events and HTTP status values."""
    connection = await asyncpg.connect(test_database.url)
    try:
        for shape in shapes:
            in_sql = await connection.fetchval(
                "SELECT prodsentinel_span_is_error($1, $2, $3::jsonb, $4::jsonb)",
                shape["status_code"],
                shape["kind"],
                orjson.dumps(shape["events"]).decode(),
                orjson.dumps(shape["attributes"]).decode(),
            )
            expected = span_is_error(
                shape["status_code"], shape["kind"], shape["events"], shape["attributes"]
            )
            assert in_sql is expected, shape
    finally:
        await connection.close()
