"""Adversity: PostgreSQL stops mid-run and comes back; the SDK exporter's retries lose nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from receiver import migrations
from receiver.embedded import EmbeddedPostgres, start_postgres

BATCHES = 16
SPANS_PER_BATCH = 25
OUTAGE_AFTER_BATCH = 4


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server this test may stop and start (never the shared one)."""
    server = start_postgres(tmp_path / "outage")
    try:
        server.create_database("outage")
        migrations.upgrade(server.dsn("outage"))
        yield server
    finally:
        server.stop()


async def wait_for_health(port: int, wanted: int, timeout: float = 30.0) -> None:
    """Follow grpc.health.v1 Watch until the receiver reports `wanted`."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        async with asyncio.timeout(timeout):
            async for update in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                if update.status == wanted:
                    return


def export_batches(port: int, tenant: str, progress: threading.Event) -> list[SpanExportResult]:
    """Export BATCHES batches through the real OTLP exporter, one Export call per batch."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "outage-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("outage")
    exporter: SpanExporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, timeout=60, headers={"x-scope-orgid": tenant}
    )
    results = []
    for batch in range(BATCHES):
        memory.clear()
        for n in range(SPANS_PER_BATCH):
            with tracer.start_as_current_span(f"batch-{batch}-span-{n}"):
                pass
        results.append(exporter.export(memory.get_finished_spans()))
        if batch == OUTAGE_AFTER_BATCH:
            progress.set()
    exporter.shutdown()
    return results


async def test_database_restart_loses_and_doubles_nothing(
    own_postgres: EmbeddedPostgres, make_receiver, tenant: str
) -> None:
    """Given Exports in flight, when PostgreSQL stops and restarts, then every export finally
    succeeds through the exporter's own retries, and each span is stored exactly once."""
    url = own_postgres.dsn("outage")
    receiver = await make_receiver(database_url=url, PRODSENTINEL_RETRY_AFTER_SECONDS=1)
    progress = threading.Event()
    exporting = asyncio.ensure_future(
        asyncio.to_thread(export_batches, receiver.port, tenant, progress)
    )

    assert await asyncio.to_thread(progress.wait, 60)
    await asyncio.to_thread(own_postgres.stop)
    await wait_for_health(receiver.port, health_pb2.HealthCheckResponse.NOT_SERVING)
    await asyncio.to_thread(own_postgres.start)
    await wait_for_health(receiver.port, health_pb2.HealthCheckResponse.SERVING)
    results = await asyncio.wait_for(exporting, 120)

    assert results == [SpanExportResult.SUCCESS] * BATCHES
    connection = await asyncpg.connect(url)
    try:
        total, distinct = await connection.fetchrow(
            "SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans WHERE tenant_id = $1",
            tenant,
        )
    finally:
        await connection.close()
    assert (total, distinct) == (BATCHES * SPANS_PER_BATCH, BATCHES * SPANS_PER_BATCH)
