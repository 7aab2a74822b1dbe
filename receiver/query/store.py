"""Trace and log queries (asyncpg): the SQL of GetTrace, FindTraces and SearchLogs.

GetTrace has no time range: `tenant_id = $1 AND trace_id = $2` is answered by each daily
partition's `spans_identity` index (tenant_id, trace_id, ...), one probe per partition.

FindTraces reads the spans of the window newest first along a (tenant, [service,]
start_time) index, in chunks, checks the other filters on each span read, and collects
distinct trace ids until the page is full: a page costs about the spans it reads, never
the whole window. One call reads at most MAX_EXAMINED_ROWS spans, and starts no new
chunk after READ_SECONDS, then returns what it has with a token to continue from there
(a page can be short, or empty, and still have a next page): a filter that matches
nothing cannot walk 7 days of spans, and a slow database shortens pages, not answers. Traces are
ordered by their newest matching span; the page token is that span's (start_time,
trace_id) key, and a trace met again on a later page is recognised by having a matching
span at or above the key (it was returned then), so no trace is returned twice.
SearchLogs reads log records the same way, along (tenant, [service,] time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from receiver.query.pagination import LogCursor, TraceCursor
from receiver.query.sql import (
    STATUS_ERROR,
    WhereBuilder,
    database_errors,
    datetime_to_us,
    examine,
    us_to_datetime,
)
from receiver.query.validation import LogSearch, TraceSearch

MAX_TRACE_SPANS = 10_000
MAX_TRACE_LOGS = 10_000
MAX_EXAMINED_ROWS = 50_000  # spans (or log records) one FindTraces (SearchLogs) call reads
READ_SECONDS = 0.1  # ... and for about how long: no further chunk is started after this
FIRST_CHUNK = 256
MAX_CHUNK = 4_096

_TAIL = (
    "resource, resource_dropped_attributes_count, resource_schema_url, scope_name, "
    "scope_version, scope_attributes, scope_dropped_attributes_count, scope_schema_url"
)
SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, service_name, name, kind, start_time_unix_nano, "
    "end_time_unix_nano, status_code, status_message, trace_state, flags, attributes, "
    "dropped_attributes_count, events, dropped_events_count, links, dropped_links_count, " + _TAIL
)
LOG_COLUMNS = (
    "trace_id, span_id, service_name, time, time_unix_nano, observed_time_unix_nano, "
    "severity_number, severity_text, body, attributes, dropped_attributes_count, flags, "
    "event_name, signal_id, " + _TAIL
)
_LOG_NANOS = "(CASE WHEN time_unix_nano <> 0 THEN time_unix_nano ELSE observed_time_unix_nano END)"
_LOG_ORDER = "time DESC, time_unix_nano DESC, signal_id DESC"

_SUMMARY = """
SELECT trace_id,
       count(*) AS span_count,
       count(*) FILTER (WHERE status_code = $3) AS error_count,
       min(start_time_unix_nano) AS start_ns,
       max(end_time_unix_nano) AS end_ns,
       array_agg(DISTINCT service_name ORDER BY service_name) AS services,
       (array_agg(service_name ORDER BY parent_span_id IS NOT NULL, start_time_unix_nano, span_id))[1]
           AS root_service,
       (array_agg(name ORDER BY parent_span_id IS NOT NULL, start_time_unix_nano, span_id))[1]
           AS root_name
