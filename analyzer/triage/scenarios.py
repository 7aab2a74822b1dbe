"""Fault scenarios for evaluating triage: a simulated topology emitting real OTLP requests.

The topology is a gateway in front of a few services, a PostgreSQL database and a Kafka
queue (the last two uninstrumented: only their clients' spans name them). Each scenario is
one faulty request, labelled with its true root-cause service, plus noise: handled errors
(a cache miss, a retried call) inside the faulty trace and separate healthy or
handled-error traces. Everything is built as protobuf requests (what an SDK exporter
sends), so the evaluation goes through the receiver's own mapping.
"""

from __future__ import annotations

import dataclasses
import enum
import random

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as OtlpLog
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

DATABASE = "postgresql"
QUEUE = "kafka"
# Who calls whom; names in DEPENDENCIES are reached through client spans only.
CALLS: dict[str, tuple[str, ...]] = {
    "gateway": ("orders", "catalog"),
    "orders": ("inventory", "payments", DATABASE, QUEUE),
    "catalog": ("search", DATABASE),
    "payments": ("fraud",),
    "inventory": (DATABASE,),
    "search": (),
    "fraud": (),
}
DEPENDENCIES = {DATABASE: "db.system", QUEUE: "messaging.system"}
LEAVES = ("search", "fraud", "inventory")
MIDDLES = ("orders", "catalog", "payments")
_KIND = {"server": Span.SPAN_KIND_SERVER, "client": Span.SPAN_KIND_CLIENT}
_ERROR = Status.STATUS_CODE_ERROR


class Fault(enum.StrEnum):
    LEAF = "failing_leaf"
    DATABASE = "database_error"
    TIMEOUT = "timeout_cascade"
    MIDDLE = "middle_exception"
    QUEUE = "queue_error"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One labelled scenario: the requests to send and the faulty trace's true root cause."""

    name: str
    fault: Fault
    root_cause: str
    trace_id: bytes
    traces: ExportTraceServiceRequest
    logs: ExportLogsServiceRequest


@dataclasses.dataclass
class _Emitter:
    """Accumulates spans and logs per service for one scenario."""

    rng: random.Random
    clock: int = 1_700_000_000_000_000_000
    spans: dict[str, list[Span]] = dataclasses.field(default_factory=dict)
    logs: dict[str, list[OtlpLog]] = dataclasses.field(default_factory=dict)

    def span_id(self) -> bytes:
        return self.rng.randbytes(8)

    def span(
        self,
        trace: bytes,
        parent: Span | None,
        service: str,
        name: str,
        kind: str,
        duration_ms: int,
        attributes: dict[str, str] | None = None,
    ) -> Span:
        self.clock += 1_000_000
        span = Span(
            trace_id=trace,
            span_id=self.span_id(),
            parent_span_id=parent.span_id if parent else b"",
            name=name,
            kind=_KIND[kind],
            start_time_unix_nano=self.clock,
            end_time_unix_nano=self.clock + duration_ms * 1_000_000,
            attributes=[_kv(k, v) for k, v in (attributes or {}).items()],
        )
        self.spans.setdefault(service, []).append(span)
        return span

    def fail(self, span: Span, exc_type: str, message: str, service: str) -> None:
        span.status.code = _ERROR
        span.status.message = message
        stack = f'Traceback (most recent call last):\n  File "{service}/handlers.py", line {self.rng.randint(10, 300)}, in handle'
        event = span.events.add(time_unix_nano=span.end_time_unix_nano, name="exception")
        event.attributes.extend(
            [
                _kv("exception.type", exc_type),
                _kv("exception.message", message),
                _kv("exception.stacktrace", stack),
            ]
        )

    def log(self, trace: bytes, span: Span, service: str, body: str) -> None:
        self.logs.setdefault(service, []).append(
            OtlpLog(
                time_unix_nano=span.end_time_unix_nano,
                severity_number=17,  # type: ignore[arg-type]
                severity_text="ERROR",
                body=AnyValue(string_value=body),
                trace_id=trace,
                span_id=span.span_id,
            )
        )

    def requests(self) -> tuple[ExportTraceServiceRequest, ExportLogsServiceRequest]:
        traces = ExportTraceServiceRequest()
        for service, spans in self.spans.items():
            resource_spans = traces.resource_spans.add()
            resource_spans.resource.attributes.append(_kv("service.name", service))
            resource_spans.scope_spans.add().spans.extend(spans)
        logs = ExportLogsServiceRequest()
        for service, records in self.logs.items():
            resource_logs = logs.resource_logs.add()
            resource_logs.resource.attributes.append(_kv("service.name", service))
            resource_logs.scope_logs.add().log_records.extend(records)
        return traces, logs


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def generate(count: int, seed: int = 7) -> list[Scenario]:
    """`count` scenarios cycling through the fault kinds, reproducible from `seed`."""
    rng = random.Random(seed)
    faults = list(Fault)
    return [build(faults[i % len(faults)], rng, f"scenario-{i:03d}") for i in range(count)]


