"""gRPC `prodsentinel.v1.IncidentService`: list, get, acknowledge and resolve incidents.

Every call is scoped to the caller's tenant (the ingestion tenant header); another
tenant's incident is NOT_FOUND. Conversions between rows and messages are here; the
lifecycle rules are in analyzer/lifecycle.py and the SQL in analyzer/store/.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, NoReturn

import asyncpg
import grpc
import orjson
import structlog
from google.protobuf import timestamp_pb2

from analyzer.actions import IncidentNotFoundError, acknowledge_incident, resolve_incident
from analyzer.lifecycle import (
    EventKind,
    IncidentEvent,
    IncidentSeverity,
    IncidentStatus,
)
from analyzer.store import analyses as analysis_store
from analyzer.store import incidents as incident_store
from analyzer.store.analyses import AnalysisRow
from analyzer.store.incidents import IncidentFilter, IncidentRow, OccurrenceRow
from prodsentinel.v1 import incidents_pb2 as pb
from prodsentinel.v1 import incidents_pb2_grpc
from receiver.database import CONNECTION_ERRORS
from receiver.errors import InvalidRequestError, ProdSentinelError, RetryableError, to_grpc_status
from receiver.otlp_service import tenant_of

log = structlog.get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IncidentService"].full_name
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
DEFAULT_OCCURRENCES, MAX_OCCURRENCES = 20, 1000
MAX_EVENTS = 1000
MAX_NAME_LENGTH = 200

STATUS_TO_PB = {
    IncidentStatus.OPEN: pb.INCIDENT_STATUS_OPEN,
    IncidentStatus.ACKNOWLEDGED: pb.INCIDENT_STATUS_ACKNOWLEDGED,
    IncidentStatus.RESOLVED: pb.INCIDENT_STATUS_RESOLVED,
    IncidentStatus.REGRESSED: pb.INCIDENT_STATUS_REGRESSED,
}
SEVERITY_TO_PB = {
    IncidentSeverity.LOW: pb.INCIDENT_SEVERITY_LOW,
    IncidentSeverity.MEDIUM: pb.INCIDENT_SEVERITY_MEDIUM,
    IncidentSeverity.HIGH: pb.INCIDENT_SEVERITY_HIGH,
    IncidentSeverity.CRITICAL: pb.INCIDENT_SEVERITY_CRITICAL,
}
STATUS_FROM_PB = {value: key for key, value in STATUS_TO_PB.items()}
SEVERITY_FROM_PB = {value: key for key, value in SEVERITY_TO_PB.items()}
EVENT_KIND_TO_PB = {
    EventKind.STATUS: pb.IncidentEvent.KIND_STATUS,
    EventKind.SEVERITY: pb.IncidentEvent.KIND_SEVERITY,
}


def _timestamp(us: int | None) -> timestamp_pb2.Timestamp | None:
    if us is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(us)
    return stamp


def incident_message(row: IncidentRow) -> pb.Incident:
    state = row.state
    return pb.Incident(
        id=str(row.id),
        fingerprint=row.fingerprint,
        title=row.title,
        exception_type=row.exception_type,
        message_template=row.message_template,
        service_name=row.service_name,
        operation=row.operation,
        status=STATUS_TO_PB[state.status],
        severity=SEVERITY_TO_PB[state.severity],
        occurrence_count=state.occurrence_count,
        first_seen=_timestamp(state.first_seen_us),
        last_seen=_timestamp(state.last_seen_us),
        services=state.services,
        sample_trace_ids=[trace.hex() for trace in state.sample_trace_ids],
        acknowledged_by=state.acknowledged_by or "",
        acknowledged_at=_timestamp(state.acknowledged_at_us),
        resolved_by=state.resolved_by or "",
        resolved_at=_timestamp(state.resolved_at_us),
        resolution_note=state.resolution_note or "",
        created_at=_timestamp(row.created_at_us),
        updated_at=_timestamp(row.updated_at_us),
    )


def occurrence_message(row: OccurrenceRow) -> pb.Occurrence:
    return pb.Occurrence(
        trace_id=row.trace_id.hex() if row.trace_id else "",
        origin_kind=row.origin_kind,
        origin_span_id=row.origin_span_id.hex() if row.origin_span_id else "",
        service_name=row.service_name,
        operation=row.operation,
        services=row.services,
        error_count=row.error_count,
        severity=SEVERITY_TO_PB[row.severity],
        time=_timestamp(row.occurred_at_us),
        recorded_at=_timestamp(row.recorded_at_us),
    )


def analysis_message(row: AnalysisRow) -> pb.Analysis:
    result = row.result
    confidence = result.get("confidence")
    steps = result.get("next_steps")
    return pb.Analysis(
        tier=row.tier,
        trigger=row.trigger,
        status=row.status,
        provider=row.provider,
        model=row.model,
        root_cause_service=str(result.get("root_cause_service") or ""),
        summary=str(result.get("summary") or ""),
        confidence=float(confidence) if isinstance(confidence, int | float) else 0.0,
        next_steps=[str(step) for step in steps] if isinstance(steps, list) else [],
        result_json=orjson.dumps(result).decode(),
        error=row.error,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        latency_ms=row.latency_ms,
        created_at=_timestamp(row.created_at_us),
    )


def event_message(event: IncidentEvent) -> pb.IncidentEvent:
    return pb.IncidentEvent(
        kind=EVENT_KIND_TO_PB[event.kind],
        from_value=event.from_value or "",
        to_value=event.to_value,
        reason=event.reason,
        actor=event.actor,
        note=event.note,
        time=_timestamp(event.at_us),
    )


def encode_page_token(row: IncidentRow) -> str:
    return base64.urlsafe_b64encode(f"{row.state.last_seen_us}:{row.id}".encode()).decode()


def decode_page_token(token: str) -> tuple[int, int]:
    try:
        seen, _, incident_id = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(seen), int(incident_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequestError("page_token", "not a token from ListIncidents") from None


def incident_filter(request: pb.ListIncidentsRequest) -> IncidentFilter:
    """The request's filters, validated (INVALID_ARGUMENT names the bad field)."""
    for status in request.statuses:
        if status not in STATUS_FROM_PB:
            raise InvalidRequestError("statuses", f"unknown status {status}")
    for severity in request.severities:
        if severity not in SEVERITY_FROM_PB:
            raise InvalidRequestError("severities", f"unknown severity {severity}")
    since = request.start_time.ToMicroseconds() if request.HasField("start_time") else None
    until = request.end_time.ToMicroseconds() if request.HasField("end_time") else None
    if since is not None and until is not None and until <= since:
        raise InvalidRequestError("end_time", "must be after start_time")
    return IncidentFilter(
        statuses=tuple(STATUS_FROM_PB[s] for s in request.statuses),
        severities=tuple(SEVERITY_FROM_PB[s] for s in request.severities),
        service=request.service or None,
        since_us=since,
        until_us=until,
        after=decode_page_token(request.page_token) if request.page_token else None,
    )


