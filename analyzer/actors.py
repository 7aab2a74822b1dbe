"""Dramatiq actors: decode the message, call the grouping code, write. Thin on purpose.

Each Worker owns one `WorkerRuntime`: an event loop in a thread of its own and an asyncpg
pool bound to that loop, both created when the worker boots and closed when it shuts down
(seed 001: a global async engine shared across event loops broke workers). Worker threads
run their coroutines on that loop and wait; a time limit interrupts the wait and cancels
the coroutine, which rolls its transaction back.

Actors are idempotent (an occurrence's unique key makes a redelivered message a no-op),
retry transient database errors with exponential backoff, and have time limits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import dramatiq
import structlog
from dramatiq.asyncio import EventLoopThread
from dramatiq.middleware import Middleware, TimeLimitExceeded

from analyzer import grouping, sweeper
from analyzer.actions import auto_resolve_quiet
from analyzer.broker import marks_client
from analyzer.config import AnalyzerConfig
from analyzer.severity import load_rules
from analyzer.triage.runner import Tier2Runner
from analyzer.triage.tier2 import LLMConfig
from receiver.database import CONNECTION_ERRORS

log = structlog.get_logger(__name__)
T = TypeVar("T")

ANALYZE_TRACE = "analyze_trace"
ANALYZE_LOGS = "analyze_logs"
SWEEP = "sweep_unassigned_errors"
AUTO_RESOLVE = "auto_resolve_incidents"
LOG_SINCE_MARGIN_US = 60_000_000
TIME_LIMIT_GRACE_SECONDS = 5.0  # Dramatiq's hard limit, past the loop's own timeout

# Retry policy as data: SQLSTATE classes worth retrying (serialization/deadlock, lock
# timeouts, out of resources, operator intervention, system errors, connection).
RETRYABLE_SQLSTATE_PREFIXES = ("40", "53", "55P03", "57", "58", "08")
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, TimeLimitExceeded)


def is_transient(error: BaseException) -> bool:
    """True for errors that the same message can get past later (database down or busy)."""
    if isinstance(error, RETRYABLE_ERRORS):
        return True
    if isinstance(error, asyncpg.PostgresError):
        return str(getattr(error, "sqlstate", "") or "").startswith(RETRYABLE_SQLSTATE_PREFIXES)
    return False


def retry_policy(max_retries: int) -> Callable[[int, BaseException], bool]:
    """Dramatiq's `retry_when`: transient errors only, at most `max_retries` times."""

    def should_retry(retries: int, error: BaseException) -> bool:
        return retries < max_retries and is_transient(error)

    return should_retry


