"""Tier-1 triage on constructed traces whose root cause is known."""

from __future__ import annotations

import itertools
from typing import Any

from analyzer.origin import LogRecord, SpanRecord
from analyzer.triage.evidence import group_logs, next_steps, top_frames
from analyzer.triage.tier1 import History, analyse, rank_candidates

SERVER, CLIENT, INTERNAL = 2, 3, 1
OK, ERROR = 1, 2
_ids = itertools.count(1)


def span(
    service: str,
    parent: SpanRecord | None = None,
    *,
    kind: int = SERVER,
    status: int = OK,
    message: str = "",
    attributes: dict[str, Any] | None = None,
    exception: tuple[str, str, str] | None = None,
    name: str | None = None,
) -> SpanRecord:
    number = next(_ids)
    events: list[Any] = []
    if exception is not None:
        kind_, text, stack = exception
        events.append(
            {
                "name": "exception",
                "attributes": {
                    "exception.type": kind_,
                    "exception.message": text,
                    "exception.stacktrace": stack,
                },
            }
        )
    return SpanRecord(
        signal_id=number.to_bytes(16, "big"),
        span_id=number.to_bytes(8, "big"),
        parent_span_id=parent.span_id if parent else None,
        service_name=service,
        name=name or f"{service} op",
        kind=kind,
        status_code=status,
        status_message=message,
        start_unix_nano=number * 1000,
        events=events,
        attributes=attributes or {},
    )


def error_log(service: str, body: str) -> LogRecord:
    number = next(_ids)
    return LogRecord(
        signal_id=number.to_bytes(16, "big"),
        trace_id=b"\x01" * 16,
        service_name=service,
        scope_name="app",
        time_unix_nano=number,
        severity_number=17,
        severity_text="ERROR",
        body=body,
        attributes={},
    )


def chain_a_b_c() -> list[SpanRecord]:
    a = span("a", status=ERROR)
    a_client = span("a", a, kind=CLIENT, status=ERROR)
    b = span("b", a_client, status=ERROR)
    b_client = span("b", b, kind=CLIENT, status=ERROR)
    c = span(
        "c",
        b_client,
        status=ERROR,
        exception=("builtins.KeyError", "missing key 42", 'Traceback\n  File "c.py", line 3, in f'),
    )
    return [a, a_client, b, b_client, c]


def test_chain_with_failing_leaf_blames_the_leaf() -> None:
    """A -> B -> C with C failing: C is the top candidate, fatal, and A and B are the radius."""
    result = analyse(chain_a_b_c(), [])
    assert result is not None
    assert result.root_cause_service == "c"
    assert result.fatal
    assert result.exception_type == "KeyError"
    assert result.exception_message == "missing key 42"
    assert result.stack_frames == ('File "c.py", line 3, in f',)
    assert result.blast_radius == ("b", "a")
    assert "c" in result.summary
    assert 0.0 < result.confidence <= 0.95


def test_handled_error_below_successful_root_is_not_fatal() -> None:
    """An error under a root that succeeded was handled: the analysis says non-fatal."""
    root = span("gateway")
    child = span("cache", root, kind=INTERNAL, status=ERROR, message="miss")
    result = analyse([root, child], [])
    assert result is not None
    assert result.root_cause_service == "cache"
    assert not result.fatal
    assert "handled" in result.summary


def test_fatal_origin_outranks_handled_noise() -> None:
    """A handled error elsewhere in the trace does not outrank the error that reached the root."""
    root = span("gateway", status=ERROR)
    noise = span("cache", root, kind=INTERNAL, status=ERROR, message="miss")
    handled_parent = span("recs", root)
    handled = span("recs", handled_parent, kind=INTERNAL, status=ERROR)
    call = span("gateway", root, kind=CLIENT, status=ERROR)
    failing = span("orders", call, status=ERROR)
    # Both the cache miss and the orders failure sit under the erroring root; the longer
    # chain of errors (gateway's client call, then orders) is the stronger evidence.
    ranked = [
        c.service
        for c in rank_candidates([root, noise, handled_parent, handled, call, failing], [])
    ]
    assert ranked[0] == "orders"
    assert ranked.index("recs") > ranked.index("cache")


def test_client_error_on_database_blames_the_database() -> None:
    """An erroring CLIENT span with db.system and no instrumented callee gives the database."""
    root = span("orders", status=ERROR)
    query = span(
        "orders",
        root,
        kind=CLIENT,
        status=ERROR,
        attributes={"db.system": "postgresql"},
        exception=("psycopg.OperationalError", "deadlock detected", ""),
    )
    result = analyse([root, query], [])
    assert result is not None
    assert [c.service for c in result.candidates][:2] == ["postgresql", "orders"]
    assert result.candidates[0].reason == "dependency"
    assert result.blast_radius == ("orders",)
    assert any("migration" in step for step in result.next_steps)


def test_timeout_in_caller_blames_the_slow_callee() -> None:
    """A client span that timed out over a callee that succeeded points at the callee."""
    root = span("gateway", status=ERROR)
    call = span("gateway", root, kind=CLIENT, status=ERROR, message="DeadlineExceeded")
    slow = span("inventory", call)
    result = analyse([root, call, slow], [])
    assert result is not None
    assert result.root_cause_service == "inventory"
    assert any("latency" in step for step in result.next_steps)


def test_trace_without_errors_has_no_analysis() -> None:
    """Nothing erroring, nothing to triage."""
    root = span("gateway")
    assert analyse([root, span("b", root)], []) is None


def test_log_only_trace_blames_the_logging_service_and_keeps_history() -> None:
    """With only error logs, the service that logged is the candidate; history is carried."""
    history = History(first_seen_us=5, occurrences=3, regressions=1, similar=("9",))
    result = analyse([span("a")], [error_log("billing", "charge 12 failed")], history)
    assert result is not None
    assert result.root_cause_service == "billing"
    assert result.history == history
    assert "Seen 3 time(s)" in result.summary
    assert result.to_json()["root_cause_service"] == "billing"


def test_logs_group_by_template() -> None:
    """Logs differing only in numbers share a template; the bigger group comes first."""
    logs = [error_log("a", "user 1 failed"), error_log("b", "user 22 failed"), error_log("a", "x")]
    groups = group_logs(logs)
    assert groups[0].count == 2
    assert groups[0].services == ("a", "b")
    assert len(groups) == 2


def test_frames_and_rules() -> None:
    """Frames are recognised in Java traces; unmatched evidence gets the default steps."""
    java = "java.lang.NullPointerException\n\tat com.x.Foo.bar(Foo.java:10)\n\tat com.x.Main.run(Main.java:3)"
    assert top_frames(java) == ("at com.x.Foo.bar(Foo.java:10)", "at com.x.Main.run(Main.java:3)")
    assert next_steps("ValueError bad input")[0].startswith("Read the stack trace")
