"""`prodsentinel serve --processes N`: several receivers share one port and stop together."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import asyncpg
import grpc
import psutil
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from support import free_port, wait_serving


async def test_serve_with_two_processes_shares_the_port(
    database_url: str, db: asyncpg.Connection, tenant: str
) -> None:
    """Given `serve --processes 2`, two receiver processes answer on one port; every Export made
    on separate connections is stored; SIGTERM stops both children and the parent exits 0."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=database_url, PRODSENTINEL_GRPC_ADDRESS=f"127.0.0.1:{port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.cli",
        "serve",
        "--processes",
        "2",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_serving(port, process)
        children = psutil.Process(process.pid).children()
        assert len(children) >= 2  # the spawn context may add a resource tracker
        for n in range(8):  # a new channel (connection) each time: the kernel spreads them
            request = trace_service_pb2.ExportTraceServiceRequest()
            span = request.resource_spans.add().scope_spans.add().spans.add()
            span.trace_id, span.span_id, span.name = os.urandom(16), os.urandom(8), f"op-{n}"
            span.start_time_unix_nano = span.end_time_unix_nano = 1_795_000_000_000_000_000
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                await trace_service_pb2_grpc.TraceServiceStub(channel).Export(
                    request, metadata=(("x-scope-orgid", tenant),)
                )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 8