class WorkerRuntime(Middleware):
    """The event loop and database pool of one Worker, for exactly the worker's lifetime."""

    def __init__(self, dsn: str, pool_size: int, time_limit: float) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._time_limit = time_limit
        self._loop: EventLoopThread | None = None
        self._pool: asyncpg.Pool | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop = EventLoopThread(logging.getLogger("analyzer.runtime"))
        loop.start(timeout=5.0)
        self._loop = loop
        self._pool = loop.run_coroutine(self._create_pool())

    async def _create_pool(self) -> asyncpg.Pool:
        # On the runtime's loop, which the pool is bound to. min_size=0: the worker boots
        # even while the database is down (actors retry).
        pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._pool_size,
            command_timeout=self._time_limit,
            max_inactive_connection_lifetime=60.0,
        )
        assert pool is not None
        return pool

    @property
    def running(self) -> bool:
        return self._pool is not None

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop, pool = self._loop, self._pool
        self._loop = self._pool = None
        if loop is None:
            return
        if pool is not None:
            try:
                loop.run_coroutine(asyncio.wait_for(pool.close(), 10.0))
            except Exception:
                log.exception("pool_close_failed")
                pool.terminate()
        loop.stop()  # type: ignore[no-untyped-call]

    def run(self, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """Run `work(pool)` on the runtime's loop from a worker thread; return its result."""
        if self._loop is None or self._pool is None:
            raise RuntimeError("the worker runtime is not running (worker not booted)")
        pool = self._pool

        async def bounded() -> T:
            # The time limit is enforced here first, so the work is cancelled on its own loop
            # (transactions roll back); Dramatiq's TimeLimit is the backstop.
            async with asyncio.timeout(self._time_limit):
                return await work(pool)

        return self._loop.run_coroutine(bounded())


class IncidentActors:
    """The analyzer's actors, declared on a given broker (receivers only send to them)."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        config: AnalyzerConfig,
        dsn: str | None = None,
        llm: LLMConfig | None = None,
    ) -> None:
        self.config = config
        # Tier-2 triage, only with a provider configured (PRODSENTINEL_LLM_*); its budget,
        # cache and incident locks live in the marks Redis, shared by the whole fleet.
        self.tier2 = None
        if llm is not None and llm.enabled:
            marks = (
                marks_client(config, config.redis_timeout_seconds)
                if config.marks_redis_url is not None
                else None
            )
            self.tier2 = Tier2Runner.from_config(llm, marks, config.namespace)
        self.broker = broker
        self.rules = load_rules(config.rules_file)
        self.runtime: WorkerRuntime | None = None
        if dsn is not None:
            self.runtime = WorkerRuntime(
                dsn, config.database_pool_size, config.actor_time_limit_seconds
            )
            broker.add_middleware(self.runtime)
        options: dict[str, Any] = {
            "broker": broker,
            "queue_name": config.queue_name,
            "time_limit": int((config.actor_time_limit_seconds + TIME_LIMIT_GRACE_SECONDS) * 1000),
            "retry_when": retry_policy(config.max_retries),
            "min_backoff": int(config.min_backoff_seconds * 1000),
            "max_backoff": int(config.max_backoff_seconds * 1000),
        }
        self.analyze_trace = dramatiq.actor(actor_name=ANALYZE_TRACE, **options)(
            self._analyze_trace
        )
        self.analyze_logs = dramatiq.actor(actor_name=ANALYZE_LOGS, **options)(self._analyze_logs)
        self.sweep = dramatiq.actor(actor_name=SWEEP, **options)(self._sweep)
        self.auto_resolve = dramatiq.actor(actor_name=AUTO_RESOLVE, **options)(self._auto_resolve)

    def _run(self, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        if self.runtime is None:
            raise RuntimeError("these actors were declared without a database (send-only)")
        return self.runtime.run(work)

    def _analyze_trace(self, tenant: str, trace_hex: str) -> None:
        trace_id = bytes.fromhex(trace_hex)

        async def work(pool: asyncpg.Pool) -> grouping.Outcome:
            async with pool.acquire() as conn:
                return await grouping.record_trace(
                    conn, tenant, trace_id, self.rules, self.config.max_trace_spans, self.tier2
                )

        outcome = self._run(work)
        log.info("trace_analysed", tenant=tenant, trace_id=trace_hex, outcome=outcome.value)

    def _analyze_logs(self, tenant: str, fingerprint: str | None, since_us: int) -> None:
        # A minute before the earliest log the trigger saw: logs of one burst are all seen.
        since = min(since_us, grouping.now_us()) - LOG_SINCE_MARGIN_US

        async def work(pool: asyncpg.Pool) -> list[grouping.Outcome]:
            async with pool.acquire() as conn:
                return await grouping.record_traceless_logs(
                    conn, tenant, fingerprint, since, self.rules, self.config.sweep_batch
                )

        outcomes = self._run(work)
        recorded = sum(o is not grouping.Outcome.ALREADY_RECORDED for o in outcomes)
        log.info("logs_analysed", tenant=tenant, fingerprint=fingerprint, recorded=recorded)

    def _sweep(self) -> None:
        def schedule(traces: list[tuple[str, bytes]], logs: list[tuple[str, str, int]]) -> None:
            for tenant, trace_id in traces:
                self.analyze_trace.send(tenant, trace_id.hex())
            for tenant, fingerprint, since_us in logs:
                self.analyze_logs.send(tenant, fingerprint, since_us)

        async def work(pool: asyncpg.Pool) -> int:
            return await sweeper.sweep(pool, self.config, schedule)

        self._run(work)

    def _auto_resolve(self) -> None:
        quiet = self.config.auto_resolve_after_seconds

        async def work(pool: asyncpg.Pool) -> int:
            return await auto_resolve_quiet(pool, quiet)

        self._run(work)
