"""Actors on Dramatiq's StubBroker (unit tier), with a real database: idempotence, retries of
transient database errors, time limits; plus the retry policy, broker and config builders."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import asyncpg
import dramatiq
import pytest
from analyzer_fixtures import error_span, eventually, export_spans, trace_request
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, TimeLimitExceeded

from analyzer.actors import IncidentActors, is_transient, retry_policy
from analyzer.broker import broker_kind, build_broker
from analyzer.config import AnalyzerConfig
from receiver.app import Receiver
from receiver.errors import SettingsError
from receiver.settings import Settings


class Outcomes(Middleware):
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.done = 0

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None:
            self.done += 1
        else:
            self.errors.append(type(exception).__name__)


def config(**overrides: Any) -> AnalyzerConfig:
    base = AnalyzerConfig(
        broker_url="redis://unused",
        worker_threads=1,
        database_pool_size=2,
        min_backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )
    return dataclasses.replace(base, **overrides)


def stub_worker(
    cfg: AnalyzerConfig, dsn: str
) -> tuple[StubBroker, IncidentActors, Outcomes, dramatiq.Worker]:
    outcomes = Outcomes()
    broker = StubBroker()
    broker.add_middleware(outcomes)
    actors = IncidentActors(broker, cfg, dsn=dsn)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    return broker, actors, outcomes, worker


async def stored_error_trace(receiver: Receiver, tenant: str) -> bytes:
    trace_id = os.urandom(16)
    await export_spans(receiver.port or 0, tenant, trace_request("svc", [error_span(trace_id)]))
    return trace_id


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (TimeLimitExceeded(), True),
        (asyncpg.DeadlockDetectedError(""), True),
        (asyncpg.SerializationError(""), True),
        (asyncpg.UniqueViolationError(""), False),
        (ValueError(), False),
    ],
)
def test_retry_policy_is_transient_errors_only(error: BaseException, transient: bool) -> None:
    """Connection, timeout, time-limit, deadlock and serialization errors retry (up to the
    maximum); data and programming errors do not."""
    assert is_transient(error) is transient
    policy = retry_policy(3)
    assert policy(0, error) is transient
    assert policy(3, error) is False


async def test_actor_records_once_even_when_the_message_is_redelivered(
    receiver: Receiver, database_url: str, db: asyncpg.Connection, tenant: str
) -> None:
    """Sending analyze_trace twice for one trace records one occurrence and one history."""
    trace_id = await stored_error_trace(receiver, tenant)
    broker, actors, outcomes, worker = stub_worker(config(), database_url)
    try:
        for _ in range(2):
            actors.analyze_trace.send(tenant, trace_id.hex())
            await asyncio.to_thread(broker.join, actors.config.queue_name, fail_fast=True)
            await asyncio.to_thread(worker.join)
    finally:
        await asyncio.to_thread(worker.stop)
    assert outcomes.done == 2
    assert (
        await db.fetchval("SELECT count(*) FROM incident_occurrences WHERE tenant_id = $1", tenant)
        == 1
    )
    assert (
        await db.fetchval("SELECT count(*) FROM incident_events WHERE tenant_id = $1", tenant) == 2
    )


async def test_transient_database_errors_are_retried_with_backoff_then_dead_lettered(
    tenant: str,
) -> None:
    """With the database unreachable, the message is tried 1 + max_retries times, then
    dead-lettered (the sweeper will pick its trace up later)."""
    broker, actors, outcomes, worker = stub_worker(
        config(max_retries=2), "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    )
    try:
        actors.analyze_trace.send(tenant, os.urandom(16).hex())

        async def dead() -> bool:
            return len(broker.dead_letters) == 1

        await eventually(dead)
    finally:
        await asyncio.to_thread(worker.stop)
    assert len(outcomes.errors) == 3
    assert all(name in {"ConnectionRefusedError", "OSError"} for name in outcomes.errors), (
        outcomes.errors
    )


async def test_time_limit_interrupts_a_stuck_actor_and_the_retry_finishes(
    receiver: Receiver, database_url: str, db: asyncpg.Connection, tenant: str
) -> None:
    """An analysis stuck on a lock past its time limit is cancelled (its transaction rolled
    back) and retried as transient; once the lock is gone a retry records the occurrence once."""
    trace_id = await stored_error_trace(receiver, tenant)
    lock = await asyncpg.connect(database_url)
    transaction = lock.transaction()
    await transaction.start()
    await lock.execute("LOCK TABLE incidents IN SHARE ROW EXCLUSIVE MODE")
    _broker, actors, outcomes, worker = stub_worker(
        config(actor_time_limit_seconds=0.3, max_retries=50), database_url
    )
    try:
        actors.analyze_trace.send(tenant, trace_id.hex())

        async def interrupted() -> bool:
            return "TimeoutError" in outcomes.errors

        await eventually(interrupted)
        await transaction.rollback()

        async def recorded() -> bool:
            return outcomes.done == 1

        await eventually(recorded)
    finally:
        await lock.close()
        await asyncio.to_thread(worker.stop)
    assert (
        await db.fetchval("SELECT count(*) FROM incident_occurrences WHERE tenant_id = $1", tenant)
        == 1
    )


def test_send_only_actors_refuse_to_run() -> None:
    """Actors declared without a database (as receivers declare them) cannot run by accident."""
    actors = IncidentActors(StubBroker(), config())
    with pytest.raises(RuntimeError, match="send-only"):
        actors.analyze_trace("t", "00" * 16)


def test_broker_kinds_and_config_from_settings() -> None:
    """redis:// -> Redis broker; amqp:// -> RabbitMQ (or a clear error without pika); marks
    default to REDIS_URL only when it is a Redis URL."""
    assert broker_kind("redis://h:6379/0") == "redis"
    assert broker_kind("amqp://guest@h//") == "rabbitmq"
    with pytest.raises(SettingsError):
        broker_kind("http://h")
    redis_config = AnalyzerConfig.from_settings(Settings(redis_url="redis://h:1/0"))
    assert (redis_config.broker_url, redis_config.marks_redis_url) == (
        "redis://h:1/0",
        "redis://h:1/0",
    )
    amqp_config = AnalyzerConfig.from_settings(Settings(redis_url="amqp://h//"))
    assert amqp_config.marks_redis_url is None
    try:
        import pika  # noqa: F401
    except ImportError:
        with pytest.raises(SettingsError, match="rabbitmq"):
            build_broker(amqp_config)
    else:
        assert type(build_broker(amqp_config)).__name__ == "RabbitmqBroker"
    with pytest.raises(SettingsError, match="REDIS_URL"):
        build_broker(AnalyzerConfig())
    with pytest.raises(SettingsError, match="SETTLE"):
        AnalyzerConfig(settle_seconds=-1)
