"""The worker's periodic service-graph upkeep: a thread with its own event loop and pool.

The loop and the pool live and die with the thread (never shared across loops). Every
worker may run it: `run_graph_upkeep` takes an advisory lock, so concurrent runs skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading

import asyncpg
import structlog

from analyzer.graph.config import GraphConfig
from analyzer.graph.upkeep import run_graph_upkeep
from receiver.errors import ProdSentinelError

log = structlog.get_logger(__name__)


class GraphUpkeepThread(threading.Thread):
    """Runs `run_graph_upkeep` every `config.upkeep_interval_seconds` until stopped."""

    def __init__(self, dsn: str, config: GraphConfig) -> None:
        super().__init__(name="graph-upkeep", daemon=True)
        self._dsn = dsn
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        self._loop.run_until_complete(self._run())
        self._loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout)

    async def _run(self) -> None:
        self._stopping = asyncio.Event()
        # No client-side command timeout: the upkeep sets its own statement_timeout.
        pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=1)
        try:
            while not self._stopping.is_set():
                behind = await self._once(pool)
                if behind:
                    continue  # catching up after an outage: go again at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopping.wait(), self._config.upkeep_interval_seconds
                    )
        finally:
            await pool.close()

    async def _once(self, pool: asyncpg.Pool) -> bool:
        try:
            summary = await run_graph_upkeep(pool, dt.datetime.now(dt.UTC), self._config)
        except ProdSentinelError as error:
            log.warning("graph_upkeep_failed", error=str(error))
            return False
        return summary.behind
