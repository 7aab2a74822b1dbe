"""The incident lifecycle as a pure state machine: states, transitions and their history.

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved ──recurrence──▶ regressed
      └──────────────────resolve / auto-resolve───────▲                         │
                                                                    (acts as open)

Status and severity are two distinct enums (seed 002: mixing them up failed a write), each
mirrored by a CHECK constraint in the database. Every function here returns the new state
and the events that record the change with its reason and time; none reads a clock.
"""

from __future__ import annotations

import dataclasses
import enum

from receiver.errors import FailedPreconditionError

SYSTEM_ACTOR = "system"
MAX_SAMPLE_TRACES = 10
MAX_SERVICES = 50


class IncidentStatus(enum.StrEnum):
    """Where an incident is in its lifecycle (the `incidents.status` column)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    REGRESSED = "regressed"

    @property
    def active(self) -> bool:
        return self is not IncidentStatus.RESOLVED


class IncidentSeverity(enum.StrEnum):
    """How bad an incident is (the `incidents.severity` column), in increasing order."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def escalated(self, levels: int = 1) -> IncidentSeverity:
        """One (or more) level(s) up, capped at critical."""
        return _SEVERITY_ORDER[min(self.rank + levels, len(_SEVERITY_ORDER) - 1)]


_SEVERITY_ORDER = tuple(IncidentSeverity)


class EventKind(enum.StrEnum):
    STATUS = "status"
    SEVERITY = "severity"


class TransitionError(FailedPreconditionError):
    """The requested change is not allowed from the incident's current status."""


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentEvent:
    """One recorded change (the `incident_events` table)."""

    kind: EventKind
    from_value: str | None
    to_value: str
    reason: str
    actor: str
    at_us: int
    note: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Occurrence:
    """What one analysed trace (or traceless error log) contributes to its incident."""

    severity: IncidentSeverity
    severity_reasons: tuple[str, ...]
    services: tuple[str, ...]
    trace_id: bytes | None
    occurred_at_us: int


@dataclasses.dataclass(frozen=True, slots=True)
class IncidentState:
    """The mutable part of an incident row."""

    status: IncidentStatus
    severity: IncidentSeverity
    occurrence_count: int
    first_seen_us: int
    last_seen_us: int
    last_recorded_us: int
    services: tuple[str, ...] = ()
    sample_trace_ids: tuple[bytes, ...] = ()
    acknowledged_by: str | None = None
    acknowledged_at_us: int | None = None
    resolved_by: str | None = None
    resolved_at_us: int | None = None
    resolution_note: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    state: IncidentState
    events: tuple[IncidentEvent, ...]

    @property
    def changed(self) -> bool:
        return bool(self.events)


def record_occurrence(
    state: IncidentState | None, occurrence: Occurrence, now_us: int
) -> Transition:
    """Add an occurrence: create the incident, add to an active one, or regress a resolved one.

    Severity only ever rises here: an open incident never becomes less severe by itself.
    """
    reason = "; ".join(occurrence.severity_reasons) or "rules"
    if state is None:
        new = IncidentState(
            status=IncidentStatus.OPEN,
            severity=occurrence.severity,
            occurrence_count=1,
            first_seen_us=occurrence.occurred_at_us,
            last_seen_us=occurrence.occurred_at_us,
            last_recorded_us=now_us,
            services=occurrence.services[:MAX_SERVICES],
            sample_trace_ids=_samples((), occurrence.trace_id),
        )
        return Transition(
            new,
            (
                IncidentEvent(
                    EventKind.STATUS, None, new.status, "first occurrence", SYSTEM_ACTOR, now_us
                ),
                IncidentEvent(EventKind.SEVERITY, None, new.severity, reason, SYSTEM_ACTOR, now_us),
            ),
        )
    events: list[IncidentEvent] = []
    new = dataclasses.replace(
        state,
        occurrence_count=state.occurrence_count + 1,
        first_seen_us=min(state.first_seen_us, occurrence.occurred_at_us),
        last_seen_us=max(state.last_seen_us, occurrence.occurred_at_us),
        last_recorded_us=max(state.last_recorded_us, now_us),
        services=_merge(state.services, occurrence.services),
        sample_trace_ids=_samples(state.sample_trace_ids, occurrence.trace_id),
    )
    if not state.status.active:
        new = dataclasses.replace(
            new,
            status=IncidentStatus.REGRESSED,
            acknowledged_by=None,
            acknowledged_at_us=None,
            resolved_by=None,
            resolved_at_us=None,
            resolution_note=None,
        )
        events.append(
            IncidentEvent(
                EventKind.STATUS,
                state.status,
                IncidentStatus.REGRESSED,
                "recurred after it was resolved",
                SYSTEM_ACTOR,
                now_us,
            )
        )
    if occurrence.severity.rank > state.severity.rank:
        new = dataclasses.replace(new, severity=occurrence.severity)
        events.append(
            IncidentEvent(
                EventKind.SEVERITY,
                state.severity,
                occurrence.severity,
                reason,
                SYSTEM_ACTOR,
                now_us,
            )
        )
    return Transition(new, tuple(events))


def acknowledge(state: IncidentState, by: str, note: str, now_us: int) -> Transition:
    """open/regressed -> acknowledged; acknowledging twice changes nothing."""
    if state.status is IncidentStatus.ACKNOWLEDGED:
        return Transition(state, ())
    if state.status is IncidentStatus.RESOLVED:
        raise TransitionError("a resolved incident cannot be acknowledged")
    new = dataclasses.replace(
        state, status=IncidentStatus.ACKNOWLEDGED, acknowledged_by=by, acknowledged_at_us=now_us
    )
    event = IncidentEvent(
        EventKind.STATUS, state.status, new.status, "acknowledged", by, now_us, note
    )
    return Transition(new, (event,))


def resolve(
    state: IncidentState, by: str, note: str, now_us: int, reason: str = "resolved"
) -> Transition:
    """Any active status -> resolved, with who and a note; resolving twice changes nothing."""
    if state.status is IncidentStatus.RESOLVED:
        return Transition(state, ())
    new = dataclasses.replace(
        state,
        status=IncidentStatus.RESOLVED,
        resolved_by=by,
        resolved_at_us=now_us,
        resolution_note=note,
    )
    event = IncidentEvent(EventKind.STATUS, state.status, new.status, reason, by, now_us, note)
    return Transition(new, (event,))


def auto_resolve(state: IncidentState, now_us: int, quiet_seconds: float) -> Transition:
    """Resolve an active incident that has had no occurrence for `quiet_seconds`."""
    if not state.status.active or quiet_seconds <= 0:
        return Transition(state, ())
    quiet_us = int(quiet_seconds * 1_000_000)
    if now_us - state.last_recorded_us < quiet_us:
        return Transition(state, ())
    note = f"no occurrence for {quiet_seconds:g} s"
    return resolve(state, SYSTEM_ACTOR, note, now_us, reason="auto-resolved")


def _merge(current: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    merged = list(current)
    for service in more:
        if service not in merged and len(merged) < MAX_SERVICES:
            merged.append(service)
    return tuple(merged)


def _samples(current: tuple[bytes, ...], trace_id: bytes | None) -> tuple[bytes, ...]:
    if trace_id is None or trace_id in current:
        return current
    # Keep the first few (how it started) and the latest (what it looks like now).
    samples = (*current, trace_id)
    if len(samples) > MAX_SAMPLE_TRACES:
        half = MAX_SAMPLE_TRACES // 2
        samples = (*samples[:half], *samples[-(MAX_SAMPLE_TRACES - half) :])
    return samples
