"""metrics_to_rows: ExportMetricsServiceRequest -> one MetricPointRow per point (tier 1)."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    AGGREGATION_TEMPORALITY_DELTA,
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from receiver.mapping.common import UNKNOWN_SERVICE
from receiver.mapping.metrics import metrics_to_rows
from receiver.mapping.rows import PG_EPOCH_OFFSET_US, MetricPointRow
from receiver.settings import Limits

TENANT = "tenant-a"
JSON_FIELDS = ("exemplars", "attributes", "resource", "scope_attributes")
TEXT_FIELDS = (
    "tenant_id",
    "service_name",
    "metric_name",
    "metric_description",
    "metric_unit",
    "metric_type",
    "resource_schema_url",
    "scope_name",
    "scope_version",
    "scope_schema_url",
)
MAX_UNIX_NANO = 2**63 - 1
START = 1_699_999_990_000_000_500
T1 = 1_700_000_000_123_456_789  # pg microseconds: 753_315_200_123_456
T1_US = 753_315_200_123_456
TRACE_A = bytes.fromhex("5b8efff798038103d269b633813fc60c")
TRACE_B = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SPAN_A = bytes.fromhex("eee19b7ec3c1b174")
SPAN_B = bytes.fromhex("b7ad6b7169203331")


def attr(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def decoded(row: MetricPointRow) -> MetricPointRow:
    """The row with its JSON columns parsed (and the signal id blanked) for comparison."""
    fields = {field: orjson.loads(getattr(row, field)) for field in JSON_FIELDS}
    distribution = None if row.distribution is None else orjson.loads(row.distribution)
    return row._replace(signal_id=None, distribution=distribution, **fields)


def request_of(*metrics: Metric, resource: Resource | None = None) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=resource or Resource(attributes=[attr("service.name", "api")]),
                scope_metrics=[ScopeMetrics(metrics=metrics)],
            )
        ]
    )


def gauge(name: str, *points: NumberDataPoint) -> Metric:
    return Metric(name=name, gauge=Gauge(data_points=points))


def map_request(request: ExportMetricsServiceRequest, limits: Limits | None = None) -> Any:
    return metrics_to_rows(request, TENANT, limits or Limits())


def sample_request() -> ExportMetricsServiceRequest:
    """Every metric kind, int and double values, exemplars, two resources."""
    metrics = [
        Metric(
            name="system.cpu.utilization",
            description="CPU share",
            unit="1",
            gauge=Gauge(
                data_points=[
                    NumberDataPoint(time_unix_nano=T1, as_double=0.75, attributes=[attr("cpu", 0)]),
                    NumberDataPoint(
                        time_unix_nano=T1,
                        as_int=42,
                        attributes=[attr("cpu", 1)],
                        exemplars=[
                            Exemplar(
                                time_unix_nano=T1 - 1,
                                as_int=42,
                                trace_id=TRACE_A,
                                span_id=SPAN_A,
                                filtered_attributes=[attr("user", "u1")],
                            )
                        ],
                    ),
                ]
            ),
        ),
        Metric(
            name="http.server.requests",
            unit="{request}",
            sum=Sum(
                aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE,
                is_monotonic=True,
                data_points=[
                    NumberDataPoint(
                        start_time_unix_nano=START, time_unix_nano=T1, as_int=1000, flags=1
                    )
                ],
            ),
        ),
        Metric(
            name="queue.delta",
            sum=Sum(
                aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA,
                is_monotonic=False,
                data_points=[NumberDataPoint(time_unix_nano=T1, as_double=-3.5)],
            ),
        ),
        Metric(
            name="http.server.duration",
            unit="s",
            histogram=Histogram(
                aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA,
                data_points=[
                    HistogramDataPoint(
                        start_time_unix_nano=START,
                        time_unix_nano=T1,
                        count=8,
                        sum=12.5,
                        min=0.01,
                        max=2.5,
                        explicit_bounds=[0.1, 1.0],
                        bucket_counts=[3, 4, 1],
                        attributes=[attr("http.route", "/pay")],
                        exemplars=[
                            Exemplar(time_unix_nano=T1 - 3, as_double=0.05),
                            Exemplar(
                                time_unix_nano=T1 - 2,
                                as_double=2.5,
                                trace_id=TRACE_B,
                                span_id=SPAN_B,
                            ),
                            Exemplar(time_unix_nano=T1 - 1, as_double=0.5, trace_id=TRACE_A),
                        ],
                    ),
                    HistogramDataPoint(time_unix_nano=T1, count=0),
                ],
            ),
        ),
        Metric(
            name="payload.size",
            unit="By",
            exponential_histogram=ExponentialHistogram(
                aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE,
                data_points=[
                    ExponentialHistogramDataPoint(
                        start_time_unix_nano=START,
                        time_unix_nano=T1,
                        count=7,
                        sum=-1.5,
                        min=-4.0,
                        max=3.0,
                        scale=2,
                        zero_count=1,
                        zero_threshold=1e-9,
                        positive=ExponentialHistogramDataPoint.Buckets(
                            offset=-1, bucket_counts=[1, 2]
                        ),
                        negative=ExponentialHistogramDataPoint.Buckets(offset=3, bucket_counts=[3]),
                        exemplars=[Exemplar(time_unix_nano=T1, as_int=-4)],
                    )
                ],
            ),
        ),
        Metric(
            name="rpc.latency",
            summary=Summary(
                data_points=[
                    SummaryDataPoint(
                        time_unix_nano=T1,
                        count=10,
                        sum=55.5,
                        quantile_values=[
                            SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=5.0),
                            SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=9.9),
                        ],
                    )
                ]
            ),
        ),
        Metric(name="no.data"),  # no points: nothing stored, nothing rejected
    ]
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(
                    attributes=[attr("service.name", "api")], dropped_attributes_count=2
                ),
                schema_url="https://opentelemetry.io/schemas/1.24.0",
                scope_metrics=[
                    ScopeMetrics(
                        scope=InstrumentationScope(
                            name="app.meter", version="1.0", attributes=[attr("meter", "m")]
                        ),
                        schema_url="https://opentelemetry.io/schemas/1.21.0",
                        metrics=metrics,
                    )
                ],
            ),
            ResourceMetrics(
                scope_metrics=[
                    ScopeMetrics(
                        metrics=[gauge("up", NumberDataPoint(time_unix_nano=999, as_int=1))]
                    )
                ]
            ),
        ]
    )


API: dict[str, Any] = {
    "tenant_id": TENANT,
    "signal_id": None,
    "service_name": "api",
    "time": T1_US,
    "time_unix_nano": T1,
    "start_time_unix_nano": 0,
    "metric_description": "",
    "metric_unit": "",
    "aggregation_temporality": 0,
    "is_monotonic": None,
    "value": None,
    "value_int": None,
    "distribution": None,
    "trace_id": None,
    "exemplars": [],
    "attributes": {},
    "flags": 0,
    "resource": {"service.name": "api"},
    "resource_dropped_attributes_count": 2,
    "resource_schema_url": "https://opentelemetry.io/schemas/1.24.0",
    "scope_name": "app.meter",
    "scope_version": "1.0",
    "scope_attributes": {"meter": "m"},
    "scope_dropped_attributes_count": 0,
    "scope_schema_url": "https://opentelemetry.io/schemas/1.21.0",
}
CPU = API | {
    "metric_name": "system.cpu.utilization",
    "metric_description": "CPU share",
    "metric_unit": "1",
    "metric_type": "gauge",
}
DURATION = API | {
    "metric_name": "http.server.duration",
    "metric_unit": "s",
    "metric_type": "histogram",
    "aggregation_temporality": 1,
}
EXPECTED_ROWS = [
    MetricPointRow(**CPU | {"value": 0.75, "attributes": {"cpu": 0}}),
    MetricPointRow(
        **CPU
        | {
            "value": 42.0,
            "value_int": 42,
            "attributes": {"cpu": 1},
            "trace_id": TRACE_A,
            "exemplars": [
                {
                    "time_unix_nano": T1 - 1,
                    "value": 42,
                    "trace_id": TRACE_A.hex(),
                    "span_id": SPAN_A.hex(),
                    "filtered_attributes": {"user": "u1"},
                }
            ],
        }
    ),
    MetricPointRow(
        **API
        | {
            "metric_name": "http.server.requests",
            "metric_unit": "{request}",
            "metric_type": "sum",
            "start_time_unix_nano": START,
            "aggregation_temporality": 2,
            "is_monotonic": True,
            "value": 1000.0,
            "value_int": 1000,
            "flags": 1,
        }
    ),
    MetricPointRow(
        **API
        | {
            "metric_name": "queue.delta",
            "metric_type": "sum",
            "aggregation_temporality": 1,
            "is_monotonic": False,
            "value": -3.5,
        }
    ),
    MetricPointRow(
        **DURATION
        | {
            "start_time_unix_nano": START,
            "distribution": {
                "count": 8,
                "sum": 12.5,
                "min": 0.01,
                "max": 2.5,
                "explicit_bounds": [0.1, 1.0],
                "bucket_counts": [3, 4, 1],
            },
            "trace_id": TRACE_B,
            "exemplars": [
                {
                    "time_unix_nano": T1 - 3,
                    "value": 0.05,
                    "trace_id": "",
                    "span_id": "",
                    "filtered_attributes": {},
                },
                {
                    "time_unix_nano": T1 - 2,
                    "value": 2.5,
                    "trace_id": TRACE_B.hex(),
                    "span_id": SPAN_B.hex(),
                    "filtered_attributes": {},
                },
                {
                    "time_unix_nano": T1 - 1,
                    "value": 0.5,
                    "trace_id": TRACE_A.hex(),
                    "span_id": "",
                    "filtered_attributes": {},
                },
            ],
            "attributes": {"http.route": "/pay"},
        }
    ),
    MetricPointRow(
        **DURATION
        | {
            "distribution": {
                "count": 0,
                "sum": None,
                "min": None,
                "max": None,
                "explicit_bounds": [],
                "bucket_counts": [],
            },
        }
    ),
    MetricPointRow(
        **API
        | {
            "metric_name": "payload.size",
            "metric_unit": "By",
            "metric_type": "exponential_histogram",
            "start_time_unix_nano": START,
            "aggregation_temporality": 2,
            "distribution": {
                "count": 7,
                "sum": -1.5,
                "min": -4.0,
                "max": 3.0,
                "scale": 2,
                "zero_count": 1,
                "zero_threshold": 1e-9,
                "positive": {"offset": -1, "bucket_counts": [1, 2]},
                "negative": {"offset": 3, "bucket_counts": [3]},
            },
            "exemplars": [
                {
                    "time_unix_nano": T1,
                    "value": -4,
                    "trace_id": "",
                    "span_id": "",
                    "filtered_attributes": {},
                }
            ],
        }
    ),
    MetricPointRow(
        **API
        | {
            "metric_name": "rpc.latency",
            "metric_type": "summary",
            "distribution": {
                "count": 10,
                "sum": 55.5,
                "quantile_values": [
                    {"quantile": 0.5, "value": 5.0},
                    {"quantile": 0.99, "value": 9.9},
                ],
            },
        }
    ),
    MetricPointRow(
        **API
        | {
            "service_name": UNKNOWN_SERVICE,
            "time": -PG_EPOCH_OFFSET_US,
            "time_unix_nano": 999,
            "metric_name": "up",
            "metric_type": "gauge",
            "value": 1.0,
            "value_int": 1,
            "resource": {},
            "resource_dropped_attributes_count": 0,
            "resource_schema_url": "",
            "scope_name": "",
            "scope_version": "",
            "scope_attributes": {},
            "scope_schema_url": "",
        }
    ),
]


def test_sample_request_maps_to_the_expected_rows() -> None:
    """Every point of every metric kind becomes one row with all its fields, in request order."""
    mapped = map_request(sample_request())
    assert (mapped.rejected, mapped.error_message()) == (0, "")
    assert len(mapped.rows) == len(EXPECTED_ROWS)
    for row, expected in zip(mapped.rows, EXPECTED_ROWS, strict=True):
        assert decoded(row) == expected


def test_values_keep_their_python_types() -> None:
    """value is a float (NULL for distributions), value_int an int only for integer points."""
    for row in map_request(sample_request()).rows:
        if row.metric_type in ("gauge", "sum"):
            assert type(row.value) is float
            assert row.distribution is None
            assert row.value_int is None or type(row.value_int) is int
        else:
            assert (row.value, row.value_int) == (None, None)
            assert isinstance(row.distribution, bytes)
        if row.metric_type == "sum":
            assert type(row.is_monotonic) is bool
        else:
            assert row.is_monotonic is None


@pytest.mark.parametrize(
    ("point", "value", "value_int"),
    [
        (NumberDataPoint(as_int=2**63 - 1), float(2**63 - 1), 2**63 - 1),
        (NumberDataPoint(as_int=-(2**63)), float(-(2**63)), -(2**63)),
        (NumberDataPoint(as_int=0), 0.0, 0),
        (NumberDataPoint(as_double=0.0), 0.0, None),
        (NumberDataPoint(as_double=math.inf), math.inf, None),
        (NumberDataPoint(), 0.0, None),
    ],
    ids=["int64 max", "int64 min", "int zero", "double zero", "infinity", "no value"],
)
def test_number_point_values(point: NumberDataPoint, value: float, value_int: int | None) -> None:
    """An int point fills value_int (exact) and value; a double point only value."""
    point.time_unix_nano = T1
    (row,) = map_request(request_of(gauge("g", point))).rows
    assert (row.value, row.value_int) == (value, value_int)


def test_nan_gauge_value_is_kept() -> None:
    """A NaN double is stored as NaN in the float column (PostgreSQL double precision takes it)."""
    (row,) = map_request(request_of(gauge("g", NumberDataPoint(as_double=math.nan)))).rows
    assert row.value is not None
    assert math.isnan(row.value)


REJECTIONS = {
    "bucket counts = bounds": (
        Metric(
            name="h",
            histogram=Histogram(
                data_points=[HistogramDataPoint(explicit_bounds=[1.0, 2.0], bucket_counts=[1, 2])]
            ),
        ),
        "metric h: histogram has 2 bucket counts for 2 bounds (needs bounds + 1)",
    ),
    "bucket counts > bounds + 1": (
        Metric(
            name="h",
            histogram=Histogram(data_points=[HistogramDataPoint(bucket_counts=[1, 2])]),
        ),
        "metric h: histogram has 2 bucket counts for 0 bounds (needs bounds + 1)",
    ),
    "empty name": (
        gauge("", NumberDataPoint(as_int=1)),
        "metric: name is empty",
    ),
    "time beyond 2**63-1": (
        gauge("g", NumberDataPoint(time_unix_nano=2**63, as_int=1)),
        "metric g: time_unix_nano is beyond year 2262",
    ),
    "start time beyond 2**63-1": (
        gauge("g", NumberDataPoint(start_time_unix_nano=2**64 - 1, as_int=1)),
        "metric g: time_unix_nano is beyond year 2262",
    ),
    "exemplar trace_id of 8 bytes": (
        gauge("g", NumberDataPoint(as_int=1, exemplars=[Exemplar(trace_id=SPAN_A)])),
        "metric g: exemplar trace_id/span_id has the wrong length",
    ),
    "exemplar span_id of 16 bytes": (
        gauge("g", NumberDataPoint(as_int=1, exemplars=[Exemplar(span_id=TRACE_A)])),
        "metric g: exemplar trace_id/span_id has the wrong length",
    ),
}


@pytest.mark.parametrize(("bad", "problem"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_an_invalid_point_is_rejected_alone(bad: Metric, problem: str) -> None:
    """One bad point is counted and described; valid points around it are stored."""
    request = request_of(
        gauge("before", NumberDataPoint(as_int=1)), bad, gauge("after", NumberDataPoint(as_int=2))
    )
    mapped = map_request(request)
    assert [row.metric_name for row in mapped.rows] == ["before", "after"]
    assert (mapped.rejected, mapped.problems) == (1, [problem])
    assert mapped.error_message() == f"rejected 1: {problem}"


def test_only_the_bad_points_of_a_metric_are_rejected() -> None:
    """Rejection is per data point: the metric's other points are still stored."""
    histogram = Metric(
        name="h",
        histogram=Histogram(
            data_points=[
                HistogramDataPoint(explicit_bounds=[1.0], bucket_counts=[1, 2], count=3),
                HistogramDataPoint(explicit_bounds=[1.0], bucket_counts=[1], count=1),
                HistogramDataPoint(explicit_bounds=[1.0], count=5),  # no buckets: allowed
            ]
        ),
    )
    mapped = map_request(request_of(histogram))
    assert mapped.rejected == 1
    assert [orjson.loads(row.distribution)["count"] for row in mapped.rows] == [3, 5]


