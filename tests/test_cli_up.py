"""`prodsentinel up` on a machine with nothing configured: embedded servers, migrate, serve, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from support import free_port, wait_serving

from receiver.embedded import start_postgres


async def test_up_runs_everything_and_stops_everything(tmp_path: Path) -> None:
    """Given no DATABASE_URL/REDIS_URL, `prodsentinel up` starts embedded PostgreSQL and Redis,
    migrates, runs a worker, accepts OTLP, and on SIGTERM stops every process it started;
    the data stays."""
    data_dir = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {
        "PRODSENTINEL_DATA_DIR": str(data_dir),
        "PRODSENTINEL_GRPC_ADDRESS": f"127.0.0.1:{port}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.cli",
        "up",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = b""
    try:
        await wait_serving(port, process)
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "via-up"
        span.start_time_unix_nano = span.end_time_unix_nano = 1_795_000_000_000_000_000
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await trace_service_pb2_grpc.TraceServiceStub(channel).Export(request)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    text = output.decode()
    assert process.returncode == 0, text
    assert "embedded_postgres_started" in text
    assert "embedded_redis_started" in text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    worker_pid = next(e["pid"] for e in events if e.get("event") == "worker_started" and "pid" in e)
    assert not _alive(worker_pid)
    # Everything it started is stopped: no postmaster, no redis left behind.
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), text
    redis_pid_files = list((data_dir / "redis").glob("*.pid"))
    assert all(not _alive(int(p.read_text().strip() or 0)) for p in redis_pid_files)

    server = await asyncio.to_thread(start_postgres, data_dir)
    try:
        connection = await asyncpg.connect(server.dsn("prodsentinel"))
        try:
            assert (
                await connection.fetchval("SELECT name FROM spans WHERE tenant_id = 'default'")
                == "via-up"
            )
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(server.stop)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
