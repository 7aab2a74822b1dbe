"""Tier-1 evidence helpers (pure): stack frames, error-log templates, next-step rules.

Log grouping uses the project's own `parameterise` (the same templates fingerprints use)
instead of drain3: error logs of one trace are few, and one template function for both
fingerprints and triage keeps the two consistent.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from analyzer.fingerprint import parameterise
from analyzer.origin import LogRecord, describe_log

MAX_FRAMES = 5
MAX_LOG_GROUPS = 10

# A stack frame line in the common runtimes' formats (Python, Java/Kotlin, Go, Node, .NET).
_FRAME = re.compile(
    r'^\s*(File ".+", line \d+|at [\w$.<>/]+[(:]|at .+\(.+:\d+|[\w./-]+\.go:\d+|'
    r"at \S+ in .+:line \d+)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class LogGroup:
    """Error logs of the trace that share one message template."""

    template: str
    count: int
    services: tuple[str, ...]
    exception_type: str


@dataclasses.dataclass(frozen=True, slots=True)
class NextStepRule:
    """A suggested next step, chosen when any of `needles` occurs in the evidence text."""

    name: str
    needles: tuple[str, ...]
    steps: tuple[str, ...]


# Rules as data, most specific first; the first two that match are used.
NEXT_STEP_RULES: tuple[NextStepRule, ...] = (
    NextStepRule(
        "database",
        ("db.system", "sql", "database", "psycopg", "asyncpg", "deadlock", "constraint"),
        (
            "Check the database's health: connections, locks, replication and disk.",
            "Review recent schema migrations and query changes touching this table.",
        ),
    ),
    NextStepRule(
        "timeout",
        ("timeout", "timed out", "deadline", "deadlineexceeded"),
        (
            "Check the callee's latency and saturation (CPU, pool sizes, queue depth).",
            "Compare the caller's timeout with the callee's recent p99 latency.",
        ),
    ),
    NextStepRule(
        "connection",
        ("connection refused", "connectionrefused", "unavailable", "reset by peer", "dns"),
        (
            "Check that the dependency is up and reachable (health checks, recent restarts).",
            "Check network policies, DNS and service discovery for the dependency.",
        ),
    ),
    NextStepRule(
        "queue",
        ("messaging.system", "kafka", "rabbitmq", "queue", "broker"),
        ("Check the broker's health, consumer lag and queue depth.",),
    ),
    NextStepRule(
        "memory",
        ("outofmemory", "out of memory", "memoryerror", "oom"),
        ("Check the service's memory usage and limits; look for a leak in the last deploy.",),
    ),
    NextStepRule(
        "http",
        ("http 5",),
        ("Look at the failing callee's own errors and logs for the same time window.",),
    ),
)
DEFAULT_STEPS = (
    "Read the stack trace of the root-cause span and compare with the last deploy.",
    "Check whether the error started with a release, a config change or a traffic shift.",
)


def next_steps(evidence: str) -> tuple[str, ...]:
    """Suggested next steps for the evidence text (lower-cased matching), defaults otherwise."""
    text = evidence.lower()
    chosen = [rule for rule in NEXT_STEP_RULES if any(n in text for n in rule.needles)][:2]
    steps = tuple(step for rule in chosen for step in rule.steps)
    return steps or DEFAULT_STEPS


def top_frames(stacktrace: str, limit: int = MAX_FRAMES) -> tuple[str, ...]:
    """The first stack frames of a stack trace (frame lines, or its first lines if none)."""
    lines = [line.strip() for line in stacktrace.splitlines() if line.strip()]
    frames = [line for line in lines if _FRAME.match(line)]
    return tuple((frames or lines[1:] or lines)[:limit])


def exception_event(events: Sequence[Any]) -> Mapping[str, Any] | None:
    """The attributes of the span's last `exception` event, if any."""
    found: Mapping[str, Any] | None = None
    for event in events:
        if isinstance(event, Mapping) and event.get("name") == "exception":
            attributes = event.get("attributes")
            found = attributes if isinstance(attributes, Mapping) else {}
    return found


def group_logs(logs: Sequence[LogRecord], limit: int = MAX_LOG_GROUPS) -> tuple[LogGroup, ...]:
    """Error logs grouped by message template, biggest group first."""
    groups: dict[str, tuple[int, dict[str, None], str]] = {}
    for record in logs:
        exception_type, template, _ = describe_log(
            record.service_name, record.scope_name, record.body, record.attributes
        )
        template = template or parameterise(str(record.body))
        count, services, kind = groups.get(template, (0, {}, exception_type))
        services.setdefault(record.service_name)
        groups[template] = (count + 1, services, kind)
    ordered = sorted(groups.items(), key=lambda item: (-item[1][0], item[0]))
    return tuple(
        LogGroup(template, count, tuple(services), kind)
        for template, (count, services, kind) in ordered[:limit]
    )
