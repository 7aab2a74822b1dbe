"""The end-to-end load: concurrent OTLP exporters sending ready requests to a receiver."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
FAILURE_PAUSE_SECONDS = 0.1  # as an exporter backs off; keeps a failing receiver from a spin


@dataclasses.dataclass(frozen=True, slots=True)
class DriveResult:
    """What the receiver acknowledged, and how fast."""

    requests: int  # answered OK
    failed: int
    errors: dict[str, int]  # gRPC status name -> count
    acknowledged_spans: int  # in OK answers, minus partial-success rejections
    rejected_spans: int
    wall_seconds: float
    latencies_ms: list[float] = dataclasses.field(repr=False)

    @property
    def spans_per_second(self) -> float:
        return self.acknowledged_spans / self.wall_seconds if self.wall_seconds else 0.0


def percentile(values: Sequence[float], quantile: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(quantile * len(ordered))) - 1)]


async def drive(
    address: str,
    requests: Iterable[bytes],
    concurrency: int,
    *,
    spans_per_request: int,
    tenant: str,
    tenant_header: str = "x-scope-orgid",
    duration: float | None = None,
    rpc_timeout: float = 60.0,
) -> DriveResult:
    """Send the requests (until they run out or `duration` s have passed) from `concurrency`
    exporters, each on its own connection with one Export in flight, as OTLP SDKs do.

    Requests are serialized ExportTraceServiceRequests, sent as they are.
    """
    source = iter(requests)
    metadata = ((tenant_header, tenant),)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    totals = Counter[str]()
    options = [
        ("grpc.use_local_subchannel_pool", 1),  # a connection per exporter, not one shared
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
    ]

    async def exporter(export: Any, deadline: float) -> None:
        while time.perf_counter() < deadline:
            payload = next(source, None)
            if payload is None:
                return
            sent = time.perf_counter()
            try:
                response: bytes = await export(payload, metadata=metadata, timeout=rpc_timeout)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
                await asyncio.sleep(FAILURE_PAUSE_SECONDS)
                continue
            latencies.append((time.perf_counter() - sent) * 1000)
            rejected = 0
            if response:  # an empty answer is full success
                partial = ExportTraceServiceResponse.FromString(response).partial_success
                rejected = partial.rejected_spans
            totals["requests"] += 1
            totals["acknowledged"] += spans_per_request - rejected
            totals["rejected"] += rejected

    async with contextlib.AsyncExitStack() as stack:
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(address, options=options))
            for _ in range(concurrency)
        ]
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), rpc_timeout)
        started = time.perf_counter()
        deadline = math.inf if duration is None else started + duration
        # No serializers: bytes in, bytes out.
        await asyncio.gather(*(exporter(c.unary_unary(EXPORT_METHOD), deadline) for c in channels))
        wall = time.perf_counter() - started
    return DriveResult(
        requests=totals["requests"],
        failed=errors.total(),
        errors=dict(errors),
        acknowledged_spans=totals["acknowledged"],
        rejected_spans=totals["rejected"],
        wall_seconds=wall,
        latencies_ms=latencies,
    )
