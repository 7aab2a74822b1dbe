"""`prodsentinel`: up (all-in-one), serve, migrate, downgrade, bench."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

import structlog

from analyzer import terminal as incident_terminal
from analyzer.graph import terminal as graph_terminal
from analyzer.triage import demo as triage_demo
from receiver import __version__, migrations
from receiver import bench as bench_module
from receiver.errors import ProdSentinelError, SettingsError
from receiver.logging import configure_logging
from receiver.query import terminal as query_terminal
from receiver.settings import Settings

log = structlog.get_logger("prodsentinel")

EMBEDDED_DATABASE = "prodsentinel"
CHILD_STOP_SECONDS = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"prodsentinel: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        result: int = args.run(args, settings)
    except ProdSentinelError as error:
        print(f"prodsentinel: {error}", file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prodsentinel",
        description="OpenTelemetry receiver that keeps traces, logs and metrics in PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"prodsentinel {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="run everything on this machine (embedded PostgreSQL/Redis when unset)"
    )
    up.set_defaults(run=_up)

    serve = commands.add_parser("serve", help="serve OTLP/gRPC against DATABASE_URL")
    serve.set_defaults(run=_serve)
    for command in (up, serve):
        command.add_argument(
            "--processes",
            type=_positive_int,
            default=1,
            help="receiver processes sharing the port (SO_REUSEPORT); one uses one core",
        )

    migrate = commands.add_parser("migrate", help="apply database migrations (Alembic)")
    migrate.add_argument("--revision", default="heads")
    migrate.set_defaults(run=_migrate)

    downgrade = commands.add_parser("downgrade", help="revert database migrations")
    downgrade.add_argument("revision", help="target revision, e.g. base")
    downgrade.set_defaults(run=_downgrade)

    worker = commands.add_parser("worker", help="run the analysis worker (Dramatiq actors)")
    worker.set_defaults(run=_worker)

    bench = commands.add_parser("bench", help="measure ingestion throughput against a receiver")
    bench_module.add_arguments(bench)
    bench.set_defaults(run=bench_module.run)

    query_terminal.add_commands(commands)  # trace, traces, logs, services
    incident_terminal.add_commands(commands)  # incidents, incident
    graph_terminal.add_commands(commands)  # graph, graph-cycles, graph-set
    triage_demo.add_commands(commands)  # demo
    return parser


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrations.upgrade(settings.asyncpg_dsn, args.revision)
    log.info("migrated", revision=args.revision)
    return 0


def _downgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrations.downgrade(settings.asyncpg_dsn, args.revision)
    log.info("downgraded", revision=args.revision)
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    settings.asyncpg_dsn  # noqa: B018 - fails early, naming DATABASE_URL, when it is unset
    return _serve_processes(settings, args.processes)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from analyzer.worker import run_worker

    settings.asyncpg_dsn  # noqa: B018 - fails early, naming DATABASE_URL, when it is unset
    if settings.redis_url is None:
        raise SettingsError("REDIS_URL", "is required by the worker (its queue)")
    return run_worker(settings)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    """Start embedded servers for what is not configured, migrate, run a worker and serve;
    stop everything on a signal (the worker first, the embedded servers last)."""
    from analyzer.worker import start_worker_process
    from receiver.embedded import start_postgres, start_redis

    with contextlib.ExitStack() as started:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database_url, redis_url = settings.database_url, settings.redis_url
        if database_url is None:
            postgres = start_postgres(settings.data_dir)
            started.callback(postgres.stop)
            postgres.create_database(EMBEDDED_DATABASE)
            database_url = postgres.dsn(EMBEDDED_DATABASE)
            log.info("embedded_postgres_started", data_dir=str(postgres.data_dir), url=database_url)
        if redis_url is None:
            redis = start_redis(settings.data_dir)
            started.callback(redis.stop)
            redis_url = redis.url
            log.info("embedded_redis_started", url=redis_url)
        settings = dataclasses.replace(settings, database_url=database_url, redis_url=redis_url)
        migrations.upgrade(settings.asyncpg_dsn)
        log.info("migrated", revision="heads")
        worker = start_worker_process({"DATABASE_URL": database_url, "REDIS_URL": redis_url})
        started.callback(_stop_child, worker)
        log.info("worker_started", pid=worker.pid)
        status = _serve_processes(settings, args.processes)
    log.info("stopped")
    return status


def _serve_processes(settings: Settings, processes: int) -> int:
    """Serve in this process, or in `processes` child processes sharing the port."""
    if processes == 1:
        asyncio.run(_run_until_signalled(settings))
        return 0
    if settings.grpc_address.endswith(":0"):
        raise SettingsError("PRODSENTINEL_GRPC_ADDRESS", "needs a fixed port with --processes > 1")
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child_main, args=(settings,), name=f"receiver-{n}")
        for n in range(processes)
    ]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for child in children:
        child.start()
    log.info("receiver_processes_started", pids=[child.pid for child in children])
    while not stop.is_set() and all(child.is_alive() for child in children):
        stop.wait(0.5)
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(CHILD_STOP_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()
    failed = [child.name for child in children if child.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        log.error("receiver_processes_failed", processes=failed)
        return 1
    return 0


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(CHILD_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _child_main(settings: Settings) -> None:
    configure_logging(settings.log_level)
    asyncio.run(_run_until_signalled(settings))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


async def _run_until_signalled(settings: Settings) -> None:
    from receiver.app import Receiver

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    receiver = Receiver(settings)
    await receiver.start()
    log.info(
        "serving",
        otlp_grpc=settings.grpc_address,
        port=receiver.port,
        tenant_header=settings.tenant_header,
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting_down")
        await receiver.stop()


if __name__ == "__main__":
    sys.exit(main())