def test_point_trace_id_comes_from_the_first_exemplar_with_one() -> None:
    """A point links to the trace of its first exemplar that has a trace id, else NULL."""
    point = NumberDataPoint(
        as_int=1,
        exemplars=[
            Exemplar(as_int=1),
            Exemplar(as_int=2, trace_id=TRACE_B, span_id=SPAN_B),
            Exemplar(as_int=3, trace_id=TRACE_A, span_id=SPAN_A),
        ],
    )
    without = NumberDataPoint(as_int=1, exemplars=[Exemplar(as_int=1, span_id=SPAN_A)])
    rows = map_request(request_of(gauge("g", point, without))).rows
    assert [row.trace_id for row in rows] == [TRACE_B, None]
    assert [e["value"] for e in orjson.loads(rows[0].exemplars)] == [1, 2, 3]


def test_limits_apply_to_point_and_exemplar_attributes() -> None:
    """Point and exemplar attributes obey the limits; the outcome is a warning only."""
    point = NumberDataPoint(
        as_int=1,
        attributes=[attr("a", "abcdef"), attr("b", 1)],
        exemplars=[Exemplar(as_int=1, filtered_attributes=[attr("x", 1), attr("y", "long")])],
    )
    mapped = map_request(
        request_of(gauge("g", point)), Limits(attribute_value_length=3, attribute_count=1)
    )
    (row,) = mapped.rows
    assert orjson.loads(row.attributes) == {"a": "abc"}
    assert orjson.loads(row.exemplars)[0]["filtered_attributes"] == {"x": 1}
    assert mapped.rejected == 0
    assert mapped.error_message() == (
        "warning: limits applied: 1 value(s) truncated, 2 attribute(s) dropped"
    )


