"""Concurrency and adversity: two receivers racing, Redis down during Exports, a worker killed
mid-actor. Real PostgreSQL, real Redis, real Dramatiq workers (in-process and subprocess)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import pytest
from analyzer_fixtures import *  # noqa: F403 - the fixtures
from analyzer_fixtures import (
    RestartableRedis,
    TriggerFactory,
    WorkerFactory,
    error_span,
    eventually,
    export_spans,
    trace_request,
)
from dramatiq.middleware import Middleware

from analyzer.broker import build_broker
from analyzer.config import AnalyzerConfig
from analyzer.worker import start_worker_process
from receiver.app import Receiver

ReceiverFactory = Any


class CountProcessed(Middleware):
    """Counts messages each actor processed successfully (an "analysis run")."""

    def __init__(self) -> None:
        self.processed: dict[str, int] = {}

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None:
            self.processed[message.actor_name] = self.processed.get(message.actor_name, 0) + 1


async def count(db: asyncpg.Connection, table: str, tenant: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant))


async def test_fifty_concurrent_exports_of_one_trace_on_two_receivers_analyse_once(
    make_receiver: ReceiverFactory,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    analyzer_config: AnalyzerConfig,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given two receivers, each with its own trigger, when 50 Exports of error spans of one
    trace arrive concurrently across both, then exactly one message is sent, the worker runs
    exactly one analysis, and the trace is exactly one occurrence of one incident."""
    first, second = await make_receiver(), await make_receiver()
    triggers = [await attach_trigger(first), await attach_trigger(second)]
    counter = CountProcessed()
    running = await start_worker(broker=build_broker(analyzer_config, extra_middleware=[counter]))
    trace_id = os.urandom(16)
    root = error_span(trace_id, name="POST /checkout", kind=2, message="checkout failed")
    spans = [root] + [
        error_span(trace_id, parent=root.span_id, message=f"item {n} out of stock")
        for n in range(49)
    ]
    receivers = [first, second]
    await asyncio.gather(
        *(
            export_spans(receivers[n % 2].port, tenant, trace_request("shop", [span]))
            for n, span in enumerate(spans)
        )
    )
    for trigger in triggers:
        await asyncio.wait_for(trigger.wait_idle(), 10)
    assert sum(t.sent for t in triggers) == 1
    assert sum(t.dropped for t in triggers) == 0

    async def recorded() -> bool:
        return await count(db, "incident_occurrences", tenant) >= 1

    await eventually(recorded)
    await asyncio.wait_for(asyncio.to_thread(running.worker.join), 30)
    assert counter.processed == {"analyze_trace": 1}
    assert await count(db, "incident_occurrences", tenant) == 1
    incident = await db.fetchrow(
        "SELECT occurrence_count, severity FROM incidents WHERE tenant_id = $1", tenant
    )
    assert incident is not None
    assert incident["occurrence_count"] == 1
    assert incident["severity"] == "high"  # the error reached the root span


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A Redis this test may stop and start again on the same port."""
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_exports_succeed_while_redis_is_down_and_the_sweeper_catches_up(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    analyzer_config: AnalyzerConfig,
    own_redis: RestartableRedis,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given Redis stopped, Exports of error traces still succeed at once and nothing is
    scheduled; when Redis is back, the sweeper finds the traces and the incident is created."""
    config = dataclasses.replace(
        analyzer_config,
        broker_url=own_redis.url,
        marks_redis_url=own_redis.url,
        sweep_interval_seconds=0.3,
        sweep_min_age_seconds=0.2,
    )
    trigger = await attach_trigger(receiver, config)
    own_redis.stop()
    durations = []
    for n in range(3):
        span = error_span(
            os.urandom(16), exception_type="ConnectionReset", message=f"peer {n} reset"
        )
        started = time.monotonic()
        response = await export_spans(receiver.port, tenant, trace_request("gateway", [span]))
        durations.append(time.monotonic() - started)
        assert not response.HasField("partial_success")
    assert max(durations) < 1.0, durations
    await asyncio.wait_for(trigger.wait_idle(), 10)
    assert (trigger.sent, trigger.dropped) == (0, 3)
    assert await count(db, "spans", tenant) == 3
    assert await count(db, "incidents", tenant) == 0

    own_redis.start()
    await start_worker(config)

    async def three() -> bool:
        return await count(db, "incident_occurrences", tenant) == 3

    await eventually(three)
    assert await count(db, "incidents", tenant) == 1


async def test_a_worker_killed_mid_actor_is_finished_by_another_without_duplicates(
    receiver: Receiver,
    attach_trigger: TriggerFactory,
    start_worker: WorkerFactory,
    analyzer_config: AnalyzerConfig,
    database_url: str,
    db: asyncpg.Connection,
    tenant: str,
) -> None:
    """Given a worker process inside the analysis transaction (held at its incident insert by
    a lock), when it is SIGKILLed, then another worker gets the unacked message after the dead
    worker's heartbeat times out and records the occurrence exactly once."""
    await attach_trigger(receiver)
    assert analyzer_config.broker_url is not None
    lock = await asyncpg.connect(database_url)
    transaction = lock.transaction()
    await transaction.start()
    await lock.execute("LOCK TABLE incidents IN SHARE ROW EXCLUSIVE MODE")
    process = start_worker_process(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": analyzer_config.broker_url,
            "LOG_LEVEL": "WARNING",
        },
        ["--namespace", analyzer_config.namespace, "--threads", "1"],
    )
    try:
        span = error_span(os.urandom(16), exception_type="OOMKilled", message="container 7 killed")
        await export_spans(receiver.port, tenant, trace_request("jobs", [span]))

        async def worker_waits_on_the_lock() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO incidents%'"
                )
            )

        await eventually(worker_waits_on_the_lock)
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
    finally:
        if process.poll() is None:
            process.kill()
        await transaction.rollback()
        await lock.close()
    assert await count(db, "incident_occurrences", tenant) == 0

    await start_worker(
        broker=build_broker(
            analyzer_config, heartbeat_timeout_ms=1000, maintenance_chance=1_000_000
        )
    )

    async def recorded() -> bool:
        return await count(db, "incident_occurrences", tenant) == 1

    await eventually(recorded)
    await asyncio.sleep(0)  # let the test's own loop breathe before the final reads
    incident = await db.fetchrow(
        "SELECT id, occurrence_count FROM incidents WHERE tenant_id = $1", tenant
    )
    assert incident is not None
    assert incident["occurrence_count"] == 1
    events = await db.fetchval(
        "SELECT count(*) FROM incident_events WHERE incident_id = $1", incident["id"]
    )
    assert events == 2  # opened, and its first severity: nothing recorded twice
