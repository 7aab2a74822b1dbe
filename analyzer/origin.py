"""Trace analysis: pick the origin error of a trace and describe it (pure).

The origin is the erroring span none of whose children errored (where the failure
started), the earliest such span if there are several; a trace with no erroring span but
an error log takes the log instead. The fingerprint is computed from the origin's
normalised exception type, its message template, its service and its operation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from analyzer.detection import (
    EXCEPTION_EVENT,
    HTTP_STATUS_KEYS,
    SPAN_KIND_SERVER,
    STATUS_CODE_ERROR,
    http_status,
    log_is_error,
    span_is_error,
)
from analyzer.fingerprint import (
    compute_fingerprint,
    normalise_exception_type,
    parameterise,
    title_of,
)
from analyzer.lifecycle import IncidentSeverity
from analyzer.severity import (
    FATAL_SEVERITY_NUMBER,
    FATAL_TEXTS,
    SeverityFacts,
    SeverityRules,
    trace_severity,
)


@dataclasses.dataclass(frozen=True, slots=True)
class SpanRecord:
    signal_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    service_name: str
    name: str
    kind: int
    status_code: int
    status_message: str
    start_unix_nano: int
    events: Sequence[Any]
    attributes: Mapping[str, Any]

    @property
    def is_error(self) -> bool:
        return span_is_error(self.status_code, self.kind, self.events, self.attributes)


@dataclasses.dataclass(frozen=True, slots=True)
class LogRecord:
    signal_id: bytes
    trace_id: bytes | None
    service_name: str
    scope_name: str
    time_unix_nano: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: Mapping[str, Any]

    @property
    def is_fatal(self) -> bool:
        return (
            self.severity_number >= FATAL_SEVERITY_NUMBER
            or self.severity_text.strip().upper() in FATAL_TEXTS
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Analysis:
    """One occurrence, ready to be grouped: its fingerprint, origin and severity."""

    fingerprint: str
    title: str
    exception_type: str
    message_template: str
    service_name: str
    operation: str
    origin_kind: str  # "span" | "log"
    origin_signal_id: bytes
    origin_span_id: bytes | None
    trace_id: bytes | None
    occurred_at_us: int
    severity: IncidentSeverity
    severity_reasons: tuple[str, ...]
    services: tuple[str, ...]
    error_count: int

    @property
    def occurrence_key(self) -> bytes:
        """What makes an occurrence unique: its trace, or the log itself when it has none."""
        return self.trace_id if self.trace_id is not None else self.origin_signal_id


def describe_log(
    service: str, scope: str, body: Any, attributes: Mapping[str, Any]
) -> tuple[str, str, str]:
    """(exception type, message template, operation) of an error log record."""
    raw_type = attributes.get("exception.type")
    message = attributes.get("exception.message")
    if not isinstance(message, str) or not message:
        message = _body_text(body)
    operation = attributes.get("code.function.name") or attributes.get("code.function") or scope
    return (
        normalise_exception_type(raw_type if isinstance(raw_type, str) else ""),
        parameterise(message),
        parameterise(str(operation)),
    )


def log_fingerprint(service: str, scope: str, body: Any, attributes: Mapping[str, Any]) -> str:
    exception_type, template, operation = describe_log(service, scope, body, attributes)
    return compute_fingerprint(exception_type, template, service, operation)


def analyse_trace(
    trace_id: bytes, spans: Sequence[SpanRecord], logs: Sequence[LogRecord], rules: SeverityRules
) -> Analysis | None:
    """The trace's single occurrence, or None when nothing in it is an error."""
    error_spans = [span for span in spans if span.is_error]
    error_logs = [log for log in logs if log_is_error(log.severity_number)]
    if not error_spans and not error_logs:
        return None
    present = {span.span_id for span in spans}
    errored_parents = {span.parent_span_id for span in error_spans if span.parent_span_id}
    services = _services(error_spans, error_logs)
    facts_fatal = any(log.is_fatal for log in error_logs)
    if error_spans:
        leaves = [span for span in error_spans if span.span_id not in errored_parents]
        origin = min(leaves or error_spans, key=lambda s: (s.start_unix_nano, s.span_id))
        reached_entry = any(
            span.parent_span_id is None
            or (span.kind == SPAN_KIND_SERVER and span.parent_span_id not in present)
            for span in error_spans
        )
        exception_type, template = _describe_span(origin)
        operation = parameterise(origin.name)
        facts = SeverityFacts(
            fatal_log=facts_fatal,
            reached_entry=reached_entry,
            unhandled=origin.status_code == STATUS_CODE_ERROR,
            services=services,
            origin_service=origin.service_name,
        )
        return _analysis(
            (exception_type, template, origin.service_name, operation),
            ("span", origin.signal_id, origin.span_id, trace_id, origin.start_unix_nano // 1000),
            facts,
            rules,
            len(error_spans) + len(error_logs),
        )
    log = min(error_logs, key=lambda r: (-r.severity_number, r.time_unix_nano, r.signal_id))
    return analyse_log(log, rules, trace_id=trace_id, services=services, count=len(error_logs))


def analyse_log(
    log: LogRecord,
    rules: SeverityRules,
    *,
    trace_id: bytes | None = None,
    services: tuple[str, ...] | None = None,
    count: int = 1,
) -> Analysis:
    """An occurrence whose origin is an error log (a traceless one, or a trace's only error)."""
    exception_type, template, operation = describe_log(
        log.service_name, log.scope_name, log.body, log.attributes
    )
    facts = SeverityFacts(
        fatal_log=log.is_fatal,
        reached_entry=False,
        unhandled=False,
        services=services or (log.service_name,),
        origin_service=log.service_name,
    )
    return _analysis(
        (exception_type, template, log.service_name, operation),
        ("log", log.signal_id, None, trace_id, log.time_unix_nano // 1000),
        facts,
        rules,
        count,
    )


def _analysis(
    what: tuple[str, str, str, str],
    where: tuple[str, bytes, bytes | None, bytes | None, int],
    facts: SeverityFacts,
    rules: SeverityRules,
    count: int,
) -> Analysis:
    exception_type, template, service, operation = what
    kind, signal_id, span_id, trace_id, occurred_at_us = where
    severity, reasons = trace_severity(facts, rules)
    return Analysis(
        fingerprint=compute_fingerprint(exception_type, template, service, operation),
        title=title_of(exception_type, template),
        exception_type=exception_type,
        message_template=template,
        service_name=service,
        operation=operation,
        origin_kind=kind,
        origin_signal_id=signal_id,
        origin_span_id=span_id,
        trace_id=trace_id,
        occurred_at_us=occurred_at_us,
        severity=severity,
        severity_reasons=reasons,
        services=facts.services,
        error_count=count,
    )


def _describe_span(span: SpanRecord) -> tuple[str, str]:
    exceptions = [
        e for e in span.events if isinstance(e, Mapping) and e.get("name") == EXCEPTION_EVENT
    ]
    if exceptions:
        attributes = exceptions[-1].get("attributes") or {}
        raw_type = attributes.get("exception.type")
        message = attributes.get("exception.message")
        return (
            normalise_exception_type(raw_type if isinstance(raw_type, str) else ""),
            parameterise(message if isinstance(message, str) else span.status_message),
        )
    error_type = span.attributes.get("error.type")
    if isinstance(error_type, str) and error_type:
        return normalise_exception_type(error_type), parameterise(span.status_message)
    for key in HTTP_STATUS_KEYS:
        code = http_status(span.attributes.get(key))
        if code is not None and code >= 500:
            return f"HTTP {int(code)}", parameterise(span.status_message)
    return normalise_exception_type(""), parameterise(span.status_message)


def _services(spans: Sequence[SpanRecord], logs: Sequence[LogRecord]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for span in sorted(spans, key=lambda s: s.start_unix_nano):
        seen.setdefault(span.service_name)
    for log in logs:
        seen.setdefault(log.service_name)
    return tuple(seen)


def _body_text(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, Mapping):
        for key in ("message", "msg", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    if body is None:
        return ""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
