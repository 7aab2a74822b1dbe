"""Group-commit writer against real PostgreSQL: durability, dedup, isolation, back-pressure."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from receiver.database import create_writer_pool
from receiver.errors import BackpressureError, PermanentError, RetryableError
from receiver.mapping.rows import unix_nano_to_pg_us
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits
from receiver.writer import GroupCommitWriter, WriterConfig

START_NS = 1_795_000_000_123_456_789


def span_request(count: int) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    trace_id = os.urandom(16)
    for n in range(count):
        spans.add(
            trace_id=trace_id,
            span_id=os.urandom(8),
            name=f"op-{n}",
            start_time_unix_nano=START_NS,
            end_time_unix_nano=START_NS + 1000,
        )
    return request


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_writer_pool(database_url, size=2, command_timeout=30)
    yield pool
    await pool.close()


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for a condition of the system under test, with a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


async def test_write_returns_after_commit(
    pool: asyncpg.Pool, db: asyncpg.Connection, tenant: str
) -> None:
    """When write() returns, another connection already sees the rows (they are committed)."""
    writer = GroupCommitWriter(pool, WriterConfig(linger_seconds=0))
    writer.start()
    rows = spans_to_rows(span_request(5), tenant, Limits()).rows
    await writer.write("spans", rows)
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 5
    await writer.close()


async def test_concurrent_writes_share_a_commit(
    pool: asyncpg.Pool, db: asyncpg.Connection, tenant: str
) -> None:
    """Many concurrent callers are served by fewer transactions than callers (group commit)."""
    writer = GroupCommitWriter(pool, WriterConfig(linger_seconds=0.02, flushers=1))
    writer.start()
    before = await db.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    await asyncio.gather(
        *(
            writer.write("spans", spans_to_rows(span_request(3), tenant, Limits()).rows)
            for _ in range(20)
        )
    )
    after = await db.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    await writer.close()
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 60
    # pg_stat counters are flushed lazily; at most they must show far fewer commits than callers.
    assert after - before < 20


async def test_already_stored_rows_fall_back_to_insert_new_only(
    pool: asyncpg.Pool, db: asyncpg.Connection, tenant: str
) -> None:
    """A batch mixing stored rows (a retry) with new ones stores the new ones once, no error."""
    writer = GroupCommitWriter(pool, WriterConfig(linger_seconds=0))
    writer.start()
    first = spans_to_rows(span_request(4), tenant, Limits()).rows
    second = spans_to_rows(span_request(3), tenant, Limits()).rows
    await writer.write("spans", first)
    await writer.write("spans", first + second + second[:1])
    await writer.close()
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 7


async def test_bad_rows_fail_alone(pool: asyncpg.Pool, db: asyncpg.Connection, tenant: str) -> None:
    """Rows the database refuses fail only their own caller; a batch-mate's rows are stored."""
    writer = GroupCommitWriter(pool, WriterConfig(linger_seconds=0.05, flushers=1))
    writer.start()
    good = spans_to_rows(span_request(2), tenant, Limits()).rows
    # A metric_type outside the CHECK constraint: mapping never makes one, the database refuses it.
    us = unix_nano_to_pg_us(START_NS)
    bad_point = (
        tenant,
        os.urandom(16),
        None,
        "svc",
        us,
        START_NS,
        0,
        "m",
        "",
        "",
        "bogus",
        0,
        None,
        1.0,
        None,
        None,
        b"[]",
        b"{}",
        0,
        b"{}",
        0,
        "",
        "",
        "",
        b"{}",
        0,
        "",
    )
    results = await asyncio.gather(
        writer.write("spans", good),
        writer.write("metric_points", [bad_point]),
        return_exceptions=True,
    )
    await writer.close()
    assert results[0] is None
    assert isinstance(results[1], PermanentError)
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 2
    assert await db.fetchval("SELECT count(*) FROM metric_points WHERE tenant_id = $1", tenant) == 0


async def test_not_accepting_fails_fast(pool: asyncpg.Pool, tenant: str) -> None:
    """While the database is known to be unreachable, writes fail at once as retryable."""
    writer = GroupCommitWriter(pool, WriterConfig(retry_after_seconds=0.7))
    writer.start()
    writer.set_accepting(False)
    with pytest.raises(RetryableError) as raised:
        await writer.write("spans", spans_to_rows(span_request(1), tenant, Limits()).rows)
    assert raised.value.retry_after_seconds == 0.7
    await writer.close()


async def test_pending_bound_answers_resource_exhausted(
    make_receiver, database_url: str, db: asyncpg.Connection, tenant: str
) -> None:
    """Over the pending-rows bound an Export gets RESOURCE_EXHAUSTED with RetryInfo; memory stays bounded."""
    receiver = await make_receiver(PRODSENTINEL_MAX_PENDING_ROWS=10, PRODSENTINEL_BATCH_LINGER_MS=0)
    blocker = await asyncpg.connect(database_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # the COPY now waits
    metadata = (("x-scope-orgid", tenant),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        first = asyncio.ensure_future(stub.Export(span_request(8), metadata=metadata))
        await until(lambda: receiver.writer.pending_rows == 8)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Export(span_request(8), metadata=metadata)
        await transaction.rollback()
        await blocker.close()
        await first
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _retry_delay(raised.value) == pytest.approx(0.2)
    assert await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == 8


async def test_unreachable_database_answers_unavailable(make_receiver, tenant: str) -> None:
    """With no database, Export answers UNAVAILABLE with a RetryInfo delay, so exporters retry."""
    receiver = await make_receiver(database_url="postgresql://postgres@127.0.0.1:1/none")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Export(span_request(1), metadata=(("x-scope-orgid", tenant),))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _retry_delay(raised.value) == pytest.approx(0.2)


def test_backpressure_is_retryable() -> None:
    """RESOURCE_EXHAUSTED from back-pressure is a retryable kind of error."""
    assert issubclass(BackpressureError, RetryableError)


def _retry_delay(error: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    raise AssertionError("no RetryInfo in the status details")


async def test_commit_listeners_see_committed_rows_and_cannot_fail_writes(
    pool: asyncpg.Pool, db: asyncpg.Connection, tenant: str
) -> None:
    """A listener gets each committed batch (rows already visible); one that raises fails nothing."""
    writer = GroupCommitWriter(pool, WriterConfig(linger_seconds=0))
    seen: list[tuple[str, int, int]] = []

    async def visible() -> int:
        return int(await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant))

    def listener(batch) -> None:  # type: ignore[no-untyped-def]
        for table, rows in batch:
            seen.append((table, len(rows), 0))

    def broken(batch) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("listener bug")

    writer.add_commit_listener(broken)
    writer.add_commit_listener(listener)
    writer.start()
    await writer.write("spans", spans_to_rows(span_request(3), tenant, Limits()).rows)
    await writer.close()
    assert seen == [("spans", 3, 0)]
    assert await visible() == 3
