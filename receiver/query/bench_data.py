"""Synthetic data for the query benchmark (receiver/query/bench.py), loaded with COPY.

Traces are generated in time order over the last `hours`, as a live receiver would
store them (the heap ends up clustered by time): traces of 3-30 spans across 12
services, a number of traces of exactly 1,000 spans, 3% error spans, about one log record
per ten spans; a tenth of the traces go to another tenant (noise). Rows are the writer's
own row types, sent with its codecs in binary COPY, every index in place.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson

from receiver.database import init_writer_connection
from receiver.mapping.common import span_signal_id
from receiver.mapping.rows import LOG_COLUMNS, PG_EPOCH_OFFSET_US, SPAN_COLUMNS, LogRow, SpanRow
from receiver.partitions import ensure_partitions, partitions_for
from receiver.query.validation import SECOND_NS

TENANT, NOISE_TENANT = "bench", "bench-noise"
SERVICES = [
    f"svc-{name}"
    for name in [
        "gateway",
        "orders",
        "payments",
        "stock",
        "users",
        "search",
        "cart",
        "mail",
        "ledger",
        "auth",
        "pricing",
        "ship",
    ]
]
OPERATIONS = ["GET /items", "POST /orders", "charge", "reserve", "lookup", "render"]
BATCH_ROWS = 20_000
BIG_TRACE_SPANS = 1_000
HOUR_NS = 3600 * SECOND_NS


class Generator:
    """Deterministic synthetic traces as SpanRow / LogRow tuples (JSON precomputed)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.resources = {
            service: orjson.dumps(
                {"service.name": service, "service.version": "1.4.2",
                 "host.name": f"{service}-7d9f", "deployment.environment.name": "prod"}
            )
            for service in SERVICES
        }  # fmt: skip
        self.attributes = [
            orjson.dumps(
                {"http.request.method": "GET", "http.route": f"/api/{op}",
                 "http.response.status_code": code, "user.id": f"u-{user}", "retry": False}
            )
            for op in range(len(OPERATIONS))
            for code in (200, 200, 200, 404, 500)
            for user in range(40)
        ]  # fmt: skip
        self.exception = orjson.dumps(
            [{"time_unix_nano": 0, "name": "exception", "dropped_attributes_count": 0,
              "attributes": {"exception.type": "TimeoutError", "exception.message": "upstream"}}]
        )  # fmt: skip

    def trace(self, tenant: str, start: int, size: int) -> tuple[bytes, list[SpanRow]]:
        rnd = self.random
        trace_id = rnd.randbytes(16)
        spans: list[tuple[bytes, int, int, str]] = []  # span id, start, end, service
        rows = []
        for index in range(size):
            span_id = rnd.randbytes(8)
            if index == 0:
                parent, service = None, SERVICES[rnd.randrange(3)]
                begin, end = start, start + int(rnd.lognormvariate(18.2, 1.0))  # ~80 ms median
            else:
                parent_id, parent_start, parent_end, _ = spans[rnd.randrange(len(spans))]
                parent, service = parent_id, SERVICES[rnd.randrange(len(SERVICES))]
                length = max(parent_end - parent_start, 2)
                begin = parent_start + rnd.randrange(length // 2 + 1)
                end = begin + rnd.randrange(max((parent_end - begin) // 2, 1)) + 1
            spans.append((span_id, begin, end, service))
            error = rnd.random() < 0.03
            rows.append(
                SpanRow(
                    tenant, span_signal_id(trace_id, span_id), trace_id, span_id, parent,
                    service, OPERATIONS[SERVICES.index(service) % 4 + rnd.randrange(3)],
                    2 if index == 0 else rnd.choice((1, 3)),
                    begin // 1000 - PG_EPOCH_OFFSET_US, end // 1000 - PG_EPOCH_OFFSET_US,
                    begin, end, 2 if error else 0, "upstream timeout" if error else "", "", 0x100,
                    self.attributes[rnd.randrange(len(self.attributes))], 0,
                    self.exception if error else b"[]", 0, b"[]", 0,
                    self.resources[service], 0, "https://opentelemetry.io/schemas/1.26.0",
                    "io.opentelemetry.http", "2.1.0", b"{}", 0, "",
                )
            )  # fmt: skip
        return trace_id, rows

    def logs(self, spans: list[SpanRow], count: int) -> list[LogRow]:
        rnd = self.random
        out = []
        for span in rnd.sample(spans, min(count, len(spans))):
            severity = 17 if span.status_code == 2 else 9
            out.append(
                LogRow(
                    span.tenant_id, rnd.randbytes(16), span.trace_id, span.span_id,
                    span.service_name, span.start_time, span.start_time_unix_nano,
                    span.start_time_unix_nano, severity, "", orjson.dumps(f"handled {span.name}"),
                    b'{"code.function.name": "handle"}', 0, 1, "", span.resource, 0, "",
                    "app", "", b"{}", 0, "",
                )
            )  # fmt: skip
        return out


def generate(
    total: int, big_traces: int, big_size: int, end_ns: int, hours: float, seed: int
) -> Iterator[tuple[list[SpanRow], list[LogRow], list[bytes]]]:
    """Batches of (span rows, log rows, ids of the big traces in them), in time order."""
    gen = Generator(seed)
    start_ns = end_ns - int(hours * HOUR_NS)
    mean_size = 16.5
    traces = int((total - big_traces * big_size) / mean_size)
    big_at = set(gen.random.sample(range(traces), min(big_traces, traces)))
    step = (end_ns - start_ns) / max(traces, 1)
    spans: list[SpanRow] = []
    logs: list[LogRow] = []
    big: list[bytes] = []
    for index in range(traces):
        start = start_ns + int(index * step)
        size = big_size if index in big_at else gen.random.randint(3, 30)
        tenant = NOISE_TENANT if index % 10 == 9 and index not in big_at else TENANT
        trace_id, rows = gen.trace(tenant, start, size)
        spans += rows
        logs += gen.logs(rows, max(1, size // 10))
        if index in big_at:
            big.append(trace_id)
        if len(spans) >= BATCH_ROWS:
            yield spans, logs, big
            spans, logs, big = [], [], []
    if spans:
        yield spans, logs, big


async def load(
    url: str, spans: int, big_traces: int, hours: float, seed: int, end_ns: int
) -> dict[str, Any]:
    """COPY the synthetic data; return counts, load time, size and the big trace ids."""
    connections = [await asyncpg.connect(url) for _ in range(2)]
    for connection in connections:
        await init_writer_connection(connection)
    today = dt.datetime.fromtimestamp(end_ns / 1e9, dt.UTC).date()
    await ensure_partitions(connections[0], partitions_for(today, 3, days_behind=7))
    started = time.perf_counter()
    counts = {"spans": 0, "logs": 0}
    big: list[bytes] = []
    pending: list[asyncio.Task[None]] = []
    batches = generate(spans, big_traces, BIG_TRACE_SPANS, end_ns, hours, seed)
    for number, (span_rows, log_rows, batch_big) in enumerate(batches):
        big += batch_big
        counts["spans"] += len(span_rows)
        counts["logs"] += len(log_rows)
        if len(pending) == len(connections):
            await pending.pop(0)
        connection = connections[number % len(connections)]
        pending.append(asyncio.create_task(_copy(connection, span_rows, log_rows)))
    await asyncio.gather(*pending)
    load_seconds = time.perf_counter() - started
    for table in ("spans", "logs"):
        await connections[0].execute(f"VACUUM ANALYZE {table}")
    size = await connections[0].fetchval(
        "SELECT pg_size_pretty(pg_database_size(current_database()))"
    )
    partitions = await connections[0].fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'spans'::regclass"
    )
    for connection in connections:
        await connection.close()
    return {
        **counts,
        "load_seconds": load_seconds,
        "big": big,
        "size": size,
        "partitions": partitions,
    }


async def _copy(connection: asyncpg.Connection, spans: list[SpanRow], logs: list[LogRow]) -> None:
    async with connection.transaction():
        await connection.copy_records_to_table("spans", records=spans, columns=SPAN_COLUMNS)
        await connection.copy_records_to_table("logs", records=logs, columns=LOG_COLUMNS)
