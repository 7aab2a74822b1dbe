"""Traversal benchmark: a synthetic graph of 5,000 services and 20,000 edges in a scratch
database, then timed traversals from random services (target: 3-hop p95 under 20 ms).

    python -m analyzer.graph.bench --admin-url postgresql://postgres@127.0.0.1:5432/postgres
    python -m analyzer.graph.bench --admin-url ... --traces 200000   # and the aggregation

Callers are uniform; callees are skewed (Zipf weights), as real graphs have hubs (auth,
the main database) that many services call, so upstream walks from a hub reach much of
the graph. 5% of the edges are stale. Each timing is one `traverse()` call (the recursive
CTE and the path names) on one connection, measured at the client.

With --traces N it also times one run_graph_upkeep over N synthetic 5-span traces (two
services, a client/server pair, a database call) spread over the last ten minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterable, Sequence

import asyncpg

from analyzer.graph.config import GraphConfig
from analyzer.graph.model import LATENCY_BUCKETS, Conn, Direction, ts
from analyzer.graph.traversal import traverse

LOAD_SERVICES = f"""
INSERT INTO services (tenant_id, name, kind, instrumented, first_seen, last_seen)
SELECT $1, name, 'service', true, {ts("$3")}, {ts("$3")} FROM unnest($2::text[]) AS u(name)
RETURNING id, name
"""

LOAD_EDGES = f"""
INSERT INTO service_dependencies (
    tenant_id, source_id, target_id, discovery_source, communication_mode, protocol,
    confidence, call_count, error_count, latency_sum_ms, latency_min_ms, latency_max_ms,
    latency_buckets, first_observed_at, last_observed_at, is_stale)
SELECT $1, source_id, target_id, discovery, 'sync', 'http', 1.0, 1, 0, 1.0, 1.0, 1.0,
       $7::bigint[], {ts("$6")}, {ts("$6")}, stale
FROM unnest($2::bigint[], $3::bigint[], $4::bool[], $5::text[])
     AS u(source_id, target_id, stale, discovery)
"""


# Each loaded edge has seen one call of 1 ms (the [1 ms, 2 ms) bucket).
ONE_MILLISECOND_CALL = [0, 1] + [0] * (LATENCY_BUCKETS - 2)


# $1 traces: root SERVER -> CLIENT -> SERVER in the next service -> db CLIENT + INTERNAL.
SYNTHETIC_TRACES = """
INSERT INTO spans (tenant_id, signal_id, trace_id, span_id, parent_span_id, service_name,
    name, kind, start_time, end_time, start_time_unix_nano, end_time_unix_nano, status_code,
    status_message, trace_state, flags, attributes, dropped_attributes_count, events,
    dropped_events_count, links, dropped_links_count, resource)
SELECT 'bench', gen_random_uuid(), trace_id, decode(lpad(to_hex(t * 8 + n), 16, '0'), 'hex'),
       CASE WHEN parent > 0 THEN decode(lpad(to_hex(t * 8 + parent), 16, '0'), 'hex') END,
       service, 'op', kind, start, start + interval '5 ms',
       (extract(epoch FROM start) * 1e9)::bigint,
       (extract(epoch FROM start + interval '5 ms') * 1e9)::bigint,
       CASE WHEN t % 50 = 0 THEN 2 ELSE 0 END, '', '', 256, attributes::jsonb, 0, '[]', 0, '[]',
       0, jsonb_build_object('service.name', service)
FROM (SELECT t, decode(lpad(to_hex(t), 32, '0'), 'hex') AS trace_id,
             now() - interval '10 minutes' + interval '600 seconds' * t / $1 AS start
      FROM generate_series(1, $1) AS t) AS traces
CROSS JOIN LATERAL (VALUES
    (1, 0, 'svc-' || t % 50, 2, '{"http.route": "/a"}'),
    (2, 1, 'svc-' || t % 50, 3, '{"http.request.method": "GET"}'),
    (3, 2, 'svc-' || (t + 1) % 50, 2, '{"http.route": "/b"}'),
    (4, 3, 'svc-' || (t + 1) % 50, 3, '{"db.system": "postgresql"}'),
    (5, 3, 'svc-' || (t + 1) % 50, 1, '{}')
) AS s(n, parent, service, kind, attributes)
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    stale: bool = False
    discovery: str = "trace"


