"""The ServiceGraphService gRPC servicer: tenant, validate, query, convert, statuses.

Thin by design: messages.py validates and converts, store.py / traversal.py /
services.py run the SQL. Errors become rich statuses: INVALID_ARGUMENT with a BadRequest
naming the field, NOT_FOUND for a service the tenant does not have, UNAVAILABLE with
RetryInfo when the database is unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import grpc
import structlog

from analyzer.graph import messages, store
from analyzer.graph.services import update_metadata
from analyzer.graph.traversal import reached_names, traverse
from prodsentinel.v1 import graph_pb2, graph_pb2_grpc
from receiver.errors import NotFoundError
from receiver.rpc import serve_rpc

log = structlog.get_logger(__name__)

GRAPH_SERVICE = graph_pb2.DESCRIPTOR.services_by_name["ServiceGraphService"].full_name

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


class ServiceNotFoundError(NotFoundError):
    """The caller's tenant has no service of this name."""


class GraphServicer(graph_pb2_grpc.ServiceGraphServiceServicer):
    """Serves ServiceGraphService from the graph tables, scoped to the caller's tenant."""

    def __init__(
        self, pool: asyncpg.Pool, tenant_header: str, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._pool = pool
        self._tenant_header = tenant_header
        self._clock = clock

    async def _serve(
        self,
        rpc: str,
        handler: Callable[[str, Req], Awaitable[Resp]],
        request: Req,
        context: Context,
    ) -> Resp:
        async def in_store(tenant: str, request: Req) -> Resp:
            async with store.database_errors():
                return await handler(tenant, request)

        return await serve_rpc("graph", rpc, self._tenant_header, in_store, request, context)

    async def GetServiceGraph(
        self, request: graph_pb2.GetServiceGraphRequest, context: Context
    ) -> graph_pb2.GetServiceGraphResponse:
        return await self._serve("GetServiceGraph", self._graph, request, context)

    async def TraverseDependencies(
        self, request: graph_pb2.TraverseDependenciesRequest, context: Context
    ) -> graph_pb2.TraverseDependenciesResponse:
        return await self._serve("TraverseDependencies", self._traverse, request, context)

    async def ListDependencyCycles(
        self, request: graph_pb2.ListDependencyCyclesRequest, context: Context
    ) -> graph_pb2.ListDependencyCyclesResponse:
        return await self._serve("ListDependencyCycles", self._cycles, request, context)

    async def UpdateService(
        self, request: graph_pb2.UpdateServiceRequest, context: Context
    ) -> graph_pb2.UpdateServiceResponse:
        return await self._serve("UpdateService", self._update, request, context)

    async def _graph(
        self, tenant: str, request: graph_pb2.GetServiceGraphRequest
    ) -> graph_pb2.GetServiceGraphResponse:
        start, end = messages.time_range(request, self._clock() // 1000)
        start -= start % 3_600_000_000  # the stats are hourly
        async with self._pool.acquire() as conn:
            services, edges, truncated = await store.service_graph(conn, tenant, start, end)
        return graph_pb2.GetServiceGraphResponse(
            services=[messages.service_node(record) for record in services],
            dependencies=[messages.dependency(edge) for edge in edges],
            start_time=messages.timestamp(start),
            end_time=messages.timestamp(end),
            truncated=truncated,
        )

    async def _traverse(
        self, tenant: str, request: graph_pb2.TraverseDependenciesRequest
    ) -> graph_pb2.TraverseDependenciesResponse:
        query = messages.traversal(request)
        async with self._pool.acquire() as conn:
            reached = await traverse(
                conn, tenant, query.service, query.direction, query.max_depth, query.include_stale
            )
            if reached is None:
                raise ServiceNotFoundError(f"service {query.service!r} not found")
            names = [query.service, *reached_names(reached)]
            records = {r.name: r for r in await store.services_named(conn, tenant, names)}
            edges = await store.edges_among(conn, tenant, names, query.include_stale)
        return graph_pb2.TraverseDependenciesResponse(
            service=messages.service_node(records[query.service]),
            reached=[messages.reached_service(item, records[item.name]) for item in reached],
            dependencies=[messages.dependency(edge) for edge in edges],
        )

    async def _cycles(
        self, tenant: str, request: graph_pb2.ListDependencyCyclesRequest
    ) -> graph_pb2.ListDependencyCyclesResponse:
        async with self._pool.acquire() as conn:
            alerts = await store.list_cycles(conn, tenant, request.include_resolved)
        return graph_pb2.ListDependencyCyclesResponse(
            cycles=[messages.dependency_cycle(alert) for alert in alerts]
        )

    async def _update(
        self, tenant: str, request: graph_pb2.UpdateServiceRequest
    ) -> graph_pb2.UpdateServiceResponse:
        update = messages.metadata_update(request)
        async with self._pool.acquire() as conn:
            record = await update_metadata(
                conn,
                tenant,
                update.service,
                team=update.team,
                criticality=update.criticality,
                description=update.description,
            )
        if record is None:
            raise ServiceNotFoundError(f"service {update.service!r} not found")
        log.info("service_updated", tenant=tenant, service=update.service)
        return graph_pb2.UpdateServiceResponse(service=messages.service_node(record))


def add_graph_service(server: grpc.aio.Server, pool: asyncpg.Pool, settings: Any) -> str:
    """Serve ServiceGraphService on `server` from `pool`; return its full name for
    reflection and health. Any asyncpg pool works (the SQL does not depend on codecs)."""
    graph_pb2_grpc.add_ServiceGraphServiceServicer_to_server(
        GraphServicer(pool, settings.tenant_header), server
    )
    return GRAPH_SERVICE