def _bounded(value: int, field: str, default: int, maximum: int) -> int:
    if value < 0:
        raise InvalidRequestError(field, "must be >= 0")
    return min(value or default, maximum)


def _incident_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise InvalidRequestError("id", "must be an incident id (digits)")
    return int(text)


def _actor(by: str) -> str:
    by = by.strip()
    if not by or len(by) > MAX_NAME_LENGTH or not by.isprintable():
        raise InvalidRequestError("by", f"must name who does it (1-{MAX_NAME_LENGTH} characters)")
    return by


class IncidentService(incidents_pb2_grpc.IncidentServiceServicer):
    def __init__(self, pool: asyncpg.Pool, tenant_header: str) -> None:
        self._pool = pool
        self._tenant_header = tenant_header

    async def ListIncidents(
        self, request: pb.ListIncidentsRequest, context: Any
    ) -> pb.ListIncidentsResponse:
        try:
            tenant = tenant_of(context, self._tenant_header)
            size = _bounded(request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            where = incident_filter(request)
            async with self._pool.acquire() as conn:
                rows = await incident_store.list_incidents(conn, tenant, where, size + 1)
        except Exception as error:
            await _abort(context, error)
        response = pb.ListIncidentsResponse(incidents=[incident_message(r) for r in rows[:size]])
        if len(rows) > size:
            response.next_page_token = encode_page_token(rows[size - 1])
        return response

    async def GetIncident(
        self, request: pb.GetIncidentRequest, context: Any
    ) -> pb.GetIncidentResponse:
        try:
            tenant = tenant_of(context, self._tenant_header)
            incident_id = _incident_id(request.id)
            limit = _bounded(
                request.occurrence_limit, "occurrence_limit", DEFAULT_OCCURRENCES, MAX_OCCURRENCES
            )
            async with self._pool.acquire() as conn:
                row = await incident_store.get_incident(conn, tenant, incident_id)
                if row is None:
                    raise IncidentNotFoundError(f"incident {incident_id} not found")
                occurrences = await incident_store.list_occurrences(
                    conn, tenant, incident_id, limit
                )
                events = await incident_store.list_events(conn, tenant, incident_id, MAX_EVENTS)
                analyses = await analysis_store.list_analyses(conn, tenant, incident_id)
        except Exception as error:
            await _abort(context, error)
        return pb.GetIncidentResponse(
            incident=incident_message(row),
            occurrences=[occurrence_message(o) for o in occurrences],
            events=[event_message(e) for e in events],
            analyses=[analysis_message(a) for a in analyses],
        )

    async def AcknowledgeIncident(
        self, request: pb.AcknowledgeIncidentRequest, context: Any
    ) -> pb.AcknowledgeIncidentResponse:
        try:
            tenant = tenant_of(context, self._tenant_header)
            incident_id, by = _incident_id(request.id), _actor(request.by)
            async with self._pool.acquire() as conn:
                row = await acknowledge_incident(conn, tenant, incident_id, by, request.note)
        except Exception as error:
            await _abort(context, error)
        log.info("incident_acknowledged", tenant=tenant, incident_id=incident_id, by=by)
        return pb.AcknowledgeIncidentResponse(incident=incident_message(row))

    async def ResolveIncident(
        self, request: pb.ResolveIncidentRequest, context: Any
    ) -> pb.ResolveIncidentResponse:
        try:
            tenant = tenant_of(context, self._tenant_header)
            incident_id, by = _incident_id(request.id), _actor(request.by)
            async with self._pool.acquire() as conn:
                row = await resolve_incident(conn, tenant, incident_id, by, request.note)
        except Exception as error:
            await _abort(context, error)
        log.info("incident_resolved", tenant=tenant, incident_id=incident_id, by=by)
        return pb.ResolveIncidentResponse(incident=incident_message(row))


async def _abort(context: Any, error: Exception) -> NoReturn:
    """Turn an error into the call's status: bad input, not found, wrong state, unavailable."""
    if isinstance(error, ProdSentinelError):  # not found, wrong state, bad input
        await context.abort_with_status(to_grpc_status(error))
    if isinstance(error, (*CONNECTION_ERRORS, asyncpg.PostgresError)):
        log.warning("incident_api_database_error", error=str(error))
        await context.abort_with_status(
            to_grpc_status(RetryableError(f"database unavailable: {error}"))
        )
    raise error


def add_incident_service(server: grpc.aio.Server, pool: asyncpg.Pool, settings: Any) -> str:
    """Register IncidentService on `server` (tenant header from settings); return its full name."""
    incidents_pb2_grpc.add_IncidentServiceServicer_to_server(
        IncidentService(pool, settings.tenant_header), server
    )
    return SERVICE_NAME
