"""Pure parts of the query API: rows -> OTLP (the inverse of the mapping), metric
aggregation, and the terminal waterfall."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData
from test_query_traces import log_set, span_set

from receiver.errors import InvalidRequestError
from receiver.mapping.logs import logs_to_rows
from receiver.mapping.spans import spans_to_rows
from receiver.query.aggregation import aggregate, check_aggregation, quantile
from receiver.query.otlp_assembly import logs_to_logs_data, spans_to_traces_data, trace_summary
from receiver.query.validation import MetricQuery, TimeRange
from receiver.query.waterfall import format_duration, render_waterfall
from receiver.settings import Limits

NO_LIMITS = Limits(attribute_value_length=2**30, attribute_count=2**30)
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
SCALARS = st.one_of(
    TEXT.map(lambda s: AnyValue(string_value=s)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    # NaN payloads and signs are not kept (JSON has one NaN): canonical NaN only
    st.floats().map(lambda f: AnyValue(double_value=math.nan if math.isnan(f) else f)),
    st.binary(max_size=6).map(lambda b: AnyValue(bytes_value=b)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
)


def _kvlist(entries: dict[str, AnyValue]) -> AnyValue:
    value = AnyValue()
    value.kvlist_value.SetInParent()
    value.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in entries.items())
    return value


def _array(items: list[AnyValue]) -> AnyValue:
    value = AnyValue()
    value.array_value.SetInParent()
    value.array_value.values.extend(items)
    return value


VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(_array),
        st.dictionaries(
            st.sampled_from(["a", "@bytes", "@double", "@kvlist"]), children, max_size=2
        ).map(_kvlist),
    ),
    max_leaves=6,
)
ATTRIBUTES = st.dictionaries(TEXT, st.one_of(VALUES, st.just(AnyValue())), max_size=4).map(
    lambda d: [KeyValue(key=k, value=v) for k, v in d.items()]
)
IDS16 = st.binary(min_size=16, max_size=16).filter(any)
IDS8 = st.binary(min_size=8, max_size=8).filter(any)
TIMES = st.integers(0, 2**62)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    start = draw(TIMES)
    span = Span(
        trace_id=draw(IDS16),
        span_id=draw(IDS8),
        parent_span_id=draw(st.one_of(st.just(b""), IDS8)),
        trace_state=draw(TEXT),
        flags=draw(st.integers(0, 2**32 - 1)),
        name=draw(TEXT),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=start,
        end_time_unix_nano=start + draw(st.integers(0, 2**62)),
        attributes=draw(ATTRIBUTES),
        dropped_attributes_count=draw(st.integers(0, 2**32 - 1)),
        dropped_events_count=draw(st.integers(0, 9)),
        dropped_links_count=draw(st.integers(0, 9)),
    )
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(time_unix_nano=draw(TIMES), name=draw(TEXT)).attributes.extend(
            draw(ATTRIBUTES)
        )
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(trace_id=draw(IDS16), span_id=draw(IDS8), trace_state=draw(TEXT))
        link.flags = draw(st.integers(0, 2**32 - 1))
        link.attributes.extend(draw(ATTRIBUTES))
    span.status.code = draw(st.integers(0, 2))
    span.status.message = draw(TEXT)
    return span


def _as_stored(row: tuple[Any, ...]) -> dict[str, Any]:
    """A mapped row as the read pool returns it: JSON columns as text."""
    return {
        name: value.decode() if isinstance(value, bytes) and name in _JSON else value
        for name, value in row._asdict().items()  # type: ignore[attr-defined]
    }


_JSON = {"attributes", "events", "links", "resource", "scope_attributes", "body"}


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(
        st.tuples(ATTRIBUTES, ATTRIBUTES, TEXT, st.lists(spans(), min_size=1, max_size=3)),
        min_size=1,
        max_size=3,
    )
)
def test_mapping_then_assembly_gives_back_the_spans(groups: list[Any]) -> None:
    """For any request of valid spans (every AnyValue kind, nested, tag-like keys), the
    rows the mapping stores assemble back into the same spans with the same resources
    and scopes, up to order."""
    request = ExportTraceServiceRequest()
    for resource_attributes, scope_attributes, schema, group in groups:
        resource_spans = request.resource_spans.add(schema_url=schema)
        resource_spans.resource.attributes.extend(resource_attributes)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.attributes.extend(scope_attributes)
        scope_spans.spans.extend(group)
    mapped = spans_to_rows(request, "t", NO_LIMITS)
    assert mapped.rejected == 0

    data = spans_to_traces_data(_as_stored(row) for row in mapped.rows)

    assert span_set(data.resource_spans) == span_set(request.resource_spans)


@settings(max_examples=40, deadline=None)
@given(bodies=st.lists(st.one_of(VALUES, st.none()), min_size=1, max_size=4), attrs=ATTRIBUTES)
def test_mapping_then_assembly_gives_back_the_log_records(bodies: list[Any], attrs: Any) -> None:
    """Log records with any body (or none) and attributes assemble back equal."""
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for index, body in enumerate(bodies):
        record = scope_logs.log_records.add(
            time_unix_nano=index, severity_number=index, trace_id=os.urandom(16), flags=index
        )
        record.attributes.extend(attrs)
        if body is not None:
            record.body.CopyFrom(body)
    mapped = logs_to_rows(request, "t", NO_LIMITS)

    data = logs_to_logs_data(_as_stored(row) for row in mapped.rows)

    assert log_set(data.resource_logs) == log_set(request.resource_logs)


def test_keep_order_only_groups_consecutive_rows() -> None:
    """With keep_order, rows of resources A, A, B, A become three groups (A, B, A), so
    reading the answer in order gives the rows' order; without it, two groups."""
    request = ExportLogsServiceRequest()
    for service in ("a", "b"):
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.add(key="service.name").value.string_value = service
        resource_logs.scope_logs.add().log_records.add()
    rows = [_as_stored(row) for row in logs_to_rows(request, "t", NO_LIMITS).rows]
    a, b = rows
    a2 = {**a, "severity_text": "second a"}
    ordered = logs_to_logs_data([a, a2, b, a], keep_order=True)
    assert [len(g.scope_logs[0].log_records) for g in ordered.resource_logs] == [2, 1, 1]
    assert len(logs_to_logs_data([a, a2, b, a]).resource_logs) == 2


