"""The COPY ceiling: ready rows COPYed straight into `spans`, with no gRPC and no mapping."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Sequence

import asyncpg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from receiver.bench.probes import (
    cpu_by_pid,
    cpu_since,
    own_cpu_seconds,
    postgres_pids,
    wal_position,
)
from receiver.database import init_writer_connection
from receiver.mapping.rows import SPAN_COLUMNS, SpanRow
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits

CEILING_MAX_ROWS = 200_000  # mapped rows take ~5 kB each in memory


@dataclasses.dataclass(frozen=True, slots=True)
class CeilingResult:
    """Plain COPY of ready rows: what the writer could do with no gRPC and no mapping."""

    rows: int
    batches: int
    batch_rows: int
    connections: int
    seconds: float
    client_cpu_seconds: float  # this process, encoding rows for COPY
    postgres_cpu_seconds: float | None  # None when the server's processes are not local
    wal_bytes: int  # written by the whole server meanwhile

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def map_requests(payloads: Iterable[bytes], tenant: str, limits: Limits) -> list[SpanRow]:
    """The rows the receiver would write for these requests (done outside any timing)."""
    rows: list[SpanRow] = []
    for payload in payloads:
        request = ExportTraceServiceRequest.FromString(payload)
        rows.extend(spans_to_rows(request, tenant, limits).rows)
    return rows


async def copy_ceiling(
    dsn: str, rows: Sequence[SpanRow], batch_rows: int, connections: int
) -> CeilingResult:
    """COPY `rows` into `spans` in batches of `batch_rows`, one transaction per batch, over
    `connections` concurrent connections set up like the writer's (same codecs)."""
    batches = [rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows)]
    pending = iter(batches)
    opened: list[asyncpg.Connection] = []
    try:
        for _ in range(connections):
            opened.append(await asyncpg.connect(dsn))
            await init_writer_connection(opened[-1])
            # Warms the connection's introspection of the COPY target, outside the timing.
            await opened[-1].copy_records_to_table("spans", records=[], columns=SPAN_COLUMNS)
        probe = opened[0]  # its own backend is one of those copying
        postgres_before = cpu_by_pid(await postgres_pids(probe, include_self=True))

        async def flusher(connection: asyncpg.Connection) -> None:
            for batch in pending:
                async with connection.transaction():
                    await connection.copy_records_to_table(
                        "spans", records=batch, columns=SPAN_COLUMNS
                    )

        client_before = own_cpu_seconds()
        wal_before = await wal_position(probe)
        started = time.perf_counter()
        await asyncio.gather(*(flusher(connection) for connection in opened))
        seconds = time.perf_counter() - started
        client = own_cpu_seconds() - client_before
        postgres = cpu_since(postgres_before, await postgres_pids(probe, include_self=True))
        wal = await wal_position(probe) - wal_before
    finally:
        for connection in opened:
            await connection.close()
    return CeilingResult(
        len(rows), len(batches), batch_rows, connections, seconds, client, postgres, wal
    )
