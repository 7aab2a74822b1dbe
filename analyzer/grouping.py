"""Grouping: turn an analysed trace (or traceless error log) into an occurrence of an incident.

One transaction per occurrence. The incident row for the fingerprint is created or found
and row-locked in one statement; the occurrence insert is the idempotency guard (one per
trace, a unique key), so a redelivered message or a second worker changes nothing; the
new state comes from the pure lifecycle and is written with its events.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Sequence

import structlog

from analyzer.fingerprint import compute_fingerprint
from analyzer.graph import store as graph_store
from analyzer.graph.model import Criticality
from analyzer.lifecycle import IncidentSeverity, Occurrence, record_occurrence
from analyzer.origin import Analysis, LogRecord, analyse_log, analyse_trace, describe_log
from analyzer.severity import SeverityRules, is_spike, with_spike
from analyzer.store import incidents as incident_store
from analyzer.store import signals as signal_store
from analyzer.store.common import Conn
from analyzer.triage.runner import Tier2Runner, run_tier1
from analyzer.triage.runner import trigger_of as triage_trigger_of

log = structlog.get_logger(__name__)


class Outcome(enum.StrEnum):
    CREATED = "created"
    ADDED = "added"
    REGRESSED = "regressed"
    ALREADY_RECORDED = "already_recorded"
    NO_ERRORS = "no_errors"


class _AlreadyRecorded(Exception):
    """Raised inside the transaction to roll it back: another run recorded this occurrence."""


def now_us() -> int:
    return time.time_ns() // 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """What recording an occurrence did, and why triage should run (None: it need not)."""

    outcome: Outcome
    incident_id: int | None = None
    triage_trigger: str | None = None
    severity: IncidentSeverity | None = None


async def record_analysis(
    conn: Conn, tenant: str, analysis: Analysis, rules: SeverityRules, at_us: int
) -> Outcome:
    """Add the occurrence to its incident (creating or regressing it) in one transaction."""
    return (await record_occurrence_of(conn, tenant, analysis, rules, at_us)).outcome


async def record_occurrence_of(
    conn: Conn, tenant: str, analysis: Analysis, rules: SeverityRules, at_us: int
) -> Recorded:
    """`record_analysis`, also saying which incident and whether it needs triage."""
    try:
        async with conn.transaction():
            row, created = await incident_store.upsert_incident(conn, tenant, analysis, at_us)
            recent, before = await incident_store.recent_counts(
                conn, row.id, at_us, rules.spike_window_seconds
            )
            spike = is_spike(recent + 1, before, rules)
            severity, reasons = with_spike(analysis.severity, analysis.severity_reasons, spike)
            if not await incident_store.insert_occurrence(conn, tenant, row.id, analysis, severity):
                raise _AlreadyRecorded
            occurrence = Occurrence(
                severity, reasons, analysis.services, analysis.trace_id, analysis.occurred_at_us
            )
            transition = record_occurrence(None if created else row.state, occurrence, at_us)
            await incident_store.save_state(conn, row.id, transition.state)
            await incident_store.insert_events(conn, tenant, row.id, transition.events)
    except _AlreadyRecorded:
        return Recorded(Outcome.ALREADY_RECORDED)
    outcome = (
        Outcome.CREATED
        if created
        else Outcome.REGRESSED
        if not row.state.status.active
        else Outcome.ADDED
    )
    log.info(
        "occurrence_recorded",
        tenant=tenant,
        incident_id=row.id,
        outcome=outcome.value,
        trace_id=analysis.trace_id.hex() if analysis.trace_id else None,
        severity=transition.state.severity.value,
        fingerprint=analysis.fingerprint,
    )
    prior = None if created else row.state.severity
    after = transition.state.severity
    return Recorded(outcome, row.id, triage_trigger_of(created, prior, after), after)


async def record_trace(
    conn: Conn,
    tenant: str,
    trace_id: bytes,
    rules: SeverityRules,
    max_spans: int,
    tier2_runner: Tier2Runner | None = None,
) -> Outcome:
    """Analyse a settled trace and record its one occurrence (nothing if it already has one)."""
    if await incident_store.occurrence_exists(conn, tenant, trace_id):
        return Outcome.ALREADY_RECORDED
    spans, logs = await signal_store.load_trace(conn, tenant, trace_id, max_spans)
    rules = await with_catalog(conn, tenant, {s.service_name for s in spans}, rules)
    analysis = analyse_trace(trace_id, spans, logs, rules)
    if analysis is None:
        log.warning("trace_without_errors", tenant=tenant, trace_id=trace_id.hex())
        return Outcome.NO_ERRORS
    recorded = await record_occurrence_of(conn, tenant, analysis, rules, now_us())
    if recorded.incident_id is not None and recorded.triage_trigger is not None:
        await run_tier1(
            conn,
            tenant,
            recorded.incident_id,
            recorded.triage_trigger,
            spans,
            logs,
            tier2_runner=tier2_runner,
            severity=recorded.severity,
            fingerprint=analysis.fingerprint,
        )
    return recorded.outcome


async def with_catalog(
    conn: Conn, tenant: str, services: set[str], rules: SeverityRules
) -> SeverityRules:
    """The rules, with the services the catalog marks critical added to `critical_services`."""
    if not services:
        return rules
    marked = await graph_store.criticalities(conn, tenant, sorted(services))
    critical = {name for name, level in marked.items() if level is Criticality.CRITICAL}
    if critical <= rules.critical_services:
        return rules
    return dataclasses.replace(rules, critical_services=rules.critical_services | critical)


def fingerprint_of_log(record: LogRecord) -> str:
    """The fingerprint a traceless error log groups under (what the trigger keys it by)."""
    exception_type, template, operation = describe_log(
        record.service_name, record.scope_name, record.body, record.attributes
    )
    return compute_fingerprint(exception_type, template, record.service_name, operation)


async def record_traceless_logs(
    conn: Conn,
    tenant: str,
    fingerprint: str | None,
    since_us: int,
    rules: SeverityRules,
    limit: int,
) -> list[Outcome]:
    """Record every unassigned traceless error log since `since_us` (with that fingerprint)."""
    records = await signal_store.load_unassigned_traceless_logs(conn, tenant, since_us, limit)
    return await record_logs(conn, tenant, records, fingerprint, rules)


async def record_logs(
    conn: Conn,
    tenant: str,
    records: Sequence[LogRecord],
    fingerprint: str | None,
    rules: SeverityRules,
) -> list[Outcome]:
    outcomes = []
    for record in records:
        if fingerprint is not None and fingerprint_of_log(record) != fingerprint:
            continue
        analysis = analyse_log(record, rules)
        outcomes.append(await record_analysis(conn, tenant, analysis, rules, now_us()))
    return outcomes
