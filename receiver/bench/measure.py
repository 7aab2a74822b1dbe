"""One bench run: warm-up, the end-to-end load, then the COPY ceiling, as a report."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from receiver.bench.ceiling import CEILING_MAX_ROWS, copy_ceiling, map_requests
from receiver.bench.load import DriveResult, drive, percentile
from receiver.bench.probes import (
    commit_sizes,
    cpu_by_pid,
    cpu_since,
    machine_busy_seconds,
    machine_description,
    open_connection,
    own_cpu_seconds,
    postgres_pids,
    postgres_version,
    stored_rows,
    wal_position,
)
from receiver.bench.requests import RequestPool
from receiver.settings import Settings

log = structlog.get_logger(__name__)

GOAL_SPANS_PER_SECOND = 40_000
GOAL_RATIO = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class BenchConfig:
    """The load and the ceiling of one run."""

    spans_per_request: int = 512
    concurrency: int = 8
    duration: float = 20.0
    requests: int | None = None
    warmup: float = 2.0  # seconds of load before measuring (connections, caches, partitions)
    ceiling_rows: int | None = None  # None: as many as acknowledged, at most CEILING_MAX_ROWS
    ceiling_batch_rows: int | None = None  # None: the receiver's mean rows per commit
    # The receivers' database connections in all (processes x writer connections), so the
    # ceiling gets as much parallelism as the receivers had. None: writer_connections.
    ceiling_connections: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchConfig:
        """The run that the options of `prodsentinel bench` ask for."""
        return cls(
            spans_per_request=args.spans_per_request,
            concurrency=args.concurrency,
            duration=args.duration,
            requests=args.requests,
            warmup=args.warmup,
            ceiling_rows=args.ceiling_rows,
            ceiling_batch_rows=args.ceiling_batch_rows,
            ceiling_connections=args.ceiling_connections,
        )


async def measure(
    address: str,
    dsn: str,
    config: BenchConfig,
    settings: Settings,
    *,
    receiver_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """Both phases against the receiver at `address` writing to `dsn`; returns the report."""
    tenant = f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    async with open_connection(dsn) as connection:
        machine = machine_description(await postgres_version(connection))
    pool = RequestPool(config.spans_per_request)

    async def load(duration: float, requests: int | None) -> DriveResult:
        return await drive(
            address,
            pool if requests is None else itertools.islice(pool, requests),
            config.concurrency,
            spans_per_request=config.spans_per_request,
            tenant=tenant,
            tenant_header=settings.tenant_header,
            duration=duration,
        )

    warmed = 0
    if config.warmup > 0:
        log.info("bench_warmup", seconds=config.warmup)
        warmed = (await load(config.warmup, None)).acknowledged_spans
    async with open_connection(dsn) as connection:
        postgres_before = cpu_by_pid(await postgres_pids(connection))
        wal_before = await wal_position(connection)
    log.info("bench_measuring", tenant=tenant, seconds=config.duration, requests=config.requests)
    receiver_before = cpu_by_pid(receiver_pids)
    own_before, machine_before = own_cpu_seconds(), machine_busy_seconds()
    result = await load(config.duration, config.requests)
    machine_after = machine_busy_seconds()
    own = own_cpu_seconds() - own_before
    receiver = cpu_since(receiver_before, ()) if receiver_pids else None

    async with open_connection(dsn) as connection:
        postgres = cpu_since(postgres_before, await postgres_pids(connection))
        wal = await wal_position(connection) - wal_before
        commits, committed = await commit_sizes(connection, tenant)
    mean_commit = committed / commits if commits else 0.0
    batch_rows = config.ceiling_batch_rows or round(mean_commit) or settings.batch_max_rows
    ceiling_rows = config.ceiling_rows
    if ceiling_rows is None:
        ceiling_rows = min(result.acknowledged_spans, CEILING_MAX_ROWS)
    ceiling_requests = -(-max(0, ceiling_rows) // config.spans_per_request)
    log.info("bench_ceiling_mapping", requests=ceiling_requests)
    rows = map_requests(itertools.islice(pool, ceiling_requests), tenant, settings.limits)
    log.info("bench_ceiling_copy", rows=len(rows), batch_rows=batch_rows)
    connections = config.ceiling_connections or settings.writer_connections
    ceiling = await copy_ceiling(dsn, rows, batch_rows, connections)
    del rows
    async with open_connection(dsn) as connection:
        stored = await stored_rows(connection, tenant)

    spans, wall = result.acknowledged_spans, result.wall_seconds
    busy = (machine_after[0] - machine_before[0]) / wall
    ours = [cpu for cpu in (receiver, postgres, own) if cpu is not None]
    return {
        "machine": machine,
        "tenant": tenant,
        "receiver": {
            "address": address,
            "pids": list(receiver_pids),
            "writer_connections": settings.writer_connections,
            "batch_max_rows": settings.batch_max_rows,
        },
        "load": {
            **dataclasses.asdict(config),
            "requests_ok": result.requests,
            "requests_failed": result.failed,
            "errors": result.errors,
        },
        "end_to_end": {
            "acknowledged_spans": spans,
            "rejected_spans": result.rejected_spans,
            "wall_s": round(wall, 3),
            "spans_per_s": round(result.spans_per_second),
            "latency_p50_ms": round(percentile(result.latencies_ms, 0.50), 2),
            "latency_p99_ms": round(percentile(result.latencies_ms, 0.99), 2),
            "receiver_cpu_us_per_span": _per_item(receiver, spans),
            "postgres_cpu_us_per_span": _per_item(postgres, spans),
            "load_generator_cpu_us_per_span": _per_item(own, spans),
            "wal_bytes_per_span": round(wal / spans) if spans else None,
            "machine_busy_cores": round(busy, 2),
            # Cores busy with anything but the receiver, PostgreSQL and this load generator.
            "other_cores": round(busy - sum(ours) / wall, 2) if len(ours) == 3 else None,
        },
        "commits": {"transactions": commits, "mean_rows": round(mean_commit, 1)},
        "ceiling": {
            "rows": ceiling.rows,
            "batch_rows": ceiling.batch_rows,
            "connections": ceiling.connections,
            "seconds": round(ceiling.seconds, 3),
            "rows_per_s": round(ceiling.rows_per_second),
            "client_cpu_us_per_row": _per_item(ceiling.client_cpu_seconds, ceiling.rows),
            "postgres_cpu_us_per_row": _per_item(ceiling.postgres_cpu_seconds, ceiling.rows),
            "wal_bytes_per_row": round(ceiling.wal_bytes / ceiling.rows) if ceiling.rows else None,
        },
        "ratio": round(result.spans_per_second / ceiling.rows_per_second, 3)
        if ceiling.rows_per_second
        else None,
        "goal": {"spans_per_s": GOAL_SPANS_PER_SECOND, "ratio": GOAL_RATIO},
        "stored_rows": stored,
        "expected_rows": warmed + spans + ceiling.rows,
    }


def _per_item(seconds: float | None, items: int) -> float | None:
    return round(seconds * 1e6 / items, 1) if seconds is not None and items else None