def test_same_point_gets_the_same_signal_id() -> None:
    """Mapping the same request again (a retry) gives the same signal id for every point."""
    first = [row.signal_id for row in map_request(sample_request()).rows]
    again = [row.signal_id for row in metrics_to_rows(sample_request(), "other", Limits()).rows]
    assert first == again
    assert all(len(i) == 16 for i in first)
    assert len(set(first)) == len(first)


def test_changed_point_gets_another_signal_id() -> None:
    """A point whose value, time or attributes differ, or that belongs to another metric name,
    gets another signal id."""

    def point(value: float = 1, **fields: Any) -> NumberDataPoint:
        kind = "as_double" if isinstance(value, float) else "as_int"
        return NumberDataPoint(**{"time_unix_nano": T1, kind: value} | fields)

    request = request_of(
        gauge("g", point()),
        gauge("g", point(2)),
        gauge("g", point(1.0)),
        gauge("g", point(time_unix_nano=T1 + 1)),
        gauge("g", point(attributes=[attr("k", "v")])),
        gauge("h", point()),
        Metric(name="g", sum=Sum(data_points=[point()])),
    )
    ids = [row.signal_id for row in map_request(request).rows]
    assert len(ids) == 7
    assert len(set(ids)) == 7


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
    st.text(max_size=5),
    st.text(alphabet='\x00\\u0"éa', max_size=5),
    st.sampled_from(["\x00", "\\u0000", "\\\x00", "a\x00b"]),
)
TIMES = st.one_of(
    st.integers(0, MAX_UNIX_NANO),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, MAX_UNIX_NANO, 2**63]),
)
FLOATS = st.floats()
U64 = st.integers(0, 2**64 - 1)
ATTRIBUTES = st.lists(
    st.builds(
        KeyValue,
        key=TEXTS,
        value=st.one_of(
            TEXTS.map(lambda v: AnyValue(string_value=v)),
            FLOATS.map(lambda f: AnyValue(double_value=f)),
            st.binary(max_size=4).map(lambda b: AnyValue(bytes_value=b)),
        ),
    ),
    max_size=3,
)
EXEMPLARS = st.lists(
    st.builds(
        Exemplar,
        time_unix_nano=U64,
        as_double=FLOATS,
        trace_id=st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=17)),
        span_id=st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=9)),
        filtered_attributes=ATTRIBUTES,
    ),
    max_size=2,
)
NUMBER_POINTS = st.one_of(
    st.builds(NumberDataPoint, as_int=st.integers(-(2**63), 2**63 - 1)),
    st.builds(NumberDataPoint, as_double=FLOATS),
)
HISTOGRAM_POINTS = st.builds(
    HistogramDataPoint,
    count=U64,
    sum=FLOATS,
    explicit_bounds=st.lists(FLOATS, max_size=3),
    bucket_counts=st.lists(U64, max_size=4),
    exemplars=EXEMPLARS,
)
EXP_POINTS = st.builds(
    ExponentialHistogramDataPoint,
    count=U64,
    scale=st.integers(-10, 20),
    zero_threshold=FLOATS,
    positive=st.builds(
        ExponentialHistogramDataPoint.Buckets,
        offset=st.integers(-(2**31), 2**31 - 1),
        bucket_counts=st.lists(U64, max_size=3),
    ),
    exemplars=EXEMPLARS,
)
SUMMARY_POINTS = st.builds(
    SummaryDataPoint,
    sum=FLOATS,
    quantile_values=st.lists(
        st.builds(SummaryDataPoint.ValueAtQuantile, quantile=FLOATS, value=FLOATS), max_size=2
    ),
)


