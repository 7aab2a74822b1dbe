"""The trigger on real Redis: mark before send, one send per trace, failures swallowed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import redis
from analyzer_fixtures import *  # noqa: F403 - the fixtures
from analyzer_fixtures import error_span, trace_request
from dramatiq.brokers.stub import StubBroker
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from structlog.testing import capture_logs

from analyzer.config import AnalyzerConfig
from analyzer.trigger import IncidentTrigger
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits


class DownBroker(StubBroker):
    """A broker whose queue is unreachable."""

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        raise redis.ConnectionError("broker down")


def committed(
    request: ExportTraceServiceRequest, tenant: str
) -> list[tuple[str, list[tuple[object, ...]]]]:
    return [("spans", list(spans_to_rows(request, tenant, Limits()).rows))]


def mark_of(config: AnalyzerConfig, tenant: str, trace_id: bytes) -> str:
    return f"{config.namespace}:incident-mark:trace:{tenant}:{trace_id.hex()}"


async def test_one_message_per_trace_marked_before_sending(
    analyzer_config: AnalyzerConfig, tenant: str
) -> None:
    """The first commit of a trace's errors sets its mark (with the trace TTL) and sends one
    delayed message; later commits of the same trace send nothing."""
    broker = StubBroker()
    client = redis.Redis.from_url(analyzer_config.marks_redis_url or "")
    trigger = IncidentTrigger(analyzer_config, broker=broker, marks=client)
    trace_id = os.urandom(16)
    for _ in range(3):
        trigger.on_commit(committed(trace_request("svc", [error_span(trace_id)]), tenant))
        await asyncio.wait_for(trigger.wait_idle(), 10)
    assert trigger.sent == 1
    (message,) = broker.queues[f"{analyzer_config.queue_name}.DQ"].queue
    assert tenant.encode() in message
    assert trace_id.hex().encode() in message
    ttl_ms = client.pttl(mark_of(analyzer_config, tenant, trace_id))
    assert 0 < ttl_ms <= analyzer_config.trace_mark_ttl_seconds * 1000
    await trigger.close()


async def test_a_failed_send_gives_the_mark_back(
    analyzer_config: AnalyzerConfig, tenant: str
) -> None:
    """When the message cannot be sent, the mark is deleted (a later error may trigger the
    trace again), the key counts as dropped, and nothing is raised."""
    broker = DownBroker()
    client = redis.Redis.from_url(analyzer_config.marks_redis_url or "")
    trigger = IncidentTrigger(analyzer_config, broker=broker, marks=client)
    trace_id = os.urandom(16)
    with capture_logs() as logs:
        trigger.on_commit(committed(trace_request("svc", [error_span(trace_id)]), tenant))
        await asyncio.wait_for(trigger.wait_idle(), 10)
    assert (trigger.sent, trigger.dropped) == (0, 1)
    assert client.exists(mark_of(analyzer_config, tenant, trace_id)) == 0
    assert [entry["event"] for entry in logs] == ["incident_trigger_unavailable"]
    await trigger.close()


async def test_garbage_and_unreachable_redis_never_raise(
    analyzer_config: AnalyzerConfig, tenant: str
) -> None:
    """A malformed batch is logged, not raised; with Redis unreachable the key is dropped
    within the short Redis timeout."""
    config = dataclasses.replace(
        analyzer_config, marks_redis_url="redis://127.0.0.1:1/0", broker_url="redis://127.0.0.1:1/0"
    )
    trigger = IncidentTrigger(config)
    with capture_logs() as logs:
        trigger.on_commit([("spans", [("t", b"signal", b"trace")])])
        trigger.on_commit(committed(trace_request("svc", [error_span(os.urandom(16))]), tenant))
        await asyncio.wait_for(trigger.wait_idle(), 5)
    events = [entry["event"] for entry in logs]
    assert events == ["incident_trigger_failed", "incident_trigger_unavailable"]
    assert trigger.dropped == 1
    await trigger.close()