def build(fault: Fault, rng: random.Random, name: str) -> Scenario:
    """One scenario with `fault` injected into a request through the gateway, plus noise."""
    emitter = _Emitter(rng)
    trace = rng.randbytes(16)
    target = {
        Fault.LEAF: rng.choice(LEAVES),
        Fault.MIDDLE: rng.choice(MIDDLES),
        Fault.TIMEOUT: rng.choice(LEAVES + MIDDLES[1:]),
        Fault.DATABASE: DATABASE,
        Fault.QUEUE: QUEUE,
    }[fault]
    _request(emitter, trace, None, "gateway", fault, target, noise=True)
    for _ in range(rng.randint(1, 4)):  # unrelated traffic: healthy, or with handled errors
        _request(emitter, rng.randbytes(16), None, "gateway", None, "", noise=rng.random() < 0.5)
    traces, logs = emitter.requests()
    return Scenario(name, fault, target, trace, traces, logs)


def _request(
    em: _Emitter,
    trace: bytes,
    parent: Span | None,
    service: str,
    fault: Fault | None,
    target: str,
    *,
    noise: bool,
) -> bool:
    """Emit `service` handling one request (and its calls); True when it failed."""
    server = em.span(trace, parent, service, f"{service} handle", "server", em.rng.randint(5, 50))
    failed = False
    slow = fault is Fault.TIMEOUT and service == target
    for callee in CALLS[service]:
        if failed or (callee in DEPENDENCIES and em.rng.random() < 0.3 and callee != target):
            continue
        on_path = fault is not None and _reaches(callee, target)
        if callee in DEPENDENCIES:
            client = em.span(
                trace,
                server,
                service,
                f"{callee} call",
                "client",
                3,
                {DEPENDENCIES[callee]: callee},
            )
            if on_path and fault in (Fault.DATABASE, Fault.QUEUE):
                em.fail(client, *_dependency_error(callee, em.rng), service)
                em.log(trace, client, service, f"{callee} call failed")
                failed = True
            continue
        if not on_path and em.rng.random() < 0.4:
            continue  # not every request calls everything
        if noise and not on_path and em.rng.random() < 0.2:
            # Noise: a first attempt that failed and was retried (the retry succeeds below).
            attempt = em.span(
                trace, server, service, f"GET /{callee}", "client", 2, {"peer.service": callee}
            )
            em.fail(attempt, "ConnectionResetError", "connection reset by peer", service)
        client = em.span(trace, server, service, f"GET /{callee}", "client", 20)
        times_out = fault is Fault.TIMEOUT and callee == target
        if times_out and em.rng.random() < 0.5:
            # The slow callee never reported its span: only the peer name is left.
            client.attributes.append(_kv("peer.service", callee))
        elif _request(em, trace, client, callee, fault if on_path else None, target, noise=noise):
            failed = True
        if times_out:
            failed = True
        if failed:
            em.fail(
                client,
                "DeadlineExceeded" if times_out else "HTTPError",
                f"{callee} failed",
                service,
            )
    if noise and em.rng.random() < 0.3:
        _handled_error(em, trace, server, service)
    if fault is Fault.MIDDLE and service == target and not failed:
        em.fail(server, "ValueError", f"invalid order state {em.rng.randint(1, 999)}", service)
        em.log(trace, server, service, "order processing failed")
        return True
    if fault is Fault.LEAF and service == target:
        em.fail(server, "KeyError", f"sku {em.rng.randint(1, 999)} not found", service)
        em.log(trace, server, service, "lookup failed")
        return True
    if failed:
        server.status.code = _ERROR
        server.status.message = "upstream call failed"
    if slow:
        server.end_time_unix_nano += 30_000_000_000
    return failed and not slow


def _handled_error(em: _Emitter, trace: bytes, server: Span, service: str) -> None:
    """Noise: an error the service recovered from (a cache miss, a retried call)."""
    wrapper = em.span(
        trace, server, service, "cache lookup", "client", 2, {"peer.service": "redis"}
    )
    inner = em.span(trace, wrapper, service, "cache get", "client", 1, {"db.system": "redis"})
    em.fail(inner, "CacheMiss", "key not found", service)


def _reaches(service: str, target: str) -> bool:
    """Whether a request to `service` can end up at `target`."""
    return service == target or any(_reaches(c, target) for c in CALLS.get(service, ()))


def _dependency_error(callee: str, rng: random.Random) -> tuple[str, str]:
    if callee == DATABASE:
        return rng.choice(
            [
                ("psycopg.errors.DeadlockDetected", "deadlock detected"),
                ("psycopg.OperationalError", "too many connections for role app"),
                ("asyncpg.exceptions.UndefinedColumnError", 'column "sku" does not exist'),
            ]
        )
    return ("KafkaTimeoutError", "failed to update metadata after 60.0 secs")
