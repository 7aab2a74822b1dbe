"""`prodsentinel worker`: the Dramatiq worker running the incident actors, in this process.

Besides the actors it schedules the periodic jobs: the sweeper (every
`sweep_interval_seconds`) and auto-resolve. Every worker process runs the schedule, but a
Redis mark per tick lets only one of them send each job (and the sweeper takes an advisory
lock anyway). It runs until SIGINT or SIGTERM, then lets running actors finish.

`python -m analyzer.worker` is the same entry point; `start_worker_process` starts it as a
child process (what `prodsentinel up` does, and the tests that kill workers).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence

import dramatiq
import redis
import structlog

from analyzer.actors import IncidentActors
from analyzer.broker import build_broker, marks_client
from analyzer.config import AnalyzerConfig
from analyzer.graph.config import GraphConfig
from analyzer.graph.schedule import GraphUpkeepThread
from analyzer.triage.llm_config import LLMConfig
from receiver.errors import ProdSentinelError, SettingsError
from receiver.logging import configure_logging
from receiver.settings import Settings

log = structlog.get_logger(__name__)

POLL_INTERVAL_MS = 100  # how long idle consumers wait between fetches: bounds pickup latency
STOP_TIMEOUT_MS = 30_000


@dataclasses.dataclass(frozen=True, slots=True)
class RunningWorker:
    broker: dramatiq.Broker
    actors: IncidentActors
    worker: dramatiq.Worker


class PeriodicScheduler(threading.Thread):
    """Sends the sweep and auto-resolve jobs on their intervals (once per tick fleet-wide)."""

    def __init__(self, actors: IncidentActors, marks: redis.Redis | None) -> None:
        super().__init__(name="incident-scheduler", daemon=True)
        self._actors = actors
        self._marks = marks
        self._stopping = threading.Event()
        config = actors.config
        quiet = config.auto_resolve_after_seconds
        self._jobs: list[tuple[str, float, dramatiq.Actor[[], None]]] = []
        if config.sweep_interval_seconds > 0:
            self._jobs.append(("sweep", config.sweep_interval_seconds, actors.sweep))
        if quiet > 0:
            self._jobs.append(
                ("auto-resolve", min(60.0, max(1.0, quiet / 10)), actors.auto_resolve)
            )

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        if not self._jobs:
            return
        due = dict.fromkeys((name for name, _, _ in self._jobs), 0.0)
        clock = 0.0
        step = min(interval for _, interval, _ in self._jobs)
        while not self._stopping.is_set():
            for name, interval, actor in self._jobs:
                if clock >= due[name]:
                    due[name] = clock + interval
                    self._tick(name, interval, actor)
            self._stopping.wait(step)
            clock += step

    def _tick(self, name: str, interval: float, actor: dramatiq.Actor[[], None]) -> None:
        try:
            if self._marks is not None:
                key = f"{self._actors.config.namespace}:incident-tick:{name}"
                if not self._marks.set(key, b"1", nx=True, px=max(1, int(interval * 1000))):
                    return  # another worker sent this tick's job
            actor.send()
        except Exception as error:  # Redis down: the next tick tries again
            log.warning("periodic_job_not_sent", job=name, error=str(error))


@contextlib.contextmanager
def running_worker(
    dsn: str,
    config: AnalyzerConfig,
    broker: dramatiq.Broker | None = None,
    graph: GraphConfig | None = None,
    llm: LLMConfig | None = None,
) -> Iterator[RunningWorker]:
    """Run a Dramatiq worker (and the periodic schedule) until the block exits."""
    broker = broker or build_broker(config)
    actors = IncidentActors(broker, config, dsn=dsn, llm=llm)
    worker = dramatiq.Worker(
        broker, worker_threads=config.worker_threads, worker_timeout=POLL_INTERVAL_MS
    )
    marks = marks_client(config, 2.0) if config.marks_redis_url else None
    worker.start()
    if actors.runtime is not None and not actors.runtime.running:
        # Dramatiq logs and swallows middleware failures at boot; a worker without its
        # database would fail every message, so refuse to run instead.
        worker.stop(timeout=STOP_TIMEOUT_MS)
        broker.close()
        raise ProdSentinelError("the worker could not start its event loop and database pool")
    scheduler = PeriodicScheduler(actors, marks)
    scheduler.start()
    graph_upkeep = None
    if graph is not None and graph.upkeep_interval_seconds > 0:
        graph_upkeep = GraphUpkeepThread(dsn, graph)
        graph_upkeep.start()
    log.info("worker_started", threads=config.worker_threads, queue=config.queue_name)
    try:
        yield RunningWorker(broker, actors, worker)
    finally:
        scheduler.stop()
        scheduler.join(timeout=5.0)
        if graph_upkeep is not None:
            graph_upkeep.stop()
        worker.stop(timeout=STOP_TIMEOUT_MS)
        broker.close()
        if marks is not None:
            marks.close()
        log.info("worker_stopped")


def run_worker(settings: Settings, config: AnalyzerConfig | None = None) -> int:
    """The `prodsentinel worker` command: run until SIGINT/SIGTERM."""
    config = config or AnalyzerConfig.from_settings(settings)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with running_worker(settings.asyncpg_dsn, config, graph=settings.graph, llm=settings.llm):
            stop.wait()
            log.info("worker_stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def start_worker_process(
    environ: Mapping[str, str], args: Sequence[str] = (), **popen: object
) -> subprocess.Popen[bytes]:
    """Start `python -m analyzer.worker ARGS` with `environ` (DATABASE_URL, REDIS_URL, ...).

    Stop it with SIGTERM (it finishes running actors) and wait for it.
    """
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "analyzer.worker", *args],
        env={**os.environ, **environ},
        stdin=subprocess.DEVNULL,
        **popen,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m analyzer.worker [--namespace N] [--threads N]`: settings from the environment."""
    parser = argparse.ArgumentParser(prog="python -m analyzer.worker", description=__doc__)
    parser.add_argument("--namespace", help="Redis key/queue namespace (default: prodsentinel)")
    parser.add_argument("--threads", type=int, help="worker threads")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level)
        overrides: dict[str, object] = {}
        if args.namespace:
            overrides["namespace"] = args.namespace
        if args.threads:
            overrides["worker_threads"] = overrides["database_pool_size"] = args.threads
        return run_worker(settings, AnalyzerConfig.from_settings(settings, **overrides))
    except SettingsError as error:
        print(f"prodsentinel worker: configuration error: {error}", file=sys.stderr)
        return 2
    except ProdSentinelError as error:
        print(f"prodsentinel worker: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
