"""The service graph tests' shared parts, and the pure configuration/window rules.

Fixtures (used by the other test_graph_* modules through `pytest_plugins`): a pool, an
in-process grpc.aio server with ServiceGraphService, and its client. Helpers: services
that emit real spans through the OpenTelemetry SDK (each its own TracerProvider,
resource and OTLP exporter, so every service's spans reach the receiver in requests of
their own), W3C context propagation between them, and edge lookups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_reflection.v1alpha import reflection
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from analyzer.graph.config import ENVIRONMENT, GraphConfig
from analyzer.graph.edges import plan_window
from analyzer.graph.model import LATENCY_BUCKETS, Latency
from analyzer.graph.service import GRAPH_SERVICE, add_graph_service
from prodsentinel.v1 import graph_pb2_grpc
from receiver.app import Receiver
from receiver.errors import SettingsError

TENANT_HEADER = "x-scope-orgid"
LONG_DELAY_MILLIS = 3_600_000  # batch processors export only when flushed
SECOND_US = 1_000_000

# Tests read spans the moment they are stored: no settle delay, and one run reads
# everything since the previous test's run.
TEST_CONFIG = GraphConfig(
    settle_seconds=0, initial_lookback_seconds=600, max_window_seconds=2 * 86_400
)


@pytest.fixture
async def graph_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def graph_port(receiver: Receiver, graph_pool: asyncpg.Pool) -> AsyncIterator[int]:
    """A grpc.aio server with ServiceGraphService (and reflection) on an ephemeral port."""
    server = grpc.aio.server()
    name = add_graph_service(server, graph_pool, receiver.settings)
    reflection.enable_server_reflection((name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


@pytest.fixture
async def graph(graph_port: int) -> AsyncIterator[Any]:
    """A real async gRPC client of ServiceGraphService."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{graph_port}") as channel:
        yield graph_pb2_grpc.ServiceGraphServiceStub(channel)


def as_tenant(tenant: str) -> tuple[tuple[str, str]]:
    return ((TENANT_HEADER, tenant),)


class SdkService:
    """One instrumented service: its own resource, TracerProvider and OTLP exporter."""

    def __init__(self, name: str, port: int | None, tenant: str, **resource: str) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": name, **resource}))
        self.memory = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        exporter = OTLPSpanExporter(
            endpoint=f"127.0.0.1:{port}",
            insecure=True,
            headers={TENANT_HEADER: tenant},
            timeout=10,
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=LONG_DELAY_MILLIS)
        )
        self.tracer = self.provider.get_tracer(name)

    def flush(self) -> None:
        """Export everything recorded so far, in one request; returns once it is stored."""
        assert self.provider.force_flush(timeout_millis=20_000)

    def spans(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.memory.get_finished_spans() if span.name == name]

    def shutdown(self) -> None:
        self.provider.shutdown()


def outgoing() -> dict[str, str]:
    """The current span's context as W3C traceparent headers (what a client sends)."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def incoming(carrier: Mapping[str, str]) -> Context:
    """The caller's context from received headers (what a server continues)."""
    return TraceContextTextMapPropagator().extract(carrier)


def duration_ms(span: ReadableSpan) -> float:
    assert span.end_time is not None
    assert span.start_time is not None
    return (span.end_time - span.start_time) / 1e6


EDGES = """
SELECT src.name AS source, dst.name AS target, d.*,
       (extract(epoch FROM d.last_observed_at) * 1000000)::bigint AS last_observed_us
FROM service_dependencies d
JOIN services src ON src.id = d.source_id
JOIN services dst ON dst.id = d.target_id
WHERE d.tenant_id = $1
"""


async def edges_of(db: asyncpg.Connection, tenant: str) -> dict[tuple[str, str, str], Any]:
    """The tenant's edges by (source, target, discovery source)."""
    rows = await db.fetch(EDGES, tenant)
    return {(row["source"], row["target"], row["discovery_source"]): row for row in rows}


# --------------------------------------------------------------------------- pure rules


def test_config_reads_graph_fields_of_settings_and_keeps_defaults() -> None:
    """GraphConfig.from_settings takes `graph_<field>` attributes when present (the lead's
    Settings), keeps the defaults for the others, and overrides win."""

    @dataclasses.dataclass
    class FakeSettings:
        graph_stale_after_seconds: float = 120.0
        graph_max_cycles: int | None = None

    config = GraphConfig.from_settings(FakeSettings(), settle_seconds=5.0)
    assert config.stale_after_seconds == 120.0
    assert config.max_cycles == GraphConfig().max_cycles
    assert config.settle_seconds == 5.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("stale_after_seconds", 0), ("settle_seconds", -1), ("max_cycles", 0)],
)
def test_config_rejects_bad_values_naming_the_variable(field: str, value: float) -> None:
    """A bad value raises SettingsError naming its environment variable."""
    with pytest.raises(SettingsError, match=ENVIRONMENT[field]):
        GraphConfig(**{field: value})


def test_window_starts_at_the_watermark_and_trails_the_earlier_clock() -> None:
    """A run reads from the watermark to min(now, database clock) - settle; the first
    run looks back `initial_lookback_seconds`; a long backlog is read in slices."""
    config = GraphConfig(settle_seconds=10, initial_lookback_seconds=100, max_window_seconds=60)
    s = SECOND_US
    window = plan_window(1000 * s, 1100 * s, 1050 * s, config)
    assert (window.start_us, window.end_us, window.behind) == (1000 * s, 1040 * s, False)
    first = plan_window(None, 1100 * s, 2000 * s, config)
    assert (first.start_us, first.end_us, first.behind) == (990 * s, 1050 * s, True)
    idle = plan_window(1000 * s, 1005 * s, 1005 * s, config)
    assert idle.empty
    assert idle.start_us == 1000 * s


def test_graph_service_name_is_the_protos() -> None:
    """add_graph_service returns the name clients and reflection use."""
    assert GRAPH_SERVICE == "prodsentinel.v1.ServiceGraphService"


def test_latency_quantiles_interpolate_within_buckets_and_stay_within_min_max() -> None:
    """Quantiles are linear within their bucket, clamped to the observed min and max
    (also in the open last bucket); an empty summary is all zero."""
    buckets = [0] * LATENCY_BUCKETS
    buckets[4] = 10  # ten calls in [10 ms, 25 ms)
    latency = Latency(count=10, sum_ms=160.0, min_ms=12.0, max_ms=20.0, buckets=tuple(buckets))
    assert latency.mean_ms == 16.0
    assert latency.quantile(0.5) == 16.0
    assert latency.quantile(1.0) == 20.0
    assert 12.0 <= latency.quantile(0.01) < latency.quantile(0.95) <= 20.0
    slow = [0] * LATENCY_BUCKETS
    slow[-1] = 1
    assert Latency(1, 90_000.0, 90_000.0, 90_000.0, tuple(slow)).quantile(0.99) == 90_000.0
    empty = Latency(0, 0.0, None, None, (0,) * LATENCY_BUCKETS)
    assert (empty.mean_ms, empty.quantile(0.95)) == (0.0, 0.0)