@st.composite
def points(draw: st.DrawFn, kind: st.SearchStrategy[Any]) -> list[Any]:
    drawn = draw(st.lists(kind, max_size=3))
    for point in drawn:
        point.time_unix_nano = draw(TIMES)
        point.start_time_unix_nano = draw(TIMES)
        point.attributes.extend(draw(ATTRIBUTES))
        if hasattr(point, "exemplars") and not isinstance(
            point, HistogramDataPoint | ExponentialHistogramDataPoint
        ):
            point.exemplars.extend(draw(EXEMPLARS))
    return drawn


METRICS = st.one_of(
    st.builds(
        Metric, name=TEXTS, unit=TEXTS, gauge=st.builds(Gauge, data_points=points(NUMBER_POINTS))
    ),
    st.builds(
        Metric,
        name=TEXTS,
        sum=st.builds(
            Sum,
            data_points=points(NUMBER_POINTS),
            aggregation_temporality=st.integers(0, 2),
            is_monotonic=st.booleans(),
        ),
    ),
    st.builds(
        Metric, name=TEXTS, histogram=st.builds(Histogram, data_points=points(HISTOGRAM_POINTS))
    ),
    st.builds(
        Metric,
        name=TEXTS,
        exponential_histogram=st.builds(ExponentialHistogram, data_points=points(EXP_POINTS)),
    ),
    st.builds(Metric, name=TEXTS, summary=st.builds(Summary, data_points=points(SUMMARY_POINTS))),
    st.builds(Metric, name=TEXTS),
)
REQUESTS = st.builds(
    ExportMetricsServiceRequest,
    resource_metrics=st.lists(
        st.builds(
            ResourceMetrics,
            resource=st.builds(Resource, attributes=ATTRIBUTES),
            scope_metrics=st.lists(
                st.builds(ScopeMetrics, metrics=st.lists(METRICS, max_size=3), schema_url=TEXTS),
                max_size=2,
            ),
        ),
        max_size=2,
    ),
)


