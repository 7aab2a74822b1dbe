"""Records <-> graph.proto messages, and request validation (pure: no I/O, no clock).

Validation turns a request into plain values or raises InvalidRequestError naming the
field, which the servicer turns into INVALID_ARGUMENT with a BadRequest.
"""

from __future__ import annotations

import dataclasses

from google.protobuf.timestamp_pb2 import Timestamp

from analyzer.graph.model import (
    MAX_DEPTH,
    Criticality,
    CycleAlert,
    Direction,
    DiscoverySource,
    EdgeRecord,
    Reached,
    ServiceRecord,
)
from analyzer.graph.services import MAX_DESCRIPTION_LENGTH, MAX_TEAM_LENGTH, UNSET, Unset
from prodsentinel.v1 import graph_pb2
from receiver.errors import InvalidRequestError

DEFAULT_DEPTH = 3
DEFAULT_RANGE_US = 3_600_000_000
MAX_SERVICE_NAME_LENGTH = 1024

CRITICALITY_TO_PROTO = {
    Criticality.LOW: graph_pb2.SERVICE_CRITICALITY_LOW,
    Criticality.MEDIUM: graph_pb2.SERVICE_CRITICALITY_MEDIUM,
    Criticality.HIGH: graph_pb2.SERVICE_CRITICALITY_HIGH,
    Criticality.CRITICAL: graph_pb2.SERVICE_CRITICALITY_CRITICAL,
}
CRITICALITY_FROM_PROTO = {number: value for value, number in CRITICALITY_TO_PROTO.items()}
KINDS = {
    "service": graph_pb2.SERVICE_KIND_SERVICE,
    "database": graph_pb2.SERVICE_KIND_DATABASE,
    "messaging": graph_pb2.SERVICE_KIND_MESSAGING,
    "external": graph_pb2.SERVICE_KIND_EXTERNAL,
}
MODES = {"sync": graph_pb2.COMMUNICATION_MODE_SYNC, "async": graph_pb2.COMMUNICATION_MODE_ASYNC}
PROTOCOLS = {
    "http": graph_pb2.DEPENDENCY_PROTOCOL_HTTP,
    "grpc": graph_pb2.DEPENDENCY_PROTOCOL_GRPC,
    "db": graph_pb2.DEPENDENCY_PROTOCOL_DB,
    "messaging": graph_pb2.DEPENDENCY_PROTOCOL_MESSAGING,
    "other": graph_pb2.DEPENDENCY_PROTOCOL_OTHER,
}
SOURCES = {
    DiscoverySource.TRACE: graph_pb2.DISCOVERY_SOURCE_TRACE,
    DiscoverySource.PEER_SERVICE: graph_pb2.DISCOVERY_SOURCE_PEER_SERVICE,
    DiscoverySource.DB_SYSTEM: graph_pb2.DISCOVERY_SOURCE_DB_SYSTEM,
    DiscoverySource.MESSAGING_SYSTEM: graph_pb2.DISCOVERY_SOURCE_MESSAGING_SYSTEM,
    DiscoverySource.SERVER_ADDRESS: graph_pb2.DISCOVERY_SOURCE_SERVER_ADDRESS,
}
DIRECTIONS = {
    Direction.DOWNSTREAM: graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM,
    Direction.UPSTREAM: graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM,
}
CYCLE_STATUSES = {
    "open": graph_pb2.CYCLE_STATUS_OPEN,
    "acknowledged": graph_pb2.CYCLE_STATUS_ACKNOWLEDGED,
    "resolved": graph_pb2.CYCLE_STATUS_RESOLVED,
}


def timestamp(us: int) -> Timestamp:
    value = Timestamp()
    value.FromMicroseconds(us)
    return value


def service_node(record: ServiceRecord) -> graph_pb2.ServiceNode:
    return graph_pb2.ServiceNode(
        name=record.name,
        kind=KINDS.get(record.kind, graph_pb2.SERVICE_KIND_UNSPECIFIED),
        instrumented=record.instrumented,
        namespace=record.namespace,
        environment=record.environment,
        team=record.team or "",
        criticality=CRITICALITY_TO_PROTO[record.criticality]
        if record.criticality
        else graph_pb2.SERVICE_CRITICALITY_UNSPECIFIED,
        description=record.description or "",
        first_seen=timestamp(record.first_seen_us),
        last_seen=timestamp(record.last_seen_us),
        updated_at=timestamp(record.updated_at_us),
    )


