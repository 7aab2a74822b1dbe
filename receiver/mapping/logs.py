"""Log records: ExportLogsServiceRequest -> LogRow, rejecting invalid records one by one."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from receiver.mapping.common import (
    MAX_UNIX_NANO,
    SPAN_ID_BYTES,
    TRACE_ID_BYTES,
    Mapped,
    content_hasher,
    dumps,
    resource_context,
    scope_context,
    text,
)
from receiver.mapping.rows import PG_EPOCH_OFFSET_US, LogRow
from receiver.mapping.values import any_value_to_json, attributes_to_json
from receiver.settings import Limits

MAX_SEVERITY_NUMBER = 24


def logs_to_rows(
    request: ExportLogsServiceRequest, tenant_id: str, limits: Limits
) -> Mapped[LogRow]:
    """Map every log record; a record's signal id is a hash of its resource, scope and content."""
    out: Mapped[LogRow] = Mapped()
    cuts = out.cuts
    max_length = limits.attribute_value_length
    for resource_logs in request.resource_logs:
        resource = resource_context(resource_logs.resource, resource_logs.schema_url, limits, cuts)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_context(scope_logs.scope, scope_logs.schema_url, limits, cuts)
            hasher = content_hasher(resource.identity, scope.identity)
            for record in scope_logs.log_records:
                problem = _problem(record)
                if problem is not None:
                    out.reject(problem)
                    continue
                attributes, dropped = attributes_to_json(
                    record.attributes, max_length, limits.attribute_count, cuts
                )
                signal = hasher.copy()
                signal.update(record.SerializeToString(deterministic=True))
                # The spec: when time_unix_nano is unset, use the observed time.
                when = record.time_unix_nano or record.observed_time_unix_nano
                out.rows.append(
                    LogRow(
                        tenant_id,
                        signal.digest(),
                        # logs.proto: an all-zero id is invalid and means "no trace/span".
                        record.trace_id if any(record.trace_id) else None,
                        record.span_id if any(record.span_id) else None,
                        resource.service_name,
                        when // 1000 - PG_EPOCH_OFFSET_US,
                        record.time_unix_nano,
                        record.observed_time_unix_nano,
                        record.severity_number,
                        text(record.severity_text),
                        dumps(any_value_to_json(record.body, max_length, cuts)),
                        dumps(attributes),
                        record.dropped_attributes_count + dropped,
                        record.flags,
                        text(record.event_name),
                        resource.resource_json,
                        resource.dropped_attributes_count,
                        resource.schema_url,
                        scope.name,
                        scope.version,
                        scope.attributes_json,
                        scope.dropped_attributes_count,
                        scope.schema_url,
                    )
                )
    return out


def _problem(record: LogRecord) -> str | None:
    if len(record.trace_id) not in (0, TRACE_ID_BYTES):
        return f"log record: trace_id must be empty or 16 bytes, got {len(record.trace_id)}"
    if len(record.span_id) not in (0, SPAN_ID_BYTES):
        return f"log record: span_id must be empty or 8 bytes, got {len(record.span_id)}"
    if max(record.time_unix_nano, record.observed_time_unix_nano) > MAX_UNIX_NANO:
        return "log record: time_unix_nano is beyond year 2262"
    if not 0 <= record.severity_number <= MAX_SEVERITY_NUMBER:
        return f"log record: severity_number {record.severity_number} is outside 0..24"
    return None
