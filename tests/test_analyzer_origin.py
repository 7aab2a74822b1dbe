"""Origin selection and trace analysis (pure)."""

from __future__ import annotations

from typing import Any

from analyzer.lifecycle import IncidentSeverity
from analyzer.origin import LogRecord, SpanRecord, analyse_log, analyse_trace, describe_log
from analyzer.severity import SeverityRules

RULES = SeverityRules()
TRACE = bytes(range(16))


def span(
    name: str,
    parent: str | None,
    service: str = "api",
    *,
    error: bool = False,
    exception: tuple[str, str] | None = None,
    kind: int = 1,
    start: int = 0,
    attributes: dict[str, Any] | None = None,
    message: str = "",
) -> SpanRecord:
    events = []
    if exception:
        events.append(
            {
                "name": "exception",
                "attributes": {"exception.type": exception[0], "exception.message": exception[1]},
            }
        )
    return SpanRecord(
        signal_id=name.encode().ljust(16, b"-"),
        span_id=name.encode().ljust(8, b"-"),
        parent_span_id=parent.encode().ljust(8, b"-") if parent else None,
        service_name=service,
        name=name,
        kind=kind,
        status_code=2 if error else 0,
        status_message=message,
        start_unix_nano=start,
        events=events,
        attributes=attributes or {},
    )


def log(
    body: Any, severity: int = 17, service: str = "api", text: str = "", **attributes: Any
) -> LogRecord:
    return LogRecord(
        signal_id=b"L" * 16,
        trace_id=None,
        service_name=service,
        scope_name="app.module",
        time_unix_nano=5_000_000,
        severity_number=severity,
        severity_text=text,
        body=body,
        attributes=attributes,
    )


def test_origin_is_the_erroring_span_whose_children_did_not_error() -> None:
    """root -> gateway -> db all erroring: the origin is db (where it started), the error
    reached the entry span so severity is high, and three services escalate it to critical."""
    spans = [
        span("root", None, "web", error=True, kind=2, start=1),
        span("gateway", "root", "gateway", error=True, start=2),
        span(
            "db",
            "gateway",
            "orders",
            exception=("psycopg.OperationalError", "connection 5 lost"),
            start=3,
        ),
        span("cache", "root", "web", start=4),
    ]
    result = analyse_trace(TRACE, spans, [], RULES)
    assert result is not None
    assert (result.service_name, result.operation) == ("orders", "db")
    assert (result.exception_type, result.message_template) == (
        "psycopg.OperationalError",
        "connection <int> lost",
    )
    assert result.origin_span_id == b"db------"
    assert result.severity is IncidentSeverity.CRITICAL
    assert result.services == ("web", "gateway", "orders")
    assert result.error_count == 3


def test_earliest_leaf_wins_between_parallel_failures() -> None:
    """Two failing leaves under one parent: the earlier one is the origin."""
    spans = [
        span("root", None, error=True, start=1),
        span("late", "root", error=True, start=9, message="b"),
        span("early", "root", error=True, start=5, message="a"),
    ]
    result = analyse_trace(TRACE, spans, [], RULES)
    assert result is not None
    assert result.operation == "early"


def test_error_below_the_root_is_medium_when_unhandled_and_low_when_handled() -> None:
    """An ERROR span below a healthy root is medium; an exception event alone (recorded, then
    handled) is low."""
    unhandled = analyse_trace(
        TRACE, [span("root", None), span("child", "root", error=True)], [], RULES
    )
    handled = analyse_trace(
        TRACE, [span("root", None), span("child", "root", exception=("E", "x"))], [], RULES
    )
    assert unhandled is not None
    assert handled is not None
    assert unhandled.severity is IncidentSeverity.MEDIUM
    assert handled.severity is IncidentSeverity.LOW


def test_server_span_whose_parent_is_elsewhere_is_an_entry() -> None:
    """A server span whose parent is not in the stored trace (an uninstrumented caller) is
    where the trace enters this system: an error there is high."""
    result = analyse_trace(
        TRACE,
        [
            span(
                "entry",
                "upstream",
                kind=2,
                attributes={"http.response.status_code": 503},
                message="down",
            )
        ],
        [],
        RULES,
    )
    assert result is not None
    assert result.severity is IncidentSeverity.HIGH
    assert result.exception_type == "HTTP 503"


def test_a_trace_without_error_spans_takes_its_error_log_and_fatal_is_critical() -> None:
    """No erroring span: the origin is the most severe error log; FATAL makes it critical."""
    logs = [log("disk 3 failing", severity=17), log("kernel panic 9", severity=21)]
    result = analyse_trace(TRACE, [span("root", None)], logs, RULES)
    assert result is not None
    assert (result.origin_kind, result.message_template) == ("log", "kernel panic <int>")
    assert result.trace_id == TRACE
    assert result.severity is IncidentSeverity.CRITICAL


def test_nothing_erroring_is_no_analysis() -> None:
    """A trace of healthy spans and INFO logs gives no occurrence."""
    assert analyse_trace(TRACE, [span("root", None)], [log("fine", severity=9)], RULES) is None


def test_logs_describe_themselves_from_exception_attributes_or_body() -> None:
    """exception.* attributes win over the body; a map body uses its message; the operation
    is the code function or else the logger (scope)."""
    assert describe_log("s", "logger", "order 5 failed", {}) == (
        "Error",
        "order <int> failed",
        "logger",
    )
    assert describe_log(
        "s",
        "logger",
        "ignored",
        {"exception.type": "builtins.KeyError", "exception.message": "'k'", "code.function": "pay"},
    ) == ("KeyError", "'k'", "pay")
    assert describe_log("s", "l", {"message": "id 7 bad", "extra": 1}, {})[1] == "id <int> bad"
    record = log("x", text="CRITICAL", severity=17)
    assert analyse_log(record, RULES).severity is IncidentSeverity.CRITICAL
    assert analyse_log(record, RULES).occurrence_key == b"L" * 16
