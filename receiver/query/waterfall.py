"""A trace as a terminal waterfall: one line per span, indented under its parent, with a
bar placed on the trace's timeline, its duration, errors marked, and its log lines
beneath it. Pure: messages in, text out.

    Trace 2cce7f29465d47a6729e9ece630e78bd · 3 spans · 2 services · 250.0ms · 1 error
    checkout: POST /pay                     ████████████████████████████████  250.0ms
      payments: charge                    ✗         ███████████████           120.0ms  card declined
        │ 08:00:00.100 WARN  charge slow
        payments: db query                            ████                     30.0ms
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from receiver.mapping.common import UNKNOWN_SERVICE

STATUS_ERROR = 2
SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LABEL_WIDTH = 40
MIN_BAR_WIDTH = 10
ERROR_MARK = "✗"


@dataclasses.dataclass(slots=True)
class _Span:
    span_id: bytes
    parent_id: bytes
    service: str
    name: str
    start: int
    end: int
    error: bool
    status_message: str
    children: list[_Span] = dataclasses.field(default_factory=list)


def format_duration(nanos: int) -> str:
    """850ns, 12.3µs, 45.1ms, 1.23s, 2m03s."""
    if nanos < 1_000:
        return f"{nanos}ns"
    if nanos < 1_000_000:
        return f"{nanos / 1_000:.1f}µs"
    if nanos < 1_000_000_000:
        return f"{nanos / 1_000_000:.1f}ms"
    if nanos < 60_000_000_000:
        return f"{nanos / 1_000_000_000:.2f}s"
    minutes, seconds = divmod(nanos // 1_000_000_000, 60)
    return f"{minutes}m{seconds:02d}s"


def severity_name(number: int, text: str = "") -> str:
    """The record's severity text, else the name of its severity number's range."""
    if text:
        return text
    if 1 <= number <= 24:
        return SEVERITY_NAMES[(number - 1) // 4]
    return "-"


def service_of(resource: Any) -> str:
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.string_value:
            return str(kv.value.string_value)
    return UNKNOWN_SERVICE


def body_text(body: Any) -> str:
    kind = body.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return str(body.string_value)
    return str(getattr(body, kind)).replace("\n", " ").strip()


def render_waterfall(trace: TracesData, logs: LogsData, width: int = 120) -> str:
    """The whole trace as text lines (see the module docstring)."""
    spans = _spans(trace)
    if not spans:
        return "(no spans)"
    by_id = {span.span_id: span for span in spans}
    roots: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.span_id)):
        parent = by_id.get(span.parent_id)
        (parent.children if parent is not None and parent is not span else roots).append(span)
    first, last = min(s.start for s in spans), max(s.end for s in spans)
    total = max(last - first, 1)
    bar_width = max(MIN_BAR_WIDTH, width - LABEL_WIDTH - 12)
    records = _logs_by_span(logs)
    errors = sum(span.error for span in spans)
    services = {span.service for span in spans}
    trace_id = next(iter(_all_spans(trace))).trace_id.hex()
    lines = [
        f"Trace {trace_id} · {len(spans)} span{'s' * (len(spans) != 1)} · "
        f"{len(services)} service{'s' * (len(services) != 1)} · {format_duration(last - first)}"
        + (f" · {errors} error{'s' * (errors != 1)}" if errors else "")
    ]

    def walk(span: _Span, depth: int) -> None:
        label = f"{'  ' * depth}{span.service}: {span.name}"
        if len(label) > LABEL_WIDTH - 2:
            label = label[: LABEL_WIDTH - 3] + "…"
        offset = round((span.start - first) / total * bar_width)
        length = max(1, round((span.end - span.start) / total * bar_width))
        offset = min(offset, bar_width - 1)
        bar = " " * offset + "█" * min(length, bar_width - offset)
        mark = ERROR_MARK if span.error else " "
        line = f"{label:<{LABEL_WIDTH - 2}}{mark} {bar:<{bar_width}} {format_duration(span.end - span.start):>8}"
        if span.error and span.status_message:
            line += f"  {span.status_message}"
        lines.append(line.rstrip())
        for when, severity, text in records.pop(span.span_id, []):
            lines.append(f"{'  ' * (depth + 1)}│ {_clock(when)} {severity:<5} {text}")
        for child in span.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    leftovers = sorted(record for group in records.values() for record in group)
    if leftovers:
        lines.append("logs not attached to a span of this trace:")
        lines += [f"│ {_clock(when)} {severity:<5} {text}" for when, severity, text in leftovers]
    return "\n".join(lines)


def _all_spans(trace: TracesData) -> Any:
    for resource_spans in trace.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def _spans(trace: TracesData) -> list[_Span]:
    spans = []
    for resource_spans in trace.resource_spans:
        service = service_of(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    _Span(
                        span_id=span.span_id,
                        parent_id=span.parent_span_id,
                        service=service,
                        name=span.name,
                        start=span.start_time_unix_nano,
                        end=max(span.end_time_unix_nano, span.start_time_unix_nano),
                        error=span.status.code == STATUS_ERROR,
                        status_message=span.status.message,
                    )
                )
    return spans


def _logs_by_span(logs: LogsData) -> dict[bytes, list[tuple[int, str, str]]]:
    out: dict[bytes, list[tuple[int, str, str]]] = defaultdict(list)
    for resource_logs in logs.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                when = record.time_unix_nano or record.observed_time_unix_nano
                severity = severity_name(record.severity_number, record.severity_text)
                out[record.span_id].append((when, severity, body_text(record.body)))
    for group in out.values():
        group.sort()
    return out


def _clock(unix_nano: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_nano / 1e9, dt.UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
