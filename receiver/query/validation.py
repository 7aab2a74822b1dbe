"""Request validation: query API requests -> immutable query values, or InvalidRequestError.

Pure: no I/O, no clock (callers pass `now_ns` where a default window needs it). Every
error names the request field, so the client gets a google.rpc.BadRequest it can act on.
The limits here are the documented ones (proto/prodsentinel/v1/query.proto).
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Sequence
from typing import Any

import orjson
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from prodsentinel.v1 import query_pb2
from receiver.errors import InvalidRequestError
from receiver.mapping.common import MAX_UNIX_NANO
from receiver.mapping.values import Truncations, any_value_to_json

SECOND_NS = 1_000_000_000
MAX_RANGE_NS = 7 * 24 * 3600 * SECOND_NS
MAX_ATTRIBUTE_FILTERS = 16
MAX_TEXT_LENGTH = 1024
MAX_STEPS = 11_000
AUTO_STEPS = 120
MAX_SEVERITY = 24
_NO_LIMIT = 2**31  # filter values are compared whole, never truncated
_HEX = frozenset(string.hexdigits)

Agg = query_pb2.Aggregation
AGGREGATIONS: dict[query_pb2.Aggregation.ValueType, str] = {
    Agg.AGGREGATION_AVG: "avg",
    Agg.AGGREGATION_MIN: "min",
    Agg.AGGREGATION_MAX: "max",
    Agg.AGGREGATION_SUM: "sum",
    Agg.AGGREGATION_COUNT: "count",
    Agg.AGGREGATION_RATE: "rate",
    Agg.AGGREGATION_P50: "p50",
    Agg.AGGREGATION_P90: "p90",
    Agg.AGGREGATION_P99: "p99",
}


@dataclasses.dataclass(frozen=True, slots=True)
class TimeRange:
    """[start_ns, end_ns) in Unix nanoseconds."""

    start_ns: int
    end_ns: int


@dataclasses.dataclass(frozen=True, slots=True)
class AttributeFilter:
    """Equality with an attribute: `value_json` is the stored JSON encoding of the value."""

    key: str
    value_json: str


@dataclasses.dataclass(frozen=True, slots=True)
class TraceSearch:
    window: TimeRange
    service: str | None
    operation: str | None
    attributes: tuple[AttributeFilter, ...]
    min_duration_ns: int | None
    max_duration_ns: int | None
    errors_only: bool
    page_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class LogSearch:
    window: TimeRange
    service: str | None
    min_severity: int
    trace_id: bytes | None
    body_contains: str | None
    attributes: tuple[AttributeFilter, ...]
    page_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class MetricQuery:
    metric_name: str
    window: TimeRange
    service: str | None
    attributes: tuple[AttributeFilter, ...]
    step_ns: int
    aggregation: str
    page_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class CatalogQuery:
    """GetServices (service None) and GetOperations."""

    window: TimeRange
    service: str | None
    span_kind: int
    page_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class PageSizes:
    default: int
    maximum: int


TRACES_PAGE = PageSizes(20, 100)
LOGS_PAGE = PageSizes(100, 1000)
SERIES_PAGE = PageSizes(100, 1000)
CATALOG_PAGE = PageSizes(100, 1000)


def parse_trace_id(text: str, field: str = "trace_id") -> bytes:
    """32 hexadecimal characters (either case) -> the 16 bytes."""
    if len(text) != 32 or not set(text) <= _HEX:
        raise InvalidRequestError(field, f"must be 32 hexadecimal characters, got {text[:64]!r}")
    return bytes.fromhex(text)


def find_traces(request: query_pb2.FindTracesRequest) -> TraceSearch:
    window = _required_range(request, "start_time", "end_time")
    min_ns = _duration(request, "min_duration")
    max_ns = _duration(request, "max_duration")
    if min_ns is not None and max_ns is not None and min_ns > max_ns:
        raise InvalidRequestError("max_duration", "must not be less than min_duration")
    return TraceSearch(
        window=window,
        service=_text(request.service_name, "service_name"),
        operation=_text(request.operation_name, "operation_name"),
        attributes=attribute_filters(request.attributes),
        min_duration_ns=min_ns,
        max_duration_ns=max_ns,
        errors_only=request.errors_only,
        page_size=page_size(request.page_size, TRACES_PAGE),
    )


def search_logs(request: query_pb2.SearchLogsRequest) -> LogSearch:
    window = _required_range(request, "start_time", "end_time")
    if not 0 <= request.min_severity <= MAX_SEVERITY:
        raise InvalidRequestError("min_severity", f"must be 0..{MAX_SEVERITY}")
    return LogSearch(
        window=window,
        service=_text(request.service_name, "service_name"),
        min_severity=request.min_severity,
        trace_id=parse_trace_id(request.trace_id) if request.trace_id else None,
        body_contains=_text(request.body_contains, "body_contains"),
        attributes=attribute_filters(request.attributes),
        page_size=page_size(request.page_size, LOGS_PAGE),
    )


def query_metrics(request: query_pb2.QueryMetricsRequest) -> MetricQuery:
    name = _text(request.metric_name, "metric_name")
    if name is None:
        raise InvalidRequestError("metric_name", "is required")
    window = _required_range(request, "start_time", "end_time")
    aggregation = AGGREGATIONS.get(request.aggregation)
    if aggregation is None:
        names = ", ".join(Agg.Name(number) for number in AGGREGATIONS)
        raise InvalidRequestError(
            "aggregation", f"must be one of {names}, got {request.aggregation}"
        )
    span = window.end_ns - window.start_ns
    step = _duration(request, "step")
    if step is None:
        step = max(SECOND_NS, math.ceil(span / AUTO_STEPS / SECOND_NS) * SECOND_NS)
    elif step < SECOND_NS:
        raise InvalidRequestError("step", "must be at least 1s")
    if math.ceil(span / step) > MAX_STEPS:
        raise InvalidRequestError("step", f"gives more than {MAX_STEPS} steps: make it larger")
    return MetricQuery(
        metric_name=name,
        window=window,
        service=_text(request.service_name, "service_name"),
        attributes=attribute_filters(request.attributes),
        step_ns=step,
        aggregation=aggregation,
        page_size=page_size(request.page_size, SERIES_PAGE),
    )


def get_services(request: query_pb2.GetServicesRequest, now_ns: int) -> CatalogQuery:
    return CatalogQuery(
        window=_optional_range(request, now_ns),
        service=None,
        span_kind=0,
        page_size=page_size(request.page_size, CATALOG_PAGE),
    )


def get_operations(request: query_pb2.GetOperationsRequest, now_ns: int) -> CatalogQuery:
    service = _text(request.service_name, "service_name")
    if service is None:
        raise InvalidRequestError("service_name", "is required")
    if not 0 <= request.span_kind <= 5:
        raise InvalidRequestError("span_kind", "must be a SpanKind (0..5)")
    return CatalogQuery(
        window=_optional_range(request, now_ns),
        service=service,
        span_kind=request.span_kind,
        page_size=page_size(request.page_size, CATALOG_PAGE),
    )


def page_size(requested: int, sizes: PageSizes) -> int:
    """0 -> the default; above the maximum -> the maximum (as AIP-158 asks); negative -> error."""
    if requested < 0:
        raise InvalidRequestError("page_size", "must not be negative")
    return min(requested or sizes.default, sizes.maximum)


def attribute_filters(attributes: Sequence[Any]) -> tuple[AttributeFilter, ...]:
    """KeyValues -> equality filters on the stored JSON encoding (so every AnyValue kind works)."""
    if len(attributes) > MAX_ATTRIBUTE_FILTERS:
        raise InvalidRequestError("attributes", f"at most {MAX_ATTRIBUTE_FILTERS} filters")
    filters = []
    for index, kv in enumerate(attributes):
        if not kv.key or len(kv.key) > MAX_TEXT_LENGTH or "\x00" in kv.key:
            raise InvalidRequestError(
                f"attributes[{index}].key", f"must be 1-{MAX_TEXT_LENGTH} characters, no NUL"
            )
        if kv.value.WhichOneof("value") in (None, "string_value_strindex"):
            raise InvalidRequestError(f"attributes[{index}].value", "must be set")
        value = any_value_to_json(kv.value, _NO_LIMIT, Truncations())
        filters.append(AttributeFilter(kv.key, orjson.dumps(value).decode()))
    return tuple(filters)


def _text(value: str, field: str) -> str | None:
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidRequestError(field, f"must be at most {MAX_TEXT_LENGTH} characters")
    if "\x00" in value:
        raise InvalidRequestError(field, "must not contain NUL")
    return value or None


def _required_range(request: Any, start_field: str, end_field: str) -> TimeRange:
    for field in (start_field, end_field):
        if not request.HasField(field):
            raise InvalidRequestError(field, "is required")
    return _checked_range(
        _timestamp(getattr(request, start_field), start_field),
        _timestamp(getattr(request, end_field), end_field),
        end_field,
    )


def _optional_range(request: Any, now_ns: int) -> TimeRange:
    end = _timestamp(request.end_time, "end_time") if request.HasField("end_time") else now_ns
    if request.HasField("start_time"):
        start = _timestamp(request.start_time, "start_time")
    else:
        start = max(0, end - MAX_RANGE_NS)
    return _checked_range(start, end, "end_time")


def _checked_range(start: int, end: int, end_field: str) -> TimeRange:
    if end <= start:
        raise InvalidRequestError(end_field, "must be after start_time")
    if end - start > MAX_RANGE_NS:
        raise InvalidRequestError(end_field, "must be at most 7 days after start_time")
    return TimeRange(start, end)


def _timestamp(value: Timestamp, field: str) -> int:
    if not 0 <= value.nanos < SECOND_NS:
        raise InvalidRequestError(field, "nanos must be 0..999999999")
    nanos = value.seconds * SECOND_NS + value.nanos
    if not 0 <= nanos <= MAX_UNIX_NANO:
        raise InvalidRequestError(field, "must be between 1970 and 2262")
    return nanos


def _duration(request: Any, field: str) -> int | None:
    if not request.HasField(field):
        return None
    value: Duration = getattr(request, field)
    if not -SECOND_NS < value.nanos < SECOND_NS:
        raise InvalidRequestError(field, "nanos must be -999999999..999999999")
    nanos = value.seconds * SECOND_NS + value.nanos
    if nanos < 0:
        raise InvalidRequestError(field, "must not be negative")
    return nanos
