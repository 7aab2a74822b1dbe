"""Benchmark: time from an error's Export to its incident, at a steady rate of error traces.

    python -m analyzer.bench [--rate 1000] [--duration 60] [--settle 10] [--json out.json]

One run: a receiver in this process with the incident trigger on its writer, and a real
`python -m analyzer.worker` subprocess, against DATABASE_URL / REDIS_URL or, when unset,
an embedded PostgreSQL and Redis in a temporary directory. It sends `--rate` error traces
a minute (each one Export of a 4-span trace: a failing server root, a failing child with
an exception event, two healthy spans; 20 distinct exceptions) for `--duration` seconds,
then waits for every trace to be an occurrence. The latency of a trace is the
occurrence's `recorded_at` (database clock) minus the moment its Export was sent (same
machine). The target: p95 within the settle window + 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from analyzer.config import AnalyzerConfig
from analyzer.trigger import IncidentTrigger
from analyzer.worker import start_worker_process
from receiver import migrations
from receiver.logging import configure_logging

SPAN_KIND_SERVER = trace_pb2.Span.SPAN_KIND_SERVER
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    rate_per_minute: int
    duration_seconds: float
    settle_seconds: float
    traces: int
    recorded: int
    p50_seconds: float
    p95_seconds: float
    max_seconds: float
    incidents: int
    worker_threads: int
    machine: str

    @property
    def within_target(self) -> bool:
        return self.recorded == self.traces and self.p95_seconds <= self.settle_seconds + 2.0


def error_trace(trace_id: bytes, n: int) -> trace_service_pb2.ExportTraceServiceRequest:
    """A 4-span trace whose root and one child fail; the exception is one of 20 shapes."""
    now = time.time_ns()
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = f"svc-{n % 5}"
    spans = resource.scope_spans.add().spans
    root = spans.add(
        trace_id=trace_id, span_id=os.urandom(8), name="POST /orders", kind=SPAN_KIND_SERVER
    )
    root.start_time_unix_nano, root.end_time_unix_nano = now, now + 5_000_000
    root.status.code = STATUS_ERROR
    child = spans.add(
        trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root.span_id, name="db.query"
    )
    child.start_time_unix_nano, child.end_time_unix_nano = now + 1_000_000, now + 4_000_000
    child.status.code = STATUS_ERROR
    event = child.events.add(name="exception", time_unix_nano=now + 3_000_000)
    event.attributes.add(key="exception.type").value.string_value = f"BenchError{n % 20}"
    event.attributes.add(
        key="exception.message"
    ).value.string_value = f"order {n} failed: {uuid.uuid4()}"
    for name in ("cache.get", "auth.check"):
        ok = spans.add(
            trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root.span_id, name=name
        )
        ok.start_time_unix_nano, ok.end_time_unix_nano = now, now + 500_000
    return request


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


async def run_load(
    args: argparse.Namespace, database_url: str, redis_url: str, tenant: str
) -> Result:
    from receiver.app import Receiver
    from receiver.settings import Settings

    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PRODSENTINEL_GRPC_ADDRESS": "127.0.0.1:0",
        }
    )
    config = AnalyzerConfig.from_settings(settings, settle_seconds=args.settle)
    receiver = Receiver(settings)
    port = await receiver.start()
    trigger = IncidentTrigger(config)
    receiver.writer.add_commit_listener(trigger.on_commit)
    worker = start_worker_process(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING"},
        ["--threads", str(args.threads)],
    )
    sent_at: dict[bytes, float] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            metadata = (("x-scope-orgid", tenant),)
            interval = 60.0 / args.rate
            total = int(args.duration / interval)
            start = time.monotonic()
            pending: set[asyncio.Task[Any]] = set()
            for n in range(total):
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                trace_id = os.urandom(16)
                sent_at[trace_id] = time.time()
                task = asyncio.ensure_future(
                    stub.Export(error_trace(trace_id, n), metadata=metadata, timeout=30)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)
        recorded = await wait_for_occurrences(database_url, tenant, len(sent_at), args.settle + 120)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 60)
        await trigger.close()
        await receiver.stop()
    latencies = [recorded[t] - sent_at[t] for t in sent_at if t in recorded]
    connection = await asyncpg.connect(database_url)
    try:
        incidents = int(
            await connection.fetchval("SELECT count(*) FROM incidents WHERE tenant_id = $1", tenant)
        )
    finally:
        await connection.close()
    return Result(
        rate_per_minute=args.rate,
        duration_seconds=args.duration,
        settle_seconds=args.settle,
        traces=len(sent_at),
        recorded=len(latencies),
        p50_seconds=round(statistics.median(latencies), 3) if latencies else float("nan"),
        p95_seconds=round(percentile(latencies, 0.95), 3) if latencies else float("nan"),
        max_seconds=round(max(latencies), 3) if latencies else float("nan"),
        incidents=incidents,
        worker_threads=args.threads,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    )


async def wait_for_occurrences(
    database_url: str, tenant: str, expected: int, deadline: float
) -> dict[bytes, float]:
    """trace id -> recorded_at (Unix seconds), once all are recorded or the deadline passes."""
    connection = await asyncpg.connect(database_url)
    end = time.monotonic() + deadline
    try:
        while True:
            rows = await connection.fetch(
                "SELECT trace_id, extract(epoch FROM recorded_at)::float8 AS at "
                "FROM incident_occurrences WHERE tenant_id = $1",
                tenant,
            )
            if len(rows) >= expected or time.monotonic() > end:
                return {r["trace_id"]: r["at"] for r in rows}
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analyzer.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rate", type=int, default=1000, help="error traces per minute")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--settle", type=float, default=10.0, help="settle window (seconds)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    with contextlib.ExitStack() as stack:
        if database_url is None or redis_url is None:
            from receiver.embedded import start_postgres, start_redis

            data_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="incidents-bench-"))
            )
            if database_url is None:
                postgres = start_postgres(data_dir)
                stack.callback(postgres.stop)
                postgres.create_database("bench")
                database_url = postgres.dsn("bench")
            if redis_url is None:
                redis_server = start_redis(data_dir)
                stack.callback(redis_server.stop)
                redis_url = redis_server.url
        migrations.upgrade(database_url)
        tenant = f"bench-{uuid.uuid4().hex[:8]}"
        result = asyncio.run(run_load(args, database_url, redis_url, tenant))
    report = {**dataclasses.asdict(result), "within_target": result.within_target}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if result.within_target else 1


if __name__ == "__main__":
    sys.exit(main())
