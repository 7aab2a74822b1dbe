"""Stored rows -> OTLP messages (TracesData, LogsData) and trace summaries.

The inverse of receiver/mapping: spans and log records are grouped by resource and
instrumentation scope as they were received, and attribute JSON is turned back into
AnyValues with `json_to_any_value` (which undoes the mapping's tags for bytes, NaN and
infinities, and tag-like kvlists). Pure: rows in, messages out.

Rows are mappings (asyncpg Records) with the columns named in receiver/query/store.py;
JSON columns arrive as text (the read pool keeps asyncpg's default codecs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from prodsentinel.v1 import query_pb2
from receiver.mapping.values import json_to_any_value
from receiver.query import Row

_EMPTY_OBJECT = "{}"
_EMPTY_LIST = "[]"


def fill_attributes(text: str | dict[str, Any], out: Any) -> None:
    """Fill a repeated KeyValue field from stored attribute JSON (text or parsed)."""
    if text == _EMPTY_OBJECT or not text:
        return
    data = orjson.loads(text) if isinstance(text, str) else text
    for key, item in data.items():
        # The common scalar kinds directly (this is GetTrace's hot loop); exact type
        # checks, as bool is an int and tagged values are dicts.
        kind = type(item)
        if kind is str:
            out.add(key=key).value.string_value = item
        elif kind is int:
            out.add(key=key).value.int_value = item
        elif kind is bool:
            out.add(key=key).value.bool_value = item
        elif kind is float:
            out.add(key=key).value.double_value = item
        else:
            value = out.add(key=key).value
            value.SetInParent()  # an empty AnyValue was sent as a present, empty message
            json_to_any_value(item, value)


def _resource_key(row: Row) -> tuple[Any, ...]:
    return (row["resource"], row["resource_dropped_attributes_count"], row["resource_schema_url"])


def _scope_key(row: Row) -> tuple[Any, ...]:
    return (
        row["scope_name"],
        row["scope_version"],
        row["scope_attributes"],
        row["scope_dropped_attributes_count"],
        row["scope_schema_url"],
    )


def _fill_resource(container: Any, row: Row) -> None:
    """Set a Resource{Spans,Logs}'s resource and schema_url from a row."""
    resource = container.resource
    resource.SetInParent()
    fill_attributes(row["resource"], resource.attributes)
    resource.dropped_attributes_count = row["resource_dropped_attributes_count"]
    container.schema_url = row["resource_schema_url"]


def _fill_scope(container: Any, row: Row) -> None:
    scope = container.scope
    scope.SetInParent()
    scope.name = row["scope_name"]
    scope.version = row["scope_version"]
    fill_attributes(row["scope_attributes"], scope.attributes)
    scope.dropped_attributes_count = row["scope_dropped_attributes_count"]
    container.schema_url = row["scope_schema_url"]


def _grouped(
    rows: Iterable[Row],
    new_resource: Callable[[], Any],
    scopes_of: Callable[[Any], Any],
    items_of: Callable[[Any], Any],
    fill_item: Callable[[Any, Row], None],
    *,
    consecutive: bool,
) -> None:
    """Group rows by resource then scope; with `consecutive`, only runs of equal ones
    (which keeps the rows' order when reading resource -> scope -> item)."""
    resources: dict[tuple[Any, ...], tuple[Any, dict[tuple[Any, ...], Any]]] = {}
    last: tuple[Any, ...] | None = None
    for row in rows:
        resource_key = _resource_key(row)
        if consecutive and resource_key != last:
            resources.clear()
        last = resource_key
        group = resources.get(resource_key)
        if group is None:
            container = new_resource()
            _fill_resource(container, row)
            group = resources[resource_key] = (container, {})
        container, scopes = group
        scope_key = _scope_key(row)
        scope = scopes.get(scope_key)
        if scope is None:
            if consecutive:
                scopes.clear()
            scope = scopes[scope_key] = scopes_of(container).add()
            _fill_scope(scope, row)
        fill_item(items_of(scope).add(), row)


