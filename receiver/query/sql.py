"""What every query shares: the read pool, a WHERE builder, time bounds, database errors.

Every statement starts with `tenant_id = $1` (WhereBuilder enforces it) and every list
query has a time bound on the partition column, so PostgreSQL prunes the daily partitions
outside the window. The timestamptz columns are microseconds; the exact `*_unix_nano`
columns are compared too, so a window is honoured to the nanosecond.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog

from receiver.database import CONNECTION_ERRORS
from receiver.errors import DeadlineError, PermanentError, RetryableError
from receiver.query.validation import AttributeFilter, TimeRange

log = structlog.get_logger(__name__)

UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
STATEMENT_TIMEOUT_MS = 30_000
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR


class QueryTimeoutError(DeadlineError):
    """A statement ran past the server's statement_timeout (the same query would again)."""


async def create_query_pool(dsn: str, size: int = 4) -> asyncpg.Pool:
    """The read pool: asyncpg's default codecs, no JIT (it costs more than these short
    queries take), and a statement timeout so no query can run away."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        max_inactive_connection_lifetime=60.0,
        server_settings={
            "jit": "off",
            "statement_timeout": str(STATEMENT_TIMEOUT_MS),
            "max_parallel_workers_per_gather": "0",
        },
    )
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """asyncpg errors -> ours: unreachable is retryable, a cancelled statement is a timeout."""
    try:
        yield
    except asyncpg.QueryCanceledError as error:
        raise QueryTimeoutError(f"query took too long: {error}") from None
    except CONNECTION_ERRORS as error:
        raise RetryableError(f"database unavailable: {error}") from None
    except asyncpg.PostgresError as error:
        log.error("query_failed", sqlstate=getattr(error, "sqlstate", None), error=str(error))
        raise PermanentError(f"query failed: {error}") from None


def us_to_datetime(us: int) -> dt.datetime:
    return UNIX_EPOCH + dt.timedelta(microseconds=us)


def datetime_to_us(value: dt.datetime) -> int:
    delta = value - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def bounds(window: TimeRange) -> tuple[dt.datetime, dt.datetime]:
    """[lo, hi) on a microsecond column holding every nanosecond time of the window."""
    return us_to_datetime(window.start_ns // 1000), us_to_datetime((window.end_ns - 1) // 1000 + 1)


def day_bounds(window: TimeRange) -> tuple[dt.datetime, dt.datetime]:
    """The window widened to whole UTC days: the daily partitions it touches, entirely."""
    lo, hi = bounds(window)
    day_lo = dt.datetime.combine(lo.date(), dt.time(), tzinfo=dt.UTC)
    day_hi = dt.datetime.combine(hi.date(), dt.time(), tzinfo=dt.UTC)
    return day_lo, day_hi if day_hi == hi else day_hi + DAY


class WhereBuilder:
    """Numbered parameters and AND-ed clauses; always starts with the tenant."""

    def __init__(self, tenant: str) -> None:
        self.params: list[Any] = [tenant]
        self.clauses: list[str] = ["tenant_id = $1"]

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, clause: str, *values: Any) -> None:
        """`clause` with `{}` placeholders, one per value."""
        self.clauses.append(clause.format(*(self.param(value) for value in values)))

    def window(self, window: TimeRange, column: str, exact: str) -> None:
        """Rows in the window: `column` (timestamptz, partition key) bounds it for pruning and
        the index, `exact` (a nanosecond expression) makes it exact."""
        lo, hi = bounds(window)
        self.add(f"{column} >= {{}} AND {column} < {{}}", lo, hi)
        self.add(f"{exact} >= {{}} AND {exact} < {{}}", window.start_ns, window.end_ns)

    def attributes(self, filters: tuple[AttributeFilter, ...], *columns: str) -> None:
        """Each filter equals the value under its key in one of `columns` (JSON equality)."""
        for item in filters:
            key, value = self.param(item.key), self.param(item.value_json)
            self.clauses.append(
                "(" + " OR ".join(f"{c} -> {key}::text = {value}::jsonb" for c in columns) + ")"
            )

    def per_row(self) -> WhereBuilder:
        """Conditions that `examine` evaluates on each row read, numbered in these params."""
        other = WhereBuilder.__new__(WhereBuilder)
        other.params = self.params
        other.clauses = []
        return other

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses) or "TRUE"


async def examine(
    connection: Any,
    *,
    columns: str,
    table: str,
    where: WhereBuilder,
    hits: WhereBuilder,
    order: str,
    limit: int,
) -> list[asyncpg.Record]:
    """Read at most `limit` rows of `table` passing `where`, in `order` (an index's order,
    so the read stops there), and return those also passing `hits`, then always the last
    row read. Each row carries `hit` and `examined` (rows read), so a caller bounds what
    a query reads, not only what it returns: a filter matching nothing cannot make one
    statement walk the whole time range."""
    limit_param = where.param(limit)
    return list(
        await connection.fetch(
            "SELECT * FROM (SELECT *, count(*) OVER () AS examined, "
            f"row_number() OVER (ORDER BY {order}) AS position FROM ("
            f"SELECT {columns}, ({hits.sql}) AS hit FROM {table} WHERE {where.sql} "
            f"ORDER BY {order} LIMIT {limit_param}) AS chunk) AS numbered "
            "WHERE hit OR position = examined ORDER BY position",
            *where.params,
        )
    )
