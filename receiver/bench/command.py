"""`prodsentinel bench`: its options, its run, and the report as a table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog

from receiver.bench.ceiling import CEILING_MAX_ROWS
from receiver.bench.child import ReceiverChild, embedded_database, free_loopback_address
from receiver.bench.measure import GOAL_RATIO, GOAL_SPANS_PER_SECOND, BenchConfig, measure
from receiver.errors import ProdSentinelError
from receiver.settings import Settings, normalise_database_url

log = structlog.get_logger(__name__)

DEFAULT_RECEIVER_COMMAND = (sys.executable, "-m", "receiver.cli", "serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `prodsentinel bench`."""
    defaults = BenchConfig()
    parser.add_argument(
        "--address",
        help="host:port of a running receiver that writes to DATABASE_URL "
        "(default: start one in a child process)",
    )
    parser.add_argument(
        "--receiver-pid",
        type=int,
        action="append",
        default=[],
        help="pid of an --address receiver process, to report its CPU (repeatable)",
    )
    parser.add_argument(
        "--receivers",
        type=_positive_int,
        default=1,
        help="receiver processes to start, sharing one port (SO_REUSEPORT); default 1",
    )
    parser.add_argument(
        "--receiver-command",
        type=shlex.split,
        help="command running a receiver in the foreground that reads DATABASE_URL and "
        "PRODSENTINEL_GRPC_ADDRESS; its pid is measured, so exec, do not wrap "
        f"(default: {shlex.join(DEFAULT_RECEIVER_COMMAND)})",
    )
    parser.add_argument(
        "--spans-per-request", type=_positive_int, default=defaults.spans_per_request
    )
    parser.add_argument("--concurrency", type=_positive_int, default=defaults.concurrency)
    parser.add_argument(
        "--duration", type=_positive_float, default=defaults.duration, help="seconds to measure"
    )
    parser.add_argument("--requests", type=_positive_int, help="stop after this many requests")
    parser.add_argument(
        "--warmup", type=float, default=defaults.warmup, help="seconds of load before measuring"
    )
    parser.add_argument(
        "--ceiling-rows",
        type=_positive_int,
        help=f"rows for the COPY ceiling (default: as many as end to end, at most {CEILING_MAX_ROWS})",
    )
    parser.add_argument(
        "--ceiling-batch-rows",
        type=_positive_int,
        help="rows per ceiling COPY (default: the receiver's mean rows per commit in this run)",
    )
    parser.add_argument(
        "--ceiling-connections",
        type=_positive_int,
        help="connections for the ceiling COPY (default: receivers x PRODSENTINEL_WRITER_CONNECTIONS)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`prodsentinel bench`: 0, or 1 when acknowledged rows are missing from the database."""
    if args.address and settings.database_url is None:
        raise ProdSentinelError("bench: --address needs DATABASE_URL, that receiver's database")
    if args.ceiling_connections is None:  # as many connections as the receivers had in all
        processes = len(args.receiver_pid) if args.address else args.receivers
        args.ceiling_connections = max(1, processes) * settings.writer_connections
    config = BenchConfig.from_args(args)
    with contextlib.ExitStack() as cleanup:
        database_url = settings.database_url or embedded_database(cleanup)
        address, pids = args.address, list(args.receiver_pid)
        if not address:
            address = free_loopback_address()
            command = args.receiver_command or DEFAULT_RECEIVER_COMMAND
            env = {**os.environ, "DATABASE_URL": database_url, "PRODSENTINEL_GRPC_ADDRESS": address}
            if args.receiver_command is None:  # run the receiver code this bench comes from
                source = str(Path(__file__).resolve().parents[2])  # holds receiver/
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
            for _ in range(args.receivers):
                log_file, log_name = tempfile.mkstemp(prefix="prodsentinel-bench-", suffix=".log")
                os.close(log_file)
                child = ReceiverChild(command, env, Path(log_name))
                cleanup.callback(child.stop)
                log.info("bench_receiver", pid=child.pid, command=shlex.join(command), log=log_name)
                asyncio.run(child.wait_serving())
                pids.append(child.pid)
        dsn = normalise_database_url(database_url, driver="asyncpg")
        report = asyncio.run(measure(address, dsn, config, settings, receiver_pids=pids))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["stored_rows"] >= report["expected_rows"] else 1


def format_report(report: dict[str, Any]) -> str:
    """The human table."""
    machine, load, e2e = report["machine"], report["load"], report["end_to_end"]
    ceiling, receiver, commits = report["ceiling"], report["receiver"], report["commits"]
    ratio = report["ratio"]
    met = e2e["spans_per_s"] >= GOAL_SPANS_PER_SECOND and (ratio or 0) >= GOAL_RATIO

    def us(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.1f} µs"

    errors = ", ".join(f"{name} {count}" for name, count in load["errors"].items())
    lines = [
        ("machine", f"{machine['cpus']} CPUs, {machine['cpu_model']}; {machine['postgres']}"),
        ("tenant", report["tenant"]),
        (
            "receiver",
            f"{receiver['address']} pids {receiver['pids'] or 'n/a'}, writer_connections "
            f"{receiver['writer_connections']}, batch_max_rows {receiver['batch_max_rows']}",
        ),
        (
            "load",
            f"{load['spans_per_request']} spans/request, concurrency {load['concurrency']}, "
            f"{e2e['wall_s']:.1f} s: {load['requests_ok']:,} requests OK, "
            f"{load['requests_failed']:,} failed" + (f" ({errors})" if errors else ""),
        ),
        ("end to end", f"{e2e['spans_per_s']:,} spans/s ({e2e['acknowledged_spans']:,} spans)"),
        ("latency", f"p50 {e2e['latency_p50_ms']:.1f} ms, p99 {e2e['latency_p99_ms']:.1f} ms"),
        (
            "CPU per span",
            f"receiver {us(e2e['receiver_cpu_us_per_span'])}, "
            f"PostgreSQL {us(e2e['postgres_cpu_us_per_span'])}, "
            f"load generator {us(e2e['load_generator_cpu_us_per_span'])}",
        ),
        ("WAL per span", f"{e2e['wal_bytes_per_span']:,} bytes (whole server)"),
        (
            "machine load",
            f"{e2e['machine_busy_cores']} cores busy, of which other programs "
            f"{e2e['other_cores'] if e2e['other_cores'] is not None else 'n/a'}",
        ),
        ("commits", f"{commits['transactions']:,}, mean {commits['mean_rows']:,.0f} rows"),
        (
            "ceiling",
            f"{ceiling['rows_per_s']:,} rows/s ({ceiling['rows']:,} rows, "
            f"{ceiling['connections']} connections, {ceiling['batch_rows']:,} rows a COPY; "
            f"CPU per row: client {us(ceiling['client_cpu_us_per_row'])}, "
            f"PostgreSQL {us(ceiling['postgres_cpu_us_per_row'])}; "
            f"WAL {ceiling['wal_bytes_per_row']:,} bytes)",
        ),
        ("ratio", "n/a" if ratio is None else f"{ratio:.2f} of the ceiling"),
        (
            "goal",
            f">= {GOAL_SPANS_PER_SECOND:,} spans/s and >= {GOAL_RATIO} of the ceiling: "
            + ("met" if met else "NOT met"),
        ),
        (
            "stored",
            f"{report['stored_rows']:,} rows for the tenant, {report['expected_rows']:,} expected",
        ),
    ]
    return "\n".join(f"{label:<13} {value}" for label, value in lines)
