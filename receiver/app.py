"""The receiver process: gRPC server, group-commit writer, database health and partition upkeep."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import time

import asyncpg
import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from receiver.database import CONNECTION_ERRORS, create_writer_pool, is_reachable
from receiver.extensions import Extensions
from receiver.otlp_service import OTLP_SERVICES, otlp_handlers
from receiver.partitions import ensure_partitions, partitions_for
from receiver.settings import Settings
from receiver.writer import GroupCommitWriter, WriterConfig

log = structlog.get_logger(__name__)

PARTITION_UPKEEP_SECONDS = 3600.0
WRITE_TIMEOUT_SECONDS = 30.0


class Receiver:
    """Owns every long-lived resource of one receiver process; start() then stop()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port: int | None = None
        self._dsn = settings.asyncpg_dsn
        self._server: grpc.aio.Server | None = None
        self._writer: GroupCommitWriter | None = None
        self._pool: asyncpg.Pool | None = None
        self._health = HealthServicer()
        self._monitor: asyncio.Task[None] | None = None
        self._recheck = asyncio.Event()
        self._reachable: bool | None = None
        self._partitions_checked_at = float("-inf")
        self._extensions = Extensions(settings)

    @property
    def writer(self) -> GroupCommitWriter:
        assert self._writer is not None, "start() first"
        return self._writer

    async def start(self) -> int:
        """Serve on settings.grpc_address; return the bound port. The database may still be down."""
        settings = self.settings
        self._pool = await create_writer_pool(
            self._dsn, settings.writer_connections, WRITE_TIMEOUT_SECONDS
        )
        self._writer = GroupCommitWriter(
            self._pool,
            WriterConfig(
                batch_max_rows=settings.batch_max_rows,
                linger_seconds=settings.batch_linger_ms / 1000,
                flushers=settings.writer_connections,
                max_pending_rows=settings.max_pending_rows,
                retry_after_seconds=settings.retry_after_seconds,
            ),
            on_unreachable=self._recheck.set,
        )
        self._writer.set_accepting(False)  # until the first health probe succeeds
        self._writer.start()
        await self._set_health(serving=False)
        await self._check_database()
        self._monitor = asyncio.create_task(self._monitor_database(), name="database-monitor")

        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
                ("grpc.so_reuseport", 1),
            ]
        )
        server.add_generic_rpc_handlers(
            otlp_handlers(self._writer, settings.limits, settings.tenant_header)
        )
        await self._extensions.attach(server, self._writer)
        await self._set_health(serving=bool(self._reachable))  # now for every service
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                *OTLP_SERVICES,
                *self._extensions.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self.port = server.add_insecure_port(settings.grpc_address)
        await server.start()
        self._server = server
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # GC's full collections, which otherwise pause every request for tens of ms.
        gc.collect()
        gc.freeze()
        log.info("receiver_started", address=settings.grpc_address, port=self.port)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking RPCs, let in-flight Exports finish their commits, close everything."""
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        if self._writer is not None:
            await self._writer.close()
        await self._extensions.close()
        if self._pool is not None:
            await self._pool.close()
        log.info("receiver_stopped")

    async def wait_for_termination(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

    async def _monitor_database(self) -> None:
        interval = self.settings.health_check_interval_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck.wait(), interval)
            self._recheck.clear()
            await self._check_database()

    async def _check_database(self) -> None:
        reachable = await is_reachable(self._dsn, within_seconds=2.0)
        if reachable and time.monotonic() - self._partitions_checked_at > PARTITION_UPKEEP_SECONDS:
            reachable = await self._upkeep_partitions()
        if reachable != self._reachable:
            self._reachable = reachable
            self.writer.set_accepting(reachable)
            await self._set_health(serving=reachable)
            log.info("database_reachable" if reachable else "database_unreachable")

    async def _upkeep_partitions(self) -> bool:
        try:
            connection = await asyncpg.connect(self._dsn, timeout=5.0)
            try:
                created = await ensure_partitions(
                    connection,
                    partitions_for(
                        dt.datetime.now(dt.UTC).date(), self.settings.partition_days_ahead
                    ),
                )
            finally:
                await connection.close()
        except CONNECTION_ERRORS:
            return False
        except asyncpg.UndefinedTableError:
            log.error("schema_missing", hint="run `prodsentinel migrate`")
            return False
        self._partitions_checked_at = time.monotonic()
        if created:
            log.info("partitions_created", partitions=created)
        return True

    async def _set_health(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *OTLP_SERVICES, *self._extensions.service_names):
            await self._health.set(name, status)