FROM spans WHERE tenant_id = $1 AND trace_id = ANY($2::bytea[])
GROUP BY trace_id
"""

Record = asyncpg.Record


class ReadBudget:
    """How much one FindTraces / SearchLogs call may read: rows, and time."""

    def __init__(self, rows: int, seconds: float) -> None:
        self.rows, self.seconds = rows, seconds
        self._read, self._deadline = 0, 0.0

    def start(self) -> ReadBudget:
        """A fresh copy for one call, its clock started."""
        budget = ReadBudget(self.rows, self.seconds)
        budget._deadline = time.monotonic() + self.seconds
        return budget

    def chunk(self, wanted: int) -> int:
        """The size of the next chunk: at most MAX_CHUNK and what is left of the rows."""
        return max(1, min(wanted, MAX_CHUNK, self.rows - self._read))

    def spent(self, examined: int) -> bool:
        """Count `examined` rows; True when no further chunk may be read."""
        self._read += examined
        return self._read >= self.rows or time.monotonic() >= self._deadline


class TraceStore:
    """Reads spans and logs of one tenant at a time from a plain asyncpg pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        max_examined_rows: int = MAX_EXAMINED_ROWS,
        read_seconds: float = READ_SECONDS,
    ) -> None:
        self._pool = pool
        self._budget = ReadBudget(max_examined_rows, read_seconds)

    async def trace(self, tenant: str, trace_id: bytes) -> tuple[list[Record], list[Record]]:
        """The trace's spans and log records (each list at most its limit + 1 long); the
        two queries run at once, on two connections."""
        async with database_errors():
            spans, logs = await asyncio.gather(
                self._trace_spans(tenant, trace_id), self._trace_logs(tenant, trace_id)
            )
        return spans, logs

    async def _trace_spans(self, tenant: str, trace_id: bytes) -> list[Record]:
        select = f"SELECT {SPAN_COLUMNS} FROM spans WHERE tenant_id = $1 AND trace_id = $2"
        async with self._pool.acquire() as connection:
            # Unordered: sorting a thousand wide rows costs more than the lookup; only
            # an oversized trace needs its earliest spans chosen.
            spans = await connection.fetch(
                f"{select} LIMIT $3", tenant, trace_id, MAX_TRACE_SPANS + 1
            )
            if len(spans) > MAX_TRACE_SPANS:
                spans = await connection.fetch(
                    f"{select} ORDER BY start_time_unix_nano, span_id LIMIT $3",
                    tenant,
                    trace_id,
                    MAX_TRACE_SPANS + 1,
                )
        return list(spans)

    async def _trace_logs(self, tenant: str, trace_id: bytes) -> list[Record]:
        async with self._pool.acquire() as connection:
            return list(
                await connection.fetch(
                    f"SELECT {LOG_COLUMNS} FROM logs WHERE tenant_id = $1 AND trace_id = $2 "
                    "ORDER BY time, time_unix_nano, signal_id LIMIT $3",
                    tenant,
                    trace_id,
                    MAX_TRACE_LOGS + 1,
                )
            )

    async def find_traces(
        self, tenant: str, search: TraceSearch, after: TraceCursor | None
    ) -> tuple[list[Record], TraceCursor | None]:
        """One page of trace summaries (rows of _SUMMARY, in page order) and the next cursor."""
        async with database_errors(), self._pool.acquire() as connection:
            found, following = await _find_trace_ids(
                connection, tenant, search, after, self._budget
            )
            if not found:
                return [], following
            rows = await connection.fetch(_SUMMARY, tenant, found, STATUS_ERROR)
        order = {trace_id: index for index, trace_id in enumerate(found)}
        return sorted(rows, key=lambda row: order[row["trace_id"]]), following

    async def search_logs(
        self, tenant: str, search: LogSearch, after: LogCursor | None
    ) -> tuple[list[Record], LogCursor | None]:
        """One page of log rows, newest first, and the next cursor (see find_traces for
        the bound on rows read)."""
        found: list[Record] = []
        budget = self._budget.start()
        position, chunk = after, budget.chunk(max(FIRST_CHUNK, search.page_size + 1))
        async with database_errors(), self._pool.acquire() as connection:
            while True:
                where, hits = _log_filters(tenant, search, position)
                rows = await examine(
                    connection,
                    columns=LOG_COLUMNS,
                    table="logs",
                    where=where,
                    hits=hits,
                    order=_LOG_ORDER,
                    limit=chunk,
                )
                found += [row for row in rows if row["hit"]]
                if len(found) > search.page_size:
                    return found[: search.page_size], _log_cursor(found[search.page_size - 1])
                examined = rows[-1]["examined"] if rows else 0
                if examined < chunk:
                    return found, None
                position = _log_cursor(rows[-1])
                if budget.spent(examined):
                    return found, position
                chunk = budget.chunk(chunk * 4)


def _log_cursor(row: Record) -> LogCursor:
    return LogCursor(datetime_to_us(row["time"]), row["time_unix_nano"], str(row["signal_id"]))


