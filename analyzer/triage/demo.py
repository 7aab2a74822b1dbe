"""`prodsentinel demo`: send the fault scenarios to a running instance over OTLP/gRPC.

The scenarios are the evaluation's (analyzer/triage/scenarios.py): each is one faulty
request through the simulated topology plus unrelated traffic, labelled with its true
root-cause service. The demo moves their timestamps to now (the generator uses a fixed
clock so that the evaluation is reproducible), sends traces then logs through real
`Export` calls with the tenant header, and prints each scenario's fault and root cause so
that the user can compare them with the incidents the worker opens.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from analyzer.triage.scenarios import Scenario, generate

EXPORT_TIMEOUT_SECONDS = 10.0
DEFAULT_SETTLE_SECONDS = 10.0


def add_commands(subparsers: Any) -> None:
    """Add `demo` to the `prodsentinel` command line (cli.py calls this)."""
    demo = subparsers.add_parser(
        "demo", help="send labelled fault scenarios to a running instance over OTLP/gRPC"
    )
    demo.add_argument("--address", default="localhost:4317", help="OTLP/gRPC host:port")
    demo.add_argument("--tenant", default="demo", help="tenant the data is sent as")
    demo.add_argument("--scenarios", type=int, default=10, help="how many scenarios (>= 1)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the generator")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Any) -> int:
    """Send the scenarios, print what was injected, and say where to look; 0 on success."""
    if args.scenarios < 1:
        print("--scenarios must be at least 1")
        return 2
    header = str(getattr(settings, "tenant_header", "x-scope-orgid"))
    scenarios = generate(args.scenarios, args.seed)
    try:
        asyncio.run(send(args.address, args.tenant, scenarios, header, report=print))
    except grpc.aio.AioRpcError as error:
        print(f"cannot send to {args.address}: {error.code().name} {error.details()}")
        return 1
    settle = float(getattr(settings, "incident_settle_seconds", DEFAULT_SETTLE_SECONDS))
    print(
        f"Sent {len(scenarios)} scenarios as tenant {args.tenant!r}. After the settle window "
        f"({settle:g} s) run: prodsentinel incidents --tenant {args.tenant}"
    )
    return 0


async def send(
    address: str,
    tenant: str,
    scenarios: Sequence[Scenario],
    tenant_header: str = "x-scope-orgid",
    report: Any = None,
) -> None:
    """Export each scenario's traces then logs, timestamps moved to now; report each one."""
    metadata = ((tenant_header, tenant),)
    async with grpc.aio.insecure_channel(address) as channel:
        traces = trace_service_pb2_grpc.TraceServiceStub(channel)
        logs = logs_service_pb2_grpc.LogsServiceStub(channel)
        for scenario in scenarios:
            span_request, log_request = shifted(scenario, time.time_ns())
            await traces.Export(span_request, metadata=metadata, timeout=EXPORT_TIMEOUT_SECONDS)
            if log_request.resource_logs:
                await logs.Export(log_request, metadata=metadata, timeout=EXPORT_TIMEOUT_SECONDS)
            if report is not None:
                report(
                    f"{scenario.name}: {scenario.fault.value:<18} root cause "
                    f"{scenario.root_cause:<10} trace {scenario.trace_id.hex()}"
                )


def shifted(
    scenario: Scenario, now_ns: int
) -> tuple[ExportTraceServiceRequest, ExportLogsServiceRequest]:
    """Copies of the scenario's requests whose earliest span starts at `now_ns`."""
    span_request, log_request = ExportTraceServiceRequest(), ExportLogsServiceRequest()
    span_request.CopyFrom(scenario.traces)
    log_request.CopyFrom(scenario.logs)
    spans = [s for rs in span_request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    records = [
        r for rl in log_request.resource_logs for sl in rl.scope_logs for r in sl.log_records
    ]
    starts = [s.start_time_unix_nano for s in spans if s.start_time_unix_nano]
    if not starts:
        return span_request, log_request
    offset = now_ns - min(starts)
    for span in spans:
        span.start_time_unix_nano += offset
        span.end_time_unix_nano += offset
        for event in span.events:
            event.time_unix_nano += offset
    for record in records:
        if record.time_unix_nano:
            record.time_unix_nano += offset
        if record.observed_time_unix_nano:
            record.observed_time_unix_nano += offset
    return span_request, log_request