def count_points(request: ExportMetricsServiceRequest) -> int:
    total = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


@settings(max_examples=120, deadline=None)
@given(REQUESTS)
def test_any_request_maps_and_accounts_for_every_point(
    request: ExportMetricsServiceRequest,
) -> None:
    """Any request maps without raising; rejected + stored == points sent; stored rows have
    storable JSON and text, times in range, and value set exactly for gauge and sum."""
    mapped = metrics_to_rows(request, TENANT, Limits(attribute_value_length=4, attribute_count=2))
    assert mapped.rejected + len(mapped.rows) == count_points(request)
    assert len(mapped.problems) == min(mapped.rejected, 5)
    for row in mapped.rows:
        assert max(row.time_unix_nano, row.start_time_unix_nano) <= MAX_UNIX_NANO
        assert row.time == row.time_unix_nano // 1000 - PG_EPOCH_OFFSET_US
        assert row.trace_id is None or len(row.trace_id) == 16
        assert len(row.signal_id) == 16
        assert (row.value is None) == (row.metric_type not in ("gauge", "sum"))
        assert (row.distribution is None) == (row.metric_type in ("gauge", "sum"))
        for field in JSON_FIELDS:
            assert_pg_json(getattr(row, field))
        if row.distribution is not None:
            assert_pg_json(row.distribution)
        for field in TEXT_FIELDS:
            assert "\x00" not in getattr(row, field)
