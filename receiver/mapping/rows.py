"""Row types: one NamedTuple per table, whose field order is the COPY column order.

Times are carried twice: `*_unix_nano` keeps the exact OTLP nanoseconds, and the
timestamptz columns (`start_time`, `time`, ...) are given to asyncpg as microseconds
since 2000-01-01 (PostgreSQL's epoch), the tuple form of its timestamptz codec, which
saves building a datetime per row. JSON columns are given as UTF-8 JSON bytes.
"""

from __future__ import annotations

from typing import NamedTuple

PG_EPOCH_OFFSET_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds


class SpanRow(NamedTuple):
    tenant_id: str
    signal_id: bytes
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service_name: str
    name: str
    kind: int
    start_time: int
    end_time: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int
    status_message: str
    trace_state: str
    flags: int
    attributes: bytes
    dropped_attributes_count: int
    events: bytes
    dropped_events_count: int
    links: bytes
    dropped_links_count: int
    resource: bytes
    resource_dropped_attributes_count: int
    resource_schema_url: str
    scope_name: str
    scope_version: str
    scope_attributes: bytes
    scope_dropped_attributes_count: int
    scope_schema_url: str


class LogRow(NamedTuple):
    tenant_id: str
    signal_id: bytes
    trace_id: bytes | None
    span_id: bytes | None
    service_name: str
    time: int
    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: int
    severity_text: str
    body: bytes
    attributes: bytes
    dropped_attributes_count: int
    flags: int
    event_name: str
    resource: bytes
    resource_dropped_attributes_count: int
    resource_schema_url: str
    scope_name: str
    scope_version: str
    scope_attributes: bytes
    scope_dropped_attributes_count: int
    scope_schema_url: str


class MetricPointRow(NamedTuple):
    tenant_id: str
    signal_id: bytes
    trace_id: bytes | None
    service_name: str
    time: int
    time_unix_nano: int
    start_time_unix_nano: int
    metric_name: str
    metric_description: str
    metric_unit: str
    metric_type: str
    aggregation_temporality: int
    is_monotonic: bool | None
    value: float | None
    value_int: int | None
    distribution: bytes | None
    exemplars: bytes
    attributes: bytes
    flags: int
    resource: bytes
    resource_dropped_attributes_count: int
    resource_schema_url: str
    scope_name: str
    scope_version: str
    scope_attributes: bytes
    scope_dropped_attributes_count: int
    scope_schema_url: str


SPAN_COLUMNS: tuple[str, ...] = SpanRow._fields
LOG_COLUMNS: tuple[str, ...] = LogRow._fields
METRIC_POINT_COLUMNS: tuple[str, ...] = MetricPointRow._fields

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "spans": SPAN_COLUMNS,
    "logs": LOG_COLUMNS,
    "metric_points": METRIC_POINT_COLUMNS,
}


def unix_nano_to_pg_us(unix_nano: int) -> int:
    """Nanoseconds since the Unix epoch -> microseconds since PostgreSQL's epoch (floored)."""
    return unix_nano // 1000 - PG_EPOCH_OFFSET_US
