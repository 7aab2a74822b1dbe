"""Tier-1 triage: rank an incident's root-cause candidates from its trace (pure, no I/O).

A candidate is an origin error span (an erroring span none of whose children errored).
It is *fatal* when the error propagated to the trace's root (every ancestor errored) and
*handled* when some ancestor succeeded or a later attempt of the same call did (a retry). An erroring CLIENT span points at the service it
called: the server span below it when that is instrumented, else the peer named by
`peer.service`, `db.system`, `messaging.system` or `server.address` (the failing dependency
edge). Candidates are ranked per service: fatal before handled, the callee of a failing
edge before its caller, earlier before later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from analyzer.fingerprint import GENERIC_TYPE, normalise_exception_type, parameterise
from analyzer.origin import LogRecord, SpanRecord
from analyzer.triage.evidence import LogGroup, exception_event, group_logs, next_steps, top_frames

SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
PEER_KEYS = ("peer.service", "db.system", "messaging.system", "server.address", "net.peer.name")
MAX_CANDIDATES = 5

# Score parts: why one candidate outranks another.
SCORE_ORIGIN = 1.0
SCORE_FATAL = 1.0
SCORE_CALLEE = 0.5
SCORE_CALLER = -0.25
SCORE_LOG_ONLY = 0.25
SCORE_PER_ERROR_ANCESTOR = 0.1  # a longer chain of errors above an origin is more evidence
MAX_DEPTH_BONUS = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked root-cause service, with the span that points at it."""

    service: str
    score: float
    fatal: bool
    reason: str  # "origin" | "dependency" | "caller" | "log"
    operation: str
    span_id: str | None
    exception_type: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """What the incident store knows about the incident (filled in by the caller)."""

    first_seen_us: int | None = None
    occurrences: int = 0
    regressions: int = 0
    similar: tuple[str, ...] = ()  # ids of incidents with the same service and exception


@dataclasses.dataclass(frozen=True, slots=True)
class Tier1Result:
    """The structured tier-1 analysis of one incident."""

    candidates: tuple[Candidate, ...]
    fatal: bool
    exception_type: str
    exception_message: str
    stack_frames: tuple[str, ...]
    log_groups: tuple[LogGroup, ...]
    blast_radius: tuple[str, ...]
    history: History
    summary: str
    confidence: float
    next_steps: tuple[str, ...]

    @property
    def root_cause_service(self) -> str | None:
        return self.candidates[0].service if self.candidates else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what `analysis_results.result` stores)."""
        return dataclasses.asdict(self) | {"root_cause_service": self.root_cause_service}


def analyse(
    spans: Sequence[SpanRecord], logs: Sequence[LogRecord], history: History | None = None
) -> Tier1Result | None:
    """The tier-1 analysis of one trace's spans and error logs; None when nothing errored."""
    history = history or History()
    error_logs = [log for log in logs if log.severity_number >= 17]
    candidates = rank_candidates(spans, error_logs)
    if not candidates:
        return None
    top = candidates[0]
    by_id = {span.span_id.hex(): span for span in spans}
    origin = by_id.get(top.span_id) if top.span_id else None
    stacktrace = ""
    if origin is not None:
        found = exception_event(origin.events) or {}
        raw = found.get("exception.stacktrace")
        stacktrace = raw if isinstance(raw, str) else ""
    radius = blast_radius(spans, origin, top.service)
    evidence = " ".join(
        [top.exception_type, top.message, top.reason]
        + (
            [f"{k}={origin.attributes[k]}" for k in PEER_KEYS if k in origin.attributes]
            if origin
            else []
        )
    )
    confidence = _confidence(candidates, bool(stacktrace) or top.exception_type != GENERIC_TYPE)
    return Tier1Result(
        candidates=candidates,
        fatal=top.fatal,
        exception_type=top.exception_type,
        exception_message=top.message,
        stack_frames=top_frames(stacktrace),
        log_groups=group_logs(error_logs),
        blast_radius=radius,
        history=history,
        summary=summarise(top, radius, history, len(error_logs)),
        confidence=confidence,
        next_steps=next_steps(evidence),
    )