def test_trace_summary_carries_nanoseconds() -> None:
    """A summary row becomes a TraceSummary with exact start and duration."""
    summary = trace_summary(
        {
            "trace_id": bytes(range(16)),
            "root_service": "web",
            "root_name": "GET /",
            "start_ns": 1_700_000_000_123_456_789,
            "end_ns": 1_700_000_001_000_000_000,
            "span_count": 3,
            "error_count": 1,
            "services": ["api", "web"],
        }
    )
    assert summary.start_time.ToNanoseconds() == 1_700_000_000_123_456_789
    assert summary.duration.ToNanoseconds() == 876_543_211
    assert (summary.trace_id, list(summary.service_names)) == (
        bytes(range(16)).hex(),
        ["api", "web"],
    )


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {10.0: 10}, 5.0),  # first bucket starts at 0
        (0.5, {10.0: 0, 20.0: 10}, 15.0),
        (0.99, {10.0: 5, math.inf: 5}, 10.0),  # in +Inf: the largest finite bound
        (0.5, {-5.0: 4, 0.0: 0}, -5.0),  # a first bucket that is not positive: its bound
        (0.5, {}, None),
        (0.5, {1.0: 0}, None),
    ],
)
def test_quantile_follows_histogram_quantile(
    q: float, buckets: dict[float, float], expected: float | None
) -> None:
    """Linear interpolation inside the bucket, Prometheus' rules at the edges."""
    assert quantile(q, buckets) == expected


def _query(aggregation: str, step: int = 10) -> MetricQuery:
    return MetricQuery("m", TimeRange(100, 200), None, (), step, aggregation, 100)


def _row(
    time: int, value: float = 0.0, start: int = 1, temporality: int = 2, **extra: Any
) -> dict[str, Any]:
    return {
        "service_name": "s",
        "attributes": "{}",
        "resource": "{}",
        "scope_name": "",
        "start_time_unix_nano": start,
        "time_unix_nano": time,
        "aggregation_temporality": temporality,
        "value": value,
        "distribution": None,
        **extra,
    }


