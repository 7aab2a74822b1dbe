"""What the receiver process hosts beside OTLP ingestion: the read APIs and the incident
trigger. The composition lives here so app.py stays about ingestion, and so the
analyzer's parts are imported in one place. (Periodic analysis, such as the service
graph's upkeep, runs in the worker.)
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import grpc
import structlog

from analyzer.config import AnalyzerConfig
from analyzer.graph.service import add_graph_service
from analyzer.service import add_incident_service
from analyzer.trigger import IncidentTrigger
from receiver.query.service import add_query_service
from receiver.query.sql import create_query_pool
from receiver.settings import Settings
from receiver.writer import GroupCommitWriter

log = structlog.get_logger(__name__)

API_POOL_SIZE = 4  # GetTrace uses two connections at once

ServiceRegistrar = Callable[[grpc.aio.Server, asyncpg.Pool, Settings], str]
API_SERVICES: tuple[ServiceRegistrar, ...] = (
    add_query_service,
    add_incident_service,
    add_graph_service,
)


class Extensions:
    """Read APIs on the shared server and the incident trigger on the writer."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._api_pool: asyncpg.Pool | None = None
        self._trigger: IncidentTrigger | None = None
        self.service_names: list[str] = []

    async def attach(self, server: grpc.aio.Server, writer: GroupCommitWriter) -> None:
        settings = self._settings
        # Opens connections lazily, so this works while the database is down. No JIT,
        # no parallel workers, a statement timeout: reads must never starve ingestion.
        self._api_pool = await create_query_pool(settings.asyncpg_dsn, size=API_POOL_SIZE)
        self.service_names = [add(server, self._api_pool, settings) for add in API_SERVICES]
        if settings.redis_url is not None:
            self._trigger = IncidentTrigger(AnalyzerConfig.from_settings(settings))
            writer.add_commit_listener(self._trigger.on_commit)

    async def close(self) -> None:
        if self._trigger is not None:
            await self._trigger.close()
        if self._api_pool is not None:
            await self._api_pool.close()