def dependency(edge: EdgeRecord) -> graph_pb2.Dependency:
    latency = edge.latency
    return graph_pb2.Dependency(
        source=edge.source,
        target=edge.target,
        discovery_source=SOURCES[edge.discovery_source],
        mode=MODES.get(edge.communication_mode, graph_pb2.COMMUNICATION_MODE_UNSPECIFIED),
        protocol=PROTOCOLS.get(edge.protocol, graph_pb2.DEPENDENCY_PROTOCOL_UNSPECIFIED),
        confidence=edge.confidence,
        call_count=edge.call_count,
        error_count=edge.error_count,
        latency=graph_pb2.LatencySummary(
            mean_ms=latency.mean_ms,
            p50_ms=latency.quantile(0.5),
            p95_ms=latency.quantile(0.95),
            p99_ms=latency.quantile(0.99),
            min_ms=latency.min_ms or 0.0,
            max_ms=latency.max_ms or 0.0,
        ),
        first_observed=timestamp(edge.first_observed_us),
        last_observed=timestamp(edge.last_observed_us),
        stale=edge.stale,
    )


def reached_service(item: Reached, record: ServiceRecord) -> graph_pb2.ReachedService:
    return graph_pb2.ReachedService(
        service=service_node(record),
        depth=item.depth,
        path=item.path,
        direction=DIRECTIONS[item.direction],
    )


def dependency_cycle(alert: CycleAlert) -> graph_pb2.DependencyCycle:
    message = graph_pb2.DependencyCycle(
        id=alert.id,
        path=alert.path,
        status=CYCLE_STATUSES[alert.status],
        first_detected=timestamp(alert.first_detected_us),
        detected=timestamp(alert.detected_us),
        last_seen=timestamp(alert.last_seen_us),
    )
    if alert.resolved_us is not None:
        message.resolved.CopyFrom(timestamp(alert.resolved_us))
    return message


# --------------------------------------------------------------------------- validation


@dataclasses.dataclass(frozen=True, slots=True)
class Traversal:
    service: str
    direction: Direction | None  # None: both
    max_depth: int
    include_stale: bool


@dataclasses.dataclass(frozen=True, slots=True)
class MetadataUpdate:
    service: str
    team: str | Unset | None = UNSET
    criticality: Criticality | Unset | None = UNSET
    description: str | Unset | None = UNSET


def service_name(name: str) -> str:
    if not name:
        raise InvalidRequestError("service", "is required")
    if len(name) > MAX_SERVICE_NAME_LENGTH:
        raise InvalidRequestError(
            "service", f"must be at most {MAX_SERVICE_NAME_LENGTH} characters"
        )
    return name


def time_range(request: graph_pb2.GetServiceGraphRequest, now_us: int) -> tuple[int, int]:
    """[start, end) in µs: end defaults to now, start to an hour before end."""
    end = request.end_time.ToMicroseconds() if request.HasField("end_time") else now_us
    start = (
        request.start_time.ToMicroseconds()
        if request.HasField("start_time")
        else end - DEFAULT_RANGE_US
    )
    if start >= end:
        raise InvalidRequestError("start_time", "must be before end_time")
    return start, end


def traversal(request: graph_pb2.TraverseDependenciesRequest) -> Traversal:
    directions: dict[int, Direction | None] = {
        graph_pb2.TRAVERSAL_DIRECTION_UNSPECIFIED: Direction.DOWNSTREAM,
        graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM: Direction.DOWNSTREAM,
        graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM: Direction.UPSTREAM,
        graph_pb2.TRAVERSAL_DIRECTION_BOTH: None,
    }
    if request.direction not in directions:
        raise InvalidRequestError("direction", f"unknown direction {request.direction}")
    depth = request.max_depth or DEFAULT_DEPTH
    if not 1 <= depth <= MAX_DEPTH:
        raise InvalidRequestError("max_depth", f"must be between 1 and {MAX_DEPTH}")
    return Traversal(
        service=service_name(request.service),
        direction=directions[request.direction],
        max_depth=depth,
        include_stale=request.include_stale,
    )


def metadata_update(request: graph_pb2.UpdateServiceRequest) -> MetadataUpdate:
    """Present fields only; "" (or UNSPECIFIED) clears a field."""
    team: str | Unset | None = UNSET
    criticality: Criticality | Unset | None = UNSET
    description: str | Unset | None = UNSET
    if request.HasField("team"):
        if len(request.team) > MAX_TEAM_LENGTH:
            raise InvalidRequestError("team", f"must be at most {MAX_TEAM_LENGTH} characters")
        team = request.team or None
    if request.HasField("criticality"):
        number = request.criticality
        if number != graph_pb2.SERVICE_CRITICALITY_UNSPECIFIED and number not in (
            CRITICALITY_FROM_PROTO
        ):
            raise InvalidRequestError("criticality", f"unknown criticality {number}")
        criticality = CRITICALITY_FROM_PROTO.get(number)
    if request.HasField("description"):
        if len(request.description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidRequestError(
                "description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters"
            )
        description = request.description or None
    return MetadataUpdate(service_name(request.service), team, criticality, description)