def test_cumulative_rate_restarts_from_zero() -> None:
    """Increases are per stream; a lower value or a new start time is a restart whose
    whole value is new; the point before the window is a baseline only."""
    rows = [_row(95, 100), _row(105, 110), _row(115, 105), _row(125, 3, start=120)]
    (series,) = aggregate(rows, _query("rate"), "sum")
    assert series.points == [(100, 10 / 10e-9), (110, 105 / 10e-9), (120, 3 / 10e-9)]


def test_exponential_histogram_quantile() -> None:
    """Exponential buckets (scale 0: bounds 1, 2, 4, 8 ...) give interpolated quantiles."""
    distribution = (
        '{"count": 4, "sum": 10.0, "min": 1.5, "max": 7.0, "scale": 0, "zero_count": 0,'
        ' "zero_threshold": 0.0, "positive": {"offset": 0, "bucket_counts": [2, 0, 2]},'
        ' "negative": {"offset": 0, "bucket_counts": []}}'
    )
    rows = [_row(150, temporality=1, distribution=distribution)]
    (series,) = aggregate(rows, _query("p50"), "exponential_histogram")
    assert series.points == [(150, 2.0)]  # rank 2: the end of (1, 2]
    (p99,) = aggregate(rows, _query("p99"), "exponential_histogram")
    assert p99.points[0][1] == pytest.approx(4 + 4 * (3.96 - 2) / 2)


@pytest.mark.parametrize(
    ("metric_type", "monotonic", "aggregation"),
    [
        ("gauge", None, "rate"),
        ("gauge", None, "p50"),
        ("sum", False, "rate"),
        ("summary", None, "p99"),
    ],
)
def test_inapplicable_aggregations_name_the_field(
    metric_type: str, monotonic: bool | None, aggregation: str
) -> None:
    """rate needs a monotonic sum or a distribution, quantiles a histogram."""
    with pytest.raises(InvalidRequestError) as caught:
        check_aggregation(metric_type, monotonic, aggregation)
    assert caught.value.field == "aggregation"


# --------------------------------------------------------------------------- waterfall


def _trace() -> tuple[TracesData, LogsData]:
    trace, logs = TracesData(), LogsData()
    base = 1_800_000_000_000_000_000
    for service, name, span_id, parent, start, length, error in (
        ("checkout", "POST /pay", b"a" * 8, b"", 0, 200, False),
        ("payments", "charge", b"b" * 8, b"a" * 8, 50, 100, True),
        ("payments", "orphan", b"c" * 8, b"z" * 8, 150, 50, False),
    ):
        resource_spans = trace.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = service
        span = resource_spans.scope_spans.add().spans.add(
            trace_id=b"t" * 16,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            start_time_unix_nano=base + start * 1_000_000,
            end_time_unix_nano=base + (start + length) * 1_000_000,
        )
        if error:
            span.status.code, span.status.message = 2, "declined"
    record = (
        logs.resource_logs.add()
        .scope_logs.add()
        .log_records.add(time_unix_nano=base + 60_000_000, span_id=b"b" * 8, severity_number=17)
    )
    record.body.string_value = "card declined"
    return trace, logs


def test_waterfall_indents_children_and_places_bars() -> None:
    """Children are indented under parents, bars sit on the trace's timeline, errors are
    marked with their message, logs sit under their span, and a span whose parent is
    missing starts a tree of its own."""
    text = render_waterfall(*_trace(), width=70)
    assert text.splitlines() == [
        f"Trace {(b't' * 16).hex()} · 3 spans · 2 services · 200.0ms · 1 error",
        "checkout: POST /pay                     ██████████████████  200.0ms",
        "  payments: charge                    ✗     █████████       100.0ms  declined",
        "    │ 08:00:00.060 ERROR card declined",
        "payments: orphan                                      ████   50.0ms",
    ]


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (850, "850ns"),
        (12_300, "12.3µs"),
        (45_100_000, "45.1ms"),
        (1_234_000_000, "1.23s"),
        (123 * 10**9, "2m03s"),
    ],
)
def test_durations_are_human(nanos: int, text: str) -> None:
    """Durations print with the unit that keeps them short."""
    assert format_duration(nanos) == text