def _log_filters(
    tenant: str, search: LogSearch, position: LogCursor | None
) -> tuple[WhereBuilder, WhereBuilder]:
    """(index conditions, conditions checked on each row read)."""
    where = WhereBuilder(tenant)
    where.window(search.window, "time", _LOG_NANOS)
    if search.service is not None:
        where.add("service_name = {}", search.service)
    if search.trace_id is not None:
        where.add("trace_id = {}", search.trace_id)
    if position is not None:
        at = us_to_datetime(position.time_us)
        where.add(
            "time <= {} AND (time, time_unix_nano, signal_id) < ({}, {}, {}::uuid)",
            at,
            at,
            position.time_ns,
            position.signal_id,
        )
    hits = where.per_row()
    if search.min_severity:
        hits.add("severity_number >= {}", search.min_severity)
    if search.body_contains is not None:
        hits.add("strpos(body #>> '{{}}', {}) > 0", search.body_contains)
    hits.attributes(search.attributes, "attributes", "resource")
    return where, hits


def _span_filters(
    tenant: str, search: TraceSearch, position: TraceCursor | None = None
) -> tuple[WhereBuilder, WhereBuilder]:
    """(index conditions, conditions checked on each span read)."""
    where = WhereBuilder(tenant)
    where.window(search.window, "start_time", "start_time_unix_nano")
    if search.service is not None:
        where.add("service_name = {}", search.service)
    if position is not None:
        at = us_to_datetime(position.time_us)
        where.add(
            "start_time <= {} AND (start_time < {} OR trace_id < {})",
            at,
            at,
            position.trace_id,
        )
    hits = where.per_row()
    if search.operation is not None:
        hits.add("name = {}", search.operation)
    if search.min_duration_ns is not None:
        hits.add("end_time_unix_nano - start_time_unix_nano >= {}", search.min_duration_ns)
    if search.max_duration_ns is not None:
        hits.add("end_time_unix_nano - start_time_unix_nano <= {}", search.max_duration_ns)
    if search.errors_only:
        hits.add("status_code = {}", STATUS_ERROR)
    hits.attributes(search.attributes, "attributes", "resource")
    return where, hits


async def _find_trace_ids(
    connection: Any, tenant: str, search: TraceSearch, after: TraceCursor | None, budget: ReadBudget
) -> tuple[list[bytes], TraceCursor | None]:
    """Distinct trace ids by newest matching span, after `after`, within `budget`; see the
    module docstring."""
    found: list[tuple[bytes, int]] = []
    seen: set[bytes] = set()
    budget = budget.start()
    position, chunk = after, budget.chunk(FIRST_CHUNK)
    while True:
        where, hits = _span_filters(tenant, search, position)
        rows = await examine(
            connection,
            columns="trace_id, start_time",
            table="spans",
            where=where,
            hits=hits,
            order="start_time DESC, trace_id DESC",
            limit=chunk,
        )
        fresh: list[tuple[bytes, int]] = []
        for row in rows:
            trace_id = row["trace_id"]
            if row["hit"] and trace_id not in seen:
                seen.add(trace_id)
                fresh.append((trace_id, datetime_to_us(row["start_time"])))
        if after is not None and fresh:
            returned = await _returned_before(connection, tenant, search, after, fresh)
            fresh = [item for item in fresh if item[0] not in returned]
        found.extend(fresh)
        if len(found) > search.page_size:
            last_id, last_us = found[search.page_size - 1]
            page = [trace_id for trace_id, _ in found[: search.page_size]]
            return page, TraceCursor(last_us, last_id)
        examined = rows[-1]["examined"] if rows else 0
        if examined < chunk:
            return [trace_id for trace_id, _ in found], None
        position = TraceCursor(datetime_to_us(rows[-1]["start_time"]), rows[-1]["trace_id"])
        if budget.spent(examined):
            return [trace_id for trace_id, _ in found], position
        chunk = budget.chunk(chunk * 4)


async def _returned_before(
    connection: Any,
    tenant: str,
    search: TraceSearch,
    after: TraceCursor,
    candidates: list[tuple[bytes, int]],
) -> set[bytes]:
    """The candidates with a matching span at or above the cursor key: earlier pages
    returned them (the cursor's own trace included)."""
    where, hits = _span_filters(tenant, search)
    where.clauses += hits.clauses
    at = us_to_datetime(after.time_us)
    where.add("trace_id = ANY({}::bytea[])", [trace_id for trace_id, _ in candidates])
    where.add("start_time >= {} AND (start_time > {} OR trace_id >= {})", at, at, after.trace_id)
    rows = await connection.fetch(
        f"SELECT DISTINCT trace_id FROM spans WHERE {where.sql}", *where.params
    )
    return {row["trace_id"] for row in rows}