def spans_to_traces_data(rows: Iterable[Row], data: TracesData | None = None) -> TracesData:
    """Every row as a Span, grouped by resource and scope (into `data` when given)."""
    data = TracesData() if data is None else data
    # Big traces repeat attribute sets (a loop of identical queries): build each distinct
    # set once, as a Span holding only attributes, and merge it in (C speed).
    attribute_spans: dict[str, Span] = {}

    def fill(span: Span, row: Row) -> None:
        text = row["attributes"]
        if text != _EMPTY_OBJECT:
            holder = attribute_spans.get(text)
            if holder is None:
                holder = attribute_spans[text] = Span()
                fill_attributes(text, holder.attributes)
            span.MergeFrom(holder)
        _fill_span(span, row)

    _grouped(
        rows,
        data.resource_spans.add,
        lambda resource: resource.scope_spans,
        lambda scope: scope.spans,
        fill,
        consecutive=False,
    )
    return data


def logs_to_logs_data(
    rows: Iterable[Row], data: LogsData | None = None, *, keep_order: bool = False
) -> LogsData:
    """Every row as a LogRecord, grouped by resource and scope (into `data` when given);
    with `keep_order`, only consecutive rows share a group, so reading the result in
    order gives the rows' order."""
    data = LogsData() if data is None else data
    _grouped(
        rows,
        data.resource_logs.add,
        lambda resource: resource.scope_logs,
        lambda scope: scope.log_records,
        _fill_log_record,
        consecutive=keep_order,
    )
    return data


def _fill_span(span: Span, row: Row) -> None:
    span.trace_id = row["trace_id"]
    span.span_id = row["span_id"]
    span.trace_state = row["trace_state"]
    if row["parent_span_id"] is not None:
        span.parent_span_id = row["parent_span_id"]
    span.flags = row["flags"]
    span.name = row["name"]
    span.kind = row["kind"]
    span.start_time_unix_nano = row["start_time_unix_nano"]
    span.end_time_unix_nano = row["end_time_unix_nano"]
    span.dropped_attributes_count = row["dropped_attributes_count"]
    if row["events"] != _EMPTY_LIST:
        for stored in orjson.loads(row["events"]):
            event = span.events.add(
                time_unix_nano=stored["time_unix_nano"],
                name=stored["name"],
                dropped_attributes_count=stored["dropped_attributes_count"],
            )
            fill_attributes(stored["attributes"], event.attributes)
    span.dropped_events_count = row["dropped_events_count"]
    if row["links"] != _EMPTY_LIST:
        for stored in orjson.loads(row["links"]):
            link = span.links.add(
                trace_id=bytes.fromhex(stored["trace_id"]),
                span_id=bytes.fromhex(stored["span_id"]),
                trace_state=stored["trace_state"],
                dropped_attributes_count=stored["dropped_attributes_count"],
                flags=stored["flags"],
            )
            fill_attributes(stored["attributes"], link.attributes)
    span.dropped_links_count = row["dropped_links_count"]
    status = span.status
    status.SetInParent()
    status.code = row["status_code"]
    status.message = row["status_message"]


def _fill_log_record(record: LogRecord, row: Row) -> None:
    record.time_unix_nano = row["time_unix_nano"]
    record.observed_time_unix_nano = row["observed_time_unix_nano"]
    record.severity_number = row["severity_number"]
    record.severity_text = row["severity_text"]
    body = orjson.loads(row["body"])
    if body is not None:
        json_to_any_value(body, record.body)
    fill_attributes(row["attributes"], record.attributes)
    record.dropped_attributes_count = row["dropped_attributes_count"]
    record.flags = row["flags"]
    if row["trace_id"] is not None:
        record.trace_id = row["trace_id"]
    if row["span_id"] is not None:
        record.span_id = row["span_id"]
    record.event_name = row["event_name"]


def trace_summary(row: Row) -> query_pb2.TraceSummary:
    """One row of the summary query (see store.py) -> a TraceSummary."""
    start = Timestamp()
    start.FromNanoseconds(row["start_ns"])
    duration = Duration()
    duration.FromNanoseconds(row["end_ns"] - row["start_ns"])
    return query_pb2.TraceSummary(
        trace_id=row["trace_id"].hex(),
        root_service_name=row["root_service"],
        root_span_name=row["root_name"],
        start_time=start,
        duration=duration,
        span_count=row["span_count"],
        error_count=row["error_count"],
        service_names=row["services"],
    )
