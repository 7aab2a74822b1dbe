"""The read budget of FindTraces and SearchLogs: one call reads a bounded number of rows,
so a filter that matches nothing (or little) costs a bounded amount per page, and the
pages still find everything, once.

Driven at the store level (TraceStore with a small budget) on the real database, with
data ingested through the receiver.
"""

from __future__ import annotations

import os
import time

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from test_query_server import SECOND, any_value, export_logs, export_spans, kv, simple_spans

from receiver.query.pagination import LogCursor, TraceCursor
from receiver.query.sql import create_query_pool
from receiver.query.store import MAX_CHUNK, ReadBudget, TraceStore
from receiver.query.validation import (
    LogSearch,
    TimeRange,
    TraceSearch,
    attribute_filters,
)

BUDGET = 10
MINUTE = 60 * SECOND


@pytest.fixture
async def store(database_url):
    pool = await create_query_pool(database_url, size=1)
    try:
        yield TraceStore(pool, max_examined_rows=BUDGET, read_seconds=60.0)
    finally:
        await pool.close()


async def test_trace_pages_read_at_most_the_budget(receiver, store, tenant) -> None:
    """35 single-span traces, of which only the two oldest match: each call reads at
    most 10 spans, so the first pages are empty but carry a token, and following the
    tokens returns the two matches exactly once, then no token."""
    base = time.time_ns() - 30 * MINUTE
    ids = [os.urandom(16) for _ in range(35)]
    await export_spans(
        receiver.port,
        tenant,
        simple_spans(
            [
                {"service": "s", "name": "op", "trace_id": trace_id, "start": base + n * SECOND,
                 "attributes": {"wanted": n < 2}}
                for n, trace_id in enumerate(ids)
            ]
        ),
    )  # fmt: skip
    search = TraceSearch(
        window=TimeRange(base, base + 10 * MINUTE),
        service=None,
        operation=None,
        attributes=attribute_filters([kv("wanted", True)]),
        min_duration_ns=None,
        max_duration_ns=None,
        errors_only=False,
        page_size=5,
    )
    pages: list[list[bytes]] = []
    cursor: TraceCursor | None = None
    while True:
        rows, cursor = await store.find_traces(tenant, search, cursor)
        pages.append([row["trace_id"] for row in rows])
        if cursor is None:
            break
    assert pages[:3] == [[], [], []]  # 30 non-matching spans, 10 per call
    assert [trace_id for page in pages for trace_id in page] == [ids[1], ids[0]]
    assert len(pages) == 4


async def test_log_pages_read_at_most_the_budget(receiver, store, tenant) -> None:
    """25 records, of which the oldest three contain the text: pages of at most 10 rows
    read, the matches newest first, each once."""
    base = time.time_ns() - 30 * MINUTE
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for n in range(25):
        records.add(
            time_unix_nano=base + n * SECOND, body=any_value(f"{'needle' if n < 3 else 'hay'} {n}")
        )
    await export_logs(receiver.port, tenant, request)
    search = LogSearch(
        window=TimeRange(base, base + MINUTE),
        service=None,
        min_severity=0,
        trace_id=None,
        body_contains="needle",
        attributes=(),
        page_size=2,
    )
    bodies: list[list[str]] = []
    cursor: LogCursor | None = None
    while True:
        rows, cursor = await store.search_logs(tenant, search, cursor)
        bodies.append([row["body"] for row in rows])
        if cursor is None:
            break
    assert bodies[:2] == [[], []]
    assert [body for page in bodies for body in page] == ['"needle 2"', '"needle 1"', '"needle 0"']


def test_budget_bounds_rows_and_time() -> None:
    """A call's budget hands out chunks up to MAX_CHUNK and what is left of the rows, and
    is spent by rows read or, whatever the rows, once its time is up."""
    budget = ReadBudget(rows=5000, seconds=60.0).start()
    assert budget.chunk(10**6) == MAX_CHUNK
    assert not budget.spent(MAX_CHUNK)
    assert budget.chunk(10**6) == 5000 - MAX_CHUNK
    assert budget.spent(5000 - MAX_CHUNK)
    timed_out = ReadBudget(rows=10**9, seconds=0.0).start()
    assert timed_out.spent(1)
