"""The query benchmark: ≥5M spans in a scratch database, then GetTrace and FindTraces
latencies through the real gRPC API.

    python -m receiver.query.bench --admin-url postgresql://postgres@127.0.0.1:5432/postgres

1. creates (or replaces) the scratch database, migrates it, creates daily partitions
   for the 7 days before and 3 after today (so GetTrace probes 11 partitions + DEFAULT);
2. loads the spans with binary COPY (receiver/query/bench_data.py: the writer's codecs
   and row types, no gRPC), in time order over the last `--hours`, with
   `--big-traces` traces of exactly 1,000 spans; then VACUUM ANALYZE (autovacuum
   does this on a live system);
3. serves QueryService in-process on an ephemeral port (receiver.query.service, the
   read pool of receiver.query.sql) and measures, sequentially, with a real client:
   GetTrace of the 1,000-span traces, and one-hour FindTraces over random hours (no
   filter and its second page, service, service + operation, attributes, errors
   only, minimum duration).

Latencies include the client's deserialisation; both ends share this process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import random
import statistics
import sys
import time
from typing import Any

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from prodsentinel.v1 import query_pb2, query_pb2_grpc
from receiver import migrations
from receiver.logging import configure_logging
from receiver.query.bench_data import BIG_TRACE_SPANS, HOUR_NS, OPERATIONS, SERVICES, TENANT, load
from receiver.query.service import add_query_service
from receiver.query.sql import create_query_pool
from receiver.settings import Settings, normalise_database_url


def _timestamp(unix_nano: int) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(unix_nano)
    return value


async def measure(
    url: str, big: list[bytes], end_ns: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Latencies (ms) of GetTrace and one-hour FindTraces through a real gRPC server."""
    pool = await create_query_pool(url, size=4)
    server = grpc.aio.server()
    add_query_service(server, pool, Settings())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    rnd = random.Random(args.seed + 1)
    if args.gc_freeze:
        # What a long-running server should do after start-up: without it, CPython's
        # full collections rescan every start-up object (~50 ms pauses here).
        gc.collect()
        gc.freeze()
    metadata = (("x-scope-orgid", TENANT),)
    results: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)

            async def timed(call: Any, request: Any) -> tuple[float, Any]:
                began = time.perf_counter()
                response = await call(request, metadata=metadata)
                return (time.perf_counter() - began) * 1000, response

            get_trace = []
            for index in range(args.warmup + args.requests):
                trace_id = big[index % len(big)].hex()
                ms, response = await timed(
                    stub.GetTrace, query_pb2.GetTraceRequest(trace_id=trace_id)
                )
                spans = sum(
                    len(s.spans) for r in response.trace.resource_spans for s in r.scope_spans
                )
                assert spans == BIG_TRACE_SPANS, spans
                if index >= args.warmup:
                    get_trace.append(ms)
            results[f"GetTrace ({BIG_TRACE_SPANS:,} spans)"] = get_trace
            variants: dict[str, dict[str, Any]] = {
                "no filter": {},
                "no filter, second page": {},
                "service": {"service_name": SERVICES[4]},
                "service + operation": {
                    "service_name": SERVICES[1],
                    "operation_name": OPERATIONS[1],
                },
                "attribute status=500": {"attributes": [_status(500)]},
                "errors only": {"errors_only": True},
                "min duration 1s": {"min_duration": Duration(seconds=1)},
                "attribute matching nothing": {
                    "attributes": [KeyValue(key="user.id", value=AnyValue(string_value="-"))]
                },
            }
            span_hours = max(args.hours - 1, 0)
            for name, filters in variants.items():
                latencies, found = [], []
                for index in range(args.warmup + args.requests // 4):
                    begin = end_ns - int((1 + rnd.random() * span_hours) * HOUR_NS)
                    request = query_pb2.FindTracesRequest(
                        start_time=_timestamp(begin),
                        end_time=_timestamp(begin + HOUR_NS),
                        **filters,
                    )
                    if name.endswith("second page"):
                        _, first = await timed(stub.FindTraces, request)
                        request.page_token = first.next_page_token
                    ms, response = await timed(stub.FindTraces, request)
                    if index >= args.warmup:
                        latencies.append(ms)
                        found.append(len(response.traces))
                results[f"FindTraces 1h, {name}"] = latencies
                results[f"found {name}"] = statistics.mean(found) if found else 0
            results["FindTraces 1h, all of the above"] = [
                ms for name in variants for ms in results[f"FindTraces 1h, {name}"]
            ]
    finally:
        await server.stop(None)
        await pool.close()
    return results


def _status(code: int) -> KeyValue:
    return KeyValue(key="http.response.status_code", value=AnyValue(int_value=code))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the ceil(q * n)-th smallest value."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report(loaded: dict[str, Any], latencies: dict[str, Any]) -> str:
    seconds = loaded["load_seconds"]
    rate = (
        f" loaded with COPY in {seconds:.0f} s ({loaded['spans'] / seconds:,.0f} spans/s with "
        "their logs, every index in place)"
        if seconds
        else ""
    )
    lines = [
        f"{loaded['spans']:,} spans and {loaded['logs']:,} log records{rate}; database "
        f"{loaded['size']}, {loaded['partitions']} spans partitions (daily + DEFAULT).",
        "",
        "| query | n | p50 ms | p90 ms | p99 ms | max ms | traces/page |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in latencies.items():
        if name.startswith("found "):
            continue
        found = latencies.get(f"found {name.removeprefix('FindTraces 1h, ')}", "")
        lines.append(
            f"| {name} | {len(values)} | {percentile(values, 0.5):.1f} | {percentile(values, 0.9):.1f} "
            f"| {percentile(values, 0.99):.1f} | {max(values):.1f} | "
            f"{f'{found:.1f}' if found != '' else ''} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> str:
    admin = normalise_database_url(args.admin_url, driver="asyncpg")
    url = with_database(admin, args.database)
    if args.reuse:
        loaded = await loaded_before(url)
        end_ns = loaded["end_ns"]
    else:
        end_ns = time.time_ns()
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{args.database}"')
        finally:
            await connection.close()
        await asyncio.to_thread(migrations.upgrade, url)
        loaded = await load(url, args.spans, args.big_traces, args.hours, args.seed, end_ns)
    print(f"loaded: {loaded['spans']:,} spans; measuring", file=sys.stderr)
    latencies = await measure(url, loaded["big"], end_ns, args)
    return report(loaded, latencies)


async def loaded_before(url: str) -> dict[str, Any]:
    """--reuse: what an earlier run loaded (the big traces are those of 1,000 spans)."""
    connection = await asyncpg.connect(url)
    try:
        big = [
            row["trace_id"]
            for row in await connection.fetch(
                "SELECT trace_id FROM spans WHERE tenant_id = $1 GROUP BY trace_id "
                "HAVING count(*) = $2",
                TENANT,
                BIG_TRACE_SPANS,
            )
        ]
        stats = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM spans) AS spans, (SELECT count(*) FROM logs) AS logs, "
            "(SELECT max(end_time_unix_nano) FROM spans) AS end_ns, "
            "pg_size_pretty(pg_database_size(current_database())) AS size, "
            "(SELECT count(*) FROM pg_inherits WHERE inhparent = 'spans'::regclass) AS partitions"
        )
    finally:
        await connection.close()
    assert stats is not None
    return {**dict(stats), "load_seconds": None, "big": big}


def with_database(url: str, database: str) -> str:
    """`url` naming another database (keeping ?host=/socket/dir and other options)."""
    base, _, options = url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{database}" + (f"?{options}" if options else "")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", required=True, help="maintenance database URL")
    parser.add_argument("--database", default="prodsentinel_query_bench")
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--big-traces", type=int, default=50, help="traces of 1,000 spans")
    parser.add_argument("--hours", type=float, default=48.0, help="time the data covers")
    parser.add_argument("--requests", type=int, default=400, help="GetTrace calls measured")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--reuse", action="store_true", help="measure the database an earlier run loaded"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() the start-up heap before measuring (see docs/benchmarks.md)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging("WARNING")  # a debug line per query would be measured too
    print(asyncio.run(main_async(parser().parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
