"""The incident lifecycle (pure): transitions, history, and severity that never drops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.lifecycle import (
    EventKind,
    IncidentSeverity,
    IncidentState,
    IncidentStatus,
    Occurrence,
    TransitionError,
    acknowledge,
    auto_resolve,
    record_occurrence,
    resolve,
)

S = 1_000_000  # µs


def occurrence(
    severity: IncidentSeverity = IncidentSeverity.MEDIUM, at: int = 0, trace: bytes | None = b"t"
) -> Occurrence:
    return Occurrence(severity, ("because",), ("svc",), trace, at)


def opened() -> IncidentState:
    return record_occurrence(None, occurrence(), 10 * S).state


def test_status_and_severity_are_distinct_enums() -> None:
    """Seed 002: a status is never a severity and vice versa."""
    assert not set(IncidentStatus) & set(IncidentSeverity)  # type: ignore[comparison-overlap]
    assert not hasattr(IncidentStatus, "HIGH")
    assert not hasattr(IncidentSeverity, "OPEN")


def test_first_occurrence_opens_with_history() -> None:
    """A new incident is open, counts one, and records its opening and severity."""
    transition = record_occurrence(None, occurrence(IncidentSeverity.HIGH, at=5 * S), 10 * S)
    state = transition.state
    assert (state.status, state.severity, state.occurrence_count) == (
        IncidentStatus.OPEN,
        IncidentSeverity.HIGH,
        1,
    )
    assert (state.first_seen_us, state.last_seen_us, state.last_recorded_us) == (
        5 * S,
        5 * S,
        10 * S,
    )
    assert [(e.kind, e.from_value, e.to_value) for e in transition.events] == [
        (EventKind.STATUS, None, "open"),
        (EventKind.SEVERITY, None, "high"),
    ]


def test_acknowledge_resolve_and_regress() -> None:
    """open -> acknowledged (who) -> resolved (who, note) -> regressed on recurrence;
    acknowledging twice and resolving twice change nothing; acknowledging resolved fails."""
    acked = acknowledge(opened(), "ann", "looking", 11 * S)
    assert acked.state.status is IncidentStatus.ACKNOWLEDGED
    assert acked.events[0].actor == "ann"
    assert acknowledge(acked.state, "ann", "", 12 * S).events == ()
    resolved = resolve(acked.state, "ben", "fixed", 13 * S)
    assert (resolved.state.resolved_by, resolved.state.resolution_note) == ("ben", "fixed")
    assert resolve(resolved.state, "ben", "", 14 * S).events == ()
    with pytest.raises(TransitionError):
        acknowledge(resolved.state, "ann", "", 15 * S)
    regressed = record_occurrence(resolved.state, occurrence(trace=b"u"), 20 * S)
    assert regressed.state.status is IncidentStatus.REGRESSED
    assert regressed.state.resolved_by is None
    assert regressed.state.occurrence_count == 2
    assert [(e.from_value, e.to_value) for e in regressed.events] == [("resolved", "regressed")]
    assert (
        acknowledge(regressed.state, "ann", "", 21 * S).state.status is IncidentStatus.ACKNOWLEDGED
    )


def test_auto_resolve_after_the_quiet_period_only() -> None:
    """An active incident quiet for the period is resolved by the system; not before; 0 disables."""
    state = opened()
    assert auto_resolve(state, 10 * S + 59 * S, 60).events == ()
    resolved = auto_resolve(state, 10 * S + 60 * S, 60)
    assert (resolved.state.status, resolved.state.resolved_by) == (
        IncidentStatus.RESOLVED,
        "system",
    )
    assert resolved.events[0].reason == "auto-resolved"
    assert auto_resolve(state, 10**12, 0).events == ()


def test_samples_keep_the_first_and_the_latest_traces() -> None:
    """At most 10 sample traces: the first five and the latest five."""
    state = opened()
    for n in range(30):
        state = record_occurrence(state, occurrence(trace=bytes([n])), 11 * S).state
    assert len(state.sample_trace_ids) == 10
    assert state.sample_trace_ids[:5] == (b"t", bytes([0]), bytes([1]), bytes([2]), bytes([3]))
    assert state.sample_trace_ids[-1] == bytes([29])


severities = st.sampled_from(list(IncidentSeverity))
actions = st.lists(
    st.one_of(
        st.tuples(st.just("occur"), severities),
        st.tuples(st.just("ack"), st.none()),
        st.tuples(st.just("resolve"), st.none()),
    ),
    max_size=30,
)


@given(first=severities, steps=actions)
def test_severity_never_drops_and_every_change_is_recorded(
    first: IncidentSeverity, steps: list[tuple[str, IncidentSeverity | None]]
) -> None:
    """Whatever happens, severity never decreases, and each severity or status change comes
    with an event whose from/to match the change."""
    transition = record_occurrence(None, occurrence(first), 0)
    state = transition.state
    for n, (action, severity) in enumerate(steps, start=1):
        if action == "occur":
            assert severity is not None
            transition = record_occurrence(
                state, occurrence(severity, trace=bytes([n % 256])), n * S
            )
        elif action == "ack":
            if state.status is IncidentStatus.RESOLVED:
                continue
            transition = acknowledge(state, "x", "", n * S)
        else:
            transition = resolve(state, "x", "", n * S)
        new = transition.state
        assert new.severity.rank >= state.severity.rank
        changes = {(e.kind, e.from_value, e.to_value) for e in transition.events}
        if new.severity is not state.severity:
            assert (EventKind.SEVERITY, state.severity, new.severity) in changes
        if new.status is not state.status:
            assert (EventKind.STATUS, state.status, new.status) in changes
        if not transition.events:
            assert (new.status, new.severity) == (state.status, state.severity)
        state = new
