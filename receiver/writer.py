"""Group-commit writer: rows from many concurrent Exports, one binary COPY per table, one commit.

Each `write()` returns only after the transaction holding its rows has committed, so an
Export is acknowledged only when its data is durable. The common path is a plain COPY;
when a retried Export brings rows that are already stored (a unique violation), the
batch is redone through a temporary table with INSERT ... ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

import asyncpg
import structlog

from receiver.database import CONNECTION_ERRORS
from receiver.errors import BackpressureError, PermanentError, RetryableError
from receiver.mapping.rows import TABLE_COLUMNS

log = structlog.get_logger(__name__)


CommittedBatch = Sequence[tuple[str, Sequence[tuple[object, ...]]]]
CommitListener = Callable[[CommittedBatch], None]


class SignalSink(Protocol):
    """Where mapped rows go; `write` returns once they are durably stored."""

    async def write(self, table: str, rows: Sequence[tuple[object, ...]]) -> None: ...


@dataclasses.dataclass(slots=True)
class _Item:
    table: str
    rows: Sequence[tuple[object, ...]]
    done: asyncio.Future[None]


@dataclasses.dataclass(frozen=True, slots=True)
class WriterConfig:
    batch_max_rows: int = 8_192
    linger_seconds: float = 0.005
    flushers: int = 2
    max_pending_rows: int = 200_000
    retry_after_seconds: float = 1.0


class GroupCommitWriter:
    """Batches rows from concurrent callers into shared COPY transactions."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: WriterConfig,
        on_unreachable: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._config = config
        self._on_unreachable = on_unreachable
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_rows = 0
        self._pending_rows = 0  # queued + being written
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = True
        self._closing = False
        self._listeners: list[CommitListener] = []

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    def set_accepting(self, accepting: bool) -> None:
        """Health monitoring flips this: while the database is unreachable, fail fast."""
        self._accepting = accepting

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener` with [(table, rows), ...] after each commit, before acknowledging.

        Listeners must not block or raise into the writer: they get committed rows and
        schedule their own work (the incident trigger does). A listener that raises is
        logged and ignored, so it can never fail an Export.
        """
        self._listeners.append(listener)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name=f"writer-flush-{n}")
            for n in range(self._config.flushers)
        ]

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def write(self, table: str, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        retry_after = self._config.retry_after_seconds
        if not self._accepting or self._closing:
            raise RetryableError("database unavailable; retry later", retry_after)
        if self._pending_rows and self._pending_rows + len(rows) > self._config.max_pending_rows:
            raise BackpressureError(
                f"{self._pending_rows} rows already pending; retry later", retry_after
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(table, rows, done))
        self._queued_rows += len(rows)
        self._pending_rows += len(rows)
        self._wakeup.set()
        # Shielded: a client that gives up still gets its rows written (a retry dedups).
        await asyncio.shield(done)

    async def _flush_loop(self) -> None:
        config = self._config
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            if config.linger_seconds and self._queued_rows < config.batch_max_rows:
                await asyncio.sleep(config.linger_seconds)  # let concurrent Exports join
            batch = self._take_batch()
            if batch:
                await self._flush(batch)

    def _take_batch(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self._queue and (
            not batch or rows + len(self._queue[0].rows) <= self._config.batch_max_rows
        ):
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item.rows)
        self._queued_rows -= rows
        return batch

    async def _flush(self, batch: list[_Item]) -> None:
        rows = sum(len(item.rows) for item in batch)
        try:
            await self._write_batch(batch)
        except CONNECTION_ERRORS as error:
            self._on_unreachable()
            _fail(
                batch,
                RetryableError(f"database unavailable: {error}", self._config.retry_after_seconds),
            )
        except asyncpg.PostgresError as error:
            if _is_transient(error):
                _fail(
                    batch,
                    RetryableError(f"database busy: {error}", self._config.retry_after_seconds),
                )
            elif len(batch) > 1:
                # Bad data we did not catch while mapping must not fail other callers' rows.
                for item in batch:
                    await self._flush_alone(item)
            else:
                log.error("write_rejected", table=batch[0].table, error=str(error))
                _fail(batch, PermanentError(f"database rejected the rows: {error}"))
        except BaseException as error:  # never leave a caller waiting forever
            _fail(
                batch, RetryableError(f"write failed: {error!r}", self._config.retry_after_seconds)
            )
            if not isinstance(error, Exception):
                raise
        else:
            self._notify(batch)
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)
        finally:
            self._pending_rows -= rows

    def _notify(self, batch: list[_Item]) -> None:
        if not self._listeners:
            return
        committed = [(item.table, item.rows) for item in batch]
        for listener in self._listeners:
            try:
                listener(committed)
            except Exception:
                log.exception("commit_listener_failed", listener=repr(listener))

    async def _flush_alone(self, item: _Item) -> None:
        self._pending_rows += len(item.rows)  # _flush subtracts them again
        await self._flush([item])

    async def _write_batch(self, batch: list[_Item]) -> None:
        by_table: dict[str, list[tuple[object, ...]]] = {}
        for item in batch:
            by_table.setdefault(item.table, []).extend(item.rows)
        async with self._pool.acquire() as connection:
            try:
                async with connection.transaction():
                    for table, rows in by_table.items():
                        await connection.copy_records_to_table(
                            table, records=rows, columns=TABLE_COLUMNS[table]
                        )
            except asyncpg.UniqueViolationError:
                # Some rows were stored before (an exporter retrying after a lost ack).
                async with connection.transaction():
                    for table, rows in by_table.items():
                        await _insert_new_only(connection, table, rows)


async def _insert_new_only(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    table: str,
    rows: list[tuple[object, ...]],
) -> None:
    columns = TABLE_COLUMNS[table]
    staging = f"incoming_{table}"
    await connection.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) "
        "ON COMMIT DELETE ROWS"
    )
    await connection.copy_records_to_table(staging, records=rows, columns=columns)
    names = ", ".join(columns)
    await connection.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING"
    )


# SQLSTATE classes worth retrying: serialization/deadlock, lock timeouts, out of
# resources, operator intervention (shutdown), and system errors.
TRANSIENT_SQLSTATE_PREFIXES = ("40", "53", "55P03", "57", "58", "08")


def _is_transient(error: asyncpg.PostgresError) -> bool:
    sqlstate = getattr(error, "sqlstate", "") or ""
    return sqlstate.startswith(TRANSIENT_SQLSTATE_PREFIXES)


def _fail(batch: list[_Item], error: Exception) -> None:
    for item in batch:
        if not item.done.done():
            item.done.set_exception(error)