async def load_graph(conn: Conn, tenant: str, names: Sequence[str], edges: Iterable[Edge]) -> None:
    """Insert services and edges directly (tests and this benchmark; not discovery)."""
    now_us = time.time_ns() // 1000
    rows = await conn.fetch(LOAD_SERVICES, tenant, list(names), now_us)
    ids = {row["name"]: row["id"] for row in rows}
    edge_list = list(edges)
    await conn.execute(
        LOAD_EDGES,
        tenant,
        [ids[e.source] for e in edge_list],
        [ids[e.target] for e in edge_list],
        [e.stale for e in edge_list],
        [e.discovery for e in edge_list],
        now_us,
        ONE_MILLISECOND_CALL,
    )


def synthetic_graph(
    services: int, edges: int, seed: int, stale_share: float = 0.05, skew: float = 0.6
) -> tuple[list[str], list[Edge]]:
    """`services` names and `edges` distinct edges (no self-loops), Zipf-skewed callees."""
    rng = random.Random(seed)
    names = [f"svc-{n:05d}" for n in range(services)]
    popularity = names[:]
    rng.shuffle(popularity)
    weights = [1 / (rank + 1) ** skew for rank in range(services)]
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < edges:
        source = rng.choice(names)
        (target,) = rng.choices(popularity, weights)
        if source != target:
            pairs.add((source, target))
    return names, [Edge(s, t, stale=rng.random() < stale_share) for s, t in sorted(pairs)]


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    conn: Conn,
    tenant: str,
    names: Sequence[str],
    direction: Direction | None,
    depth: int,
    runs: int,
    seed: int,
) -> dict[str, float]:
    rng = random.Random(seed)
    for _ in range(min(50, runs)):  # warm the cache and the prepared statement
        await traverse(conn, tenant, rng.choice(names), direction, depth)
    timings, reached = [], []
    for _ in range(runs):
        start = rng.choice(names)
        began = time.perf_counter()
        result = await traverse(conn, tenant, start, direction, depth)
        timings.append((time.perf_counter() - began) * 1000)
        reached.append(len(result or ()))
    return {
        "p50": percentile(timings, 0.50),
        "p95": percentile(timings, 0.95),
        "p99": percentile(timings, 0.99),
        "max": max(timings),
        "reached_mean": statistics.fmean(reached),
        "reached_max": max(reached),
    }


async def measure_aggregation(conn: asyncpg.Connection, traces: int) -> None:
    """Time one upkeep run over `traces` synthetic traces stored in the last 10 minutes."""
    from analyzer.graph.upkeep import run_graph_upkeep
    from receiver.partitions import ensure_partitions, partitions_for

    await ensure_partitions(conn, partitions_for(dt.datetime.now(dt.UTC).date(), 1))
    await conn.execute(SYNTHETIC_TRACES, traces)
    await conn.execute("ANALYZE spans")
    config = GraphConfig(settle_seconds=0, initial_lookback_seconds=900, max_window_seconds=900)
    began = time.perf_counter()
    summary = await run_graph_upkeep(conn, dt.datetime.now(dt.UTC), config)
    seconds = time.perf_counter() - began
    print(
        f"aggregation: {traces * 5} spans, {summary.calls} calls, {summary.edges} edges "
        f"in {seconds:.2f} s ({traces * 5 / seconds:,.0f} spans/s)"
    )


async def run(args: argparse.Namespace) -> int:
    from receiver import migrations

    name = f"prodsentinel_graph_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = args.admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        conn = await asyncpg.connect(url, server_settings={"jit": "off"})
        try:
            names, edges = synthetic_graph(args.services, args.edges, args.seed)
            await load_graph(conn, "bench", names, edges)
            await conn.execute("ANALYZE")
            print(f"graph: {len(names)} services, {len(edges)} edges, seed {args.seed}")
            print("| walk | depth | p50 ms | p95 ms | p99 ms | max ms | reached mean/max |")
            print("|---|---|---|---|---|---|---|")
            cases: list[tuple[str, Direction | None, int]] = [
                ("downstream", Direction.DOWNSTREAM, 3),
                ("upstream", Direction.UPSTREAM, 3),
                ("both", None, 3),
                ("downstream", Direction.DOWNSTREAM, 10),
            ]
            for label, direction, depth in cases:
                runs = args.runs if depth <= 3 else max(1, args.runs // 10)
                result = await measure(conn, "bench", names, direction, depth, runs, args.seed)
                print(
                    f"| {label} | {depth} | {result['p50']:.2f} | {result['p95']:.2f} | "
                    f"{result['p99']:.2f} | {result['max']:.2f} | "
                    f"{result['reached_mean']:.0f}/{result['reached_max']:.0f} |"
                )
            if args.traces:
                await measure_aggregation(conn, args.traces)
        finally:
            await conn.close()
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", required=True, help="a maintenance database URL")
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--edges", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=2000, help="timed traversals per case")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--traces", type=int, default=0, help="also time the aggregation")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
