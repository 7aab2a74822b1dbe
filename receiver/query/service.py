"""The QueryService gRPC servicer: tenant, validate, query, assemble, errors -> statuses.

Thin by design: validation.py turns requests into query values, store.py / catalog.py
run the SQL, otlp_assembly.py / aggregation.py shape the answers. Errors are ours
(receiver.errors) and become rich statuses: INVALID_ARGUMENT with a BadRequest naming
the field, NOT_FOUND for an unknown trace, UNAVAILABLE with RetryInfo when the database
is unreachable, DEADLINE_EXCEEDED when a statement hit the server's statement timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import grpc
import orjson
import structlog

from prodsentinel.v1 import query_pb2, query_pb2_grpc
from receiver.errors import NotFoundError
from receiver.query import pagination, validation
from receiver.query.aggregation import aggregate, check_aggregation
from receiver.query.catalog import CatalogStore
from receiver.query.otlp_assembly import (
    fill_attributes,
    logs_to_logs_data,
    spans_to_traces_data,
    trace_summary,
)
from receiver.query.pagination import LogCursor, NameCursor, OffsetCursor, TraceCursor
from receiver.query.store import MAX_TRACE_LOGS, MAX_TRACE_SPANS, TraceStore
from receiver.rpc import serve_rpc
from receiver.settings import Settings

log = structlog.get_logger(__name__)

QUERY_SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


class TraceNotFoundError(NotFoundError):
    """The caller's tenant has no span of this trace."""


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    """Serves QueryService from the signal tables, scoped to the caller's tenant."""

    def __init__(
        self, pool: asyncpg.Pool, tenant_header: str, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._traces = TraceStore(pool)
        self._catalog = CatalogStore(pool)
        self._tenant_header = tenant_header
        self._clock = clock

    async def _serve(
        self,
        rpc: str,
        handler: Callable[[str, Req], Awaitable[Resp]],
        request: Req,
        context: Context,
    ) -> Resp:
        return await serve_rpc("query", rpc, self._tenant_header, handler, request, context)

    async def GetTrace(
        self, request: query_pb2.GetTraceRequest, context: Context
    ) -> query_pb2.GetTraceResponse:
        return await self._serve("GetTrace", self._get_trace, request, context)

    async def FindTraces(
        self, request: query_pb2.FindTracesRequest, context: Context
    ) -> query_pb2.FindTracesResponse:
        return await self._serve("FindTraces", self._find_traces, request, context)

    async def SearchLogs(
        self, request: query_pb2.SearchLogsRequest, context: Context
    ) -> query_pb2.SearchLogsResponse:
        return await self._serve("SearchLogs", self._search_logs, request, context)

    async def QueryMetrics(
        self, request: query_pb2.QueryMetricsRequest, context: Context
    ) -> query_pb2.QueryMetricsResponse:
        return await self._serve("QueryMetrics", self._query_metrics, request, context)

    async def GetServices(
        self, request: query_pb2.GetServicesRequest, context: Context
    ) -> query_pb2.GetServicesResponse:
        return await self._serve("GetServices", self._get_services, request, context)

    async def GetOperations(
        self, request: query_pb2.GetOperationsRequest, context: Context
    ) -> query_pb2.GetOperationsResponse:
        return await self._serve("GetOperations", self._get_operations, request, context)

    async def _get_trace(
        self, tenant: str, request: query_pb2.GetTraceRequest
    ) -> query_pb2.GetTraceResponse:
        trace_id = validation.parse_trace_id(request.trace_id)
        spans, logs = await self._traces.trace(tenant, trace_id)
        if not spans:
            raise TraceNotFoundError(f"trace {trace_id.hex()} not found")
        response = query_pb2.GetTraceResponse(
            spans_truncated=len(spans) > MAX_TRACE_SPANS, logs_truncated=len(logs) > MAX_TRACE_LOGS
        )
        spans_to_traces_data(spans[:MAX_TRACE_SPANS], response.trace)
        logs_to_logs_data(logs[:MAX_TRACE_LOGS], response.logs)
        return response

    async def _find_traces(
        self, tenant: str, request: query_pb2.FindTracesRequest
    ) -> query_pb2.FindTracesResponse:
        search = validation.find_traces(request)
        fingerprint = pagination.fingerprint(request)
        after = pagination.decode(request.page_token, TraceCursor, fingerprint)
        rows, following = await self._traces.find_traces(tenant, search, after)
        return query_pb2.FindTracesResponse(
            traces=[trace_summary(row) for row in rows],
            next_page_token=pagination.encode(following, fingerprint) if following else "",
        )

    async def _search_logs(
        self, tenant: str, request: query_pb2.SearchLogsRequest
    ) -> query_pb2.SearchLogsResponse:
        search = validation.search_logs(request)
        fingerprint = pagination.fingerprint(request)
        after = pagination.decode(request.page_token, LogCursor, fingerprint)
        rows, following = await self._traces.search_logs(tenant, search, after)
        response = query_pb2.SearchLogsResponse(
            next_page_token=pagination.encode(following, fingerprint) if following else ""
        )
        logs_to_logs_data(rows, response.logs, keep_order=True)
        return response

    async def _query_metrics(
        self, tenant: str, request: query_pb2.QueryMetricsRequest
    ) -> query_pb2.QueryMetricsResponse:
        query = validation.query_metrics(request)
        fingerprint = pagination.fingerprint(request)
        after = pagination.decode(request.page_token, OffsetCursor, fingerprint)
        offset = after.offset if after is not None else 0
        kind = await self._catalog.metric_kind(tenant, query)
        if kind is None:
            return query_pb2.QueryMetricsResponse()
        check_aggregation(kind.metric_type, kind.is_monotonic, query.aggregation)
        rows = await self._catalog.metric_points(tenant, query, kind.metric_type)
        # CPU-bound on up to MAX_METRIC_POINTS points: off the event loop
        series = await asyncio.to_thread(aggregate, rows, query, kind.metric_type)
        page = series[offset : offset + query.page_size]
        response = query_pb2.QueryMetricsResponse(metric_type=kind.metric_type, unit=kind.unit)
        for item in page:
            out = response.series.add(service_name=item.service_name)
            fill_attributes(dict(sorted(orjson.loads(item.attributes).items())), out.attributes)
            for time_ns, value in item.points:
                point = out.points.add(value=value)
                point.time.FromNanoseconds(time_ns)
        if offset + query.page_size < len(series):
            response.next_page_token = pagination.encode(
                OffsetCursor(offset + query.page_size), fingerprint
            )
        return response

    async def _get_services(
        self, tenant: str, request: query_pb2.GetServicesRequest
    ) -> query_pb2.GetServicesResponse:
        query = validation.get_services(request, self._clock())
        fingerprint = pagination.fingerprint(request)
        after = pagination.decode(request.page_token, NameCursor, fingerprint)
        names = await self._catalog.services(tenant, query, after.name if after is not None else "")
        page = names[: query.page_size]
        following = NameCursor(page[-1]) if len(names) > query.page_size else None
        return query_pb2.GetServicesResponse(
            services=page,
            next_page_token=pagination.encode(following, fingerprint) if following else "",
        )

    async def _get_operations(
        self, tenant: str, request: query_pb2.GetOperationsRequest
    ) -> query_pb2.GetOperationsResponse:
        query = validation.get_operations(request, self._clock())
        fingerprint = pagination.fingerprint(request)
        after = pagination.decode(request.page_token, NameCursor, fingerprint)
        position = (after.name, after.kind) if after is not None else ("", -1)
        pairs = await self._catalog.operations(tenant, query, position)
        page = pairs[: query.page_size]
        following = NameCursor(*page[-1]) if len(pairs) > query.page_size else None
        return query_pb2.GetOperationsResponse(
            operations=[query_pb2.Operation(name=name, span_kind=kind) for name, kind in page],  # type: ignore[arg-type]
            next_page_token=pagination.encode(following, fingerprint) if following else "",
        )


def add_query_service(server: grpc.aio.Server, pool: asyncpg.Pool, settings: Settings) -> str:
    """Serve QueryService on `server` from `pool` (a plain read pool, see
    receiver.query.sql.create_query_pool); return its full name for reflection and health."""
    query_pb2_grpc.add_QueryServiceServicer_to_server(
        QueryServicer(pool, settings.tenant_header), server
    )
    return QUERY_SERVICE