def rank_candidates(
    spans: Sequence[SpanRecord], error_logs: Sequence[LogRecord]
) -> tuple[Candidate, ...]:
    """Root-cause candidates, best first, at most one per service."""
    by_id = {span.span_id: span for span in spans}
    children: dict[bytes, list[SpanRecord]] = {}
    for span in spans:
        if span.parent_span_id is not None:
            children.setdefault(span.parent_span_id, []).append(span)
    errors = [span for span in spans if span.is_error]
    retried = {
        span.span_id
        for span in errors
        if _retried(span, children.get(span.parent_span_id or b"", []))
    }
    # A parent whose only failed children were retried successfully failed on its own.
    errored_parents = {
        span.parent_span_id
        for span in errors
        if span.parent_span_id and span.span_id not in retried
    }
    found: list[tuple[float, int, Candidate]] = []
    for span in errors:
        if span.span_id in errored_parents:
            continue
        fatal, depth = _propagated(span, by_id)
        if span.span_id in retried:
            fatal = False  # a later attempt of the same call succeeded: this one was handled
        depth_bonus = min(depth * SCORE_PER_ERROR_ANCESTOR, MAX_DEPTH_BONUS)
        base = SCORE_ORIGIN + (SCORE_FATAL if fatal else 0.0) + depth_bonus
        callee = _callee(span, children.get(span.span_id, []))
        targets = (
            [(callee, SCORE_CALLEE, "dependency"), (span.service_name, SCORE_CALLER, "caller")]
            if callee is not None
            else [(span.service_name, 0.0, "origin")]
        )
        exception_type, message = describe_error(span)
        for service, bonus, reason in targets:
            candidate = Candidate(
                service,
                round(base + bonus, 3),
                fatal,
                reason,
                parameterise(span.name),
                span.span_id.hex(),
                exception_type,
                message,
            )
            found.append((base + bonus, span.start_unix_nano, candidate))
    for record in error_logs:
        exception_type, template = _describe_log(record)
        found.append(
            (
                SCORE_LOG_ONLY,
                record.time_unix_nano,
                Candidate(
                    record.service_name,
                    SCORE_LOG_ONLY,
                    False,
                    "log",
                    record.scope_name,
                    None,
                    exception_type,
                    template,
                ),
            )
        )
    found.sort(key=lambda item: (-item[0], item[1]))
    ranked: dict[str, Candidate] = {}
    for _, _, candidate in found:
        ranked.setdefault(candidate.service, candidate)
    return tuple(ranked.values())[:MAX_CANDIDATES]


def describe_error(span: SpanRecord) -> tuple[str, str]:
    """(exception type, message) of an erroring span, from its exception event or status."""
    found = exception_event(span.events)
    if found is not None:
        raw_type, message = found.get("exception.type"), found.get("exception.message")
        return (
            normalise_exception_type(raw_type if isinstance(raw_type, str) else ""),
            message if isinstance(message, str) and message else span.status_message,
        )
    error_type = span.attributes.get("error.type")
    if isinstance(error_type, str) and error_type:
        return normalise_exception_type(error_type), span.status_message
    return normalise_exception_type(""), span.status_message


def blast_radius(
    spans: Sequence[SpanRecord], origin: SpanRecord | None, root_cause: str
) -> tuple[str, ...]:
    """Services upstream of the root cause in the trace, nearest first."""
    if origin is None:
        return ()
    by_id = {span.span_id: span for span in spans}
    seen: dict[str, None] = {}
    current: SpanRecord | None = origin
    while current is not None:
        if current.service_name != root_cause:
            seen.setdefault(current.service_name)
        parent = current.parent_span_id
        current = by_id.get(parent) if parent is not None else None
    return tuple(seen)


def summarise(top: Candidate, radius: Sequence[str], history: History, log_count: int) -> str:
    """The one-paragraph summary, from a template."""
    what = f"{top.exception_type}: {top.message}" if top.message else top.exception_type
    how = "reached the request's entry point" if top.fatal else "was handled upstream"
    via = {
        "dependency": f"a call to {top.service} failed",
        "caller": f"{top.service} failed calling a dependency",
        "log": f"{top.service} logged an error",
    }.get(top.reason, f"{top.service} raised an error")
    parts = [f"Most likely root cause: {top.service} ({top.operation}); {via} ({what}) and {how}."]
    if radius:
        parts.append(f"Affected upstream: {', '.join(radius)}.")
    if log_count:
        parts.append(f"{log_count} error log(s) in the trace.")
    if history.occurrences:
        parts.append(
            f"Seen {history.occurrences} time(s), {history.regressions} regression(s), "
            f"{len(history.similar)} similar incident(s)."
        )
    return " ".join(parts)


def _propagated(span: SpanRecord, by_id: Mapping[bytes, SpanRecord]) -> tuple[bool, int]:
    """(every ancestor in the trace errored too, how many erroring ancestors lead up to it)."""
    parent = span.parent_span_id
    depth = 0
    seen: set[bytes] = set()
    while parent is not None and parent in by_id and parent not in seen:
        seen.add(parent)
        ancestor = by_id[parent]
        if not ancestor.is_error:
            return False, depth
        depth += 1
        parent = ancestor.parent_span_id
    return True, depth


def _retried(span: SpanRecord, siblings: Sequence[SpanRecord]) -> bool:
    """True when a later sibling span of the same operation succeeded (a retry)."""
    return any(
        other.name == span.name
        and other.start_unix_nano > span.start_unix_nano
        and not other.is_error
        for other in siblings
    )


def _callee(span: SpanRecord, children: Sequence[SpanRecord]) -> str | None:
    """The service a CLIENT/PRODUCER span called: its instrumented child's, else the peer."""
    if span.kind not in (SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER):
        return None
    for child in children:
        if child.service_name != span.service_name:
            return child.service_name
    for key in PEER_KEYS:
        value = span.attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _describe_log(record: LogRecord) -> tuple[str, str]:
    raw_type = record.attributes.get("exception.type")
    body = record.body if isinstance(record.body, str) else str(record.body)
    return normalise_exception_type(raw_type if isinstance(raw_type, str) else ""), body


def _confidence(candidates: Sequence[Candidate], has_exception: bool) -> float:
    top = candidates[0]
    margin = top.score - candidates[1].score if len(candidates) > 1 else top.score
    value = 0.35 + min(margin, 1.0) * 0.3 + (0.2 if top.fatal else 0.0)
    value += 0.1 if has_exception else 0.0
    return round(min(value, 0.95), 2)
