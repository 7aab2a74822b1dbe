"""OTLP Export handlers: validate, map, hand to the sink, turn errors into gRPC statuses.

No SQL here. Bad items are answered with partial success (rejected count and the first
problems); truncation by attribute limits is a partial-success warning (rejected 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from receiver.errors import InvalidRequestError, ProdSentinelError, to_grpc_status
from receiver.mapping.common import Mapped
from receiver.mapping.logs import logs_to_rows
from receiver.mapping.metrics import metrics_to_rows
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits
from receiver.writer import SignalSink

log = structlog.get_logger(__name__)

TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
LOGS_SERVICE = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name
METRICS_SERVICE = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name
OTLP_SERVICES = (TRACE_SERVICE, LOGS_SERVICE, METRICS_SERVICE)

DEFAULT_TENANT = "default"
MAX_TENANT_LENGTH = 128

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def tenant_of(context: grpc.aio.ServicerContext[Any, Any], header: str) -> str:
    """The request's tenant: the tenant header's value, or `default` when absent."""
    for key, value in context.invocation_metadata() or ():
        if key == header:
            tenant = value if isinstance(value, str) else value.decode("utf-8", "replace")
            if not tenant or len(tenant) > MAX_TENANT_LENGTH or not tenant.isprintable():
                raise InvalidRequestError(
                    header, f"tenant must be 1-{MAX_TENANT_LENGTH} printable characters"
                )
            return tenant
    return DEFAULT_TENANT


class _Exporter(Generic[Req, Resp]):
    """One signal's Export: the mapping, the table and the response type differ, nothing else."""

    def __init__(
        self,
        signal: str,
        service: str,
        parse: Callable[[bytes], Req],
        table: str,
        mapper: Callable[[Req, str, Limits], Mapped[Any]],
        respond: Callable[[int, str], Resp],
        sink: SignalSink,
        limits: Limits,
        tenant_header: str,
    ) -> None:
        self._signal = signal
        self._service = service
        self._parse = parse
        self._table = table
        self._mapper = mapper
        self._respond = respond
        self._sink = sink
        self._limits = limits
        self._tenant_header = tenant_header

    def handler(self, serialize: Callable[[Resp], bytes]) -> grpc.GenericRpcHandler:
        """The Export method, taking raw bytes so a malformed request is INVALID_ARGUMENT."""
        return grpc.method_handlers_generic_handler(
            self._service,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self.export, response_serializer=serialize
                )
            },
        )

    async def export(self, payload: bytes, context: grpc.aio.ServicerContext[bytes, Resp]) -> Resp:
        started = time.perf_counter()
        try:
            tenant = tenant_of(context, self._tenant_header)
            try:
                request = self._parse(payload)
            except DecodeError as error:
                raise InvalidRequestError(
                    "request", f"not a valid {self._signal} export: {error}"
                ) from None
            mapped = self._mapper(request, tenant, self._limits)
            await self._sink.write(self._table, mapped.rows)
        except ProdSentinelError as error:
            log.warning("export_failed", signal=self._signal, error=str(error))
            await context.abort_with_status(to_grpc_status(error))
            raise  # unreachable: abort_with_status raises
        message = mapped.error_message()
        fields = {
            "signal": self._signal,
            "tenant": tenant,
            "items": len(mapped.rows),
            "rejected": mapped.rejected,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if message:
            log.info("export_partial", **fields, error_message=message)
        else:
            log.debug("export", **fields)
        return self._respond(mapped.rejected, message)


def _trace_response(rejected: int, message: str) -> trace_service_pb2.ExportTraceServiceResponse:
    response = trace_service_pb2.ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response


def _logs_response(rejected: int, message: str) -> logs_service_pb2.ExportLogsServiceResponse:
    response = logs_service_pb2.ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return response


def _metrics_response(
    rejected: int, message: str
) -> metrics_service_pb2.ExportMetricsServiceResponse:
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = message
    return response


def otlp_handlers(
    sink: SignalSink, limits: Limits, tenant_header: str
) -> list[grpc.GenericRpcHandler]:
    """gRPC handlers for the three OTLP Export services, all writing to `sink`."""
    traces = _Exporter(
        "traces",
        TRACE_SERVICE,
        trace_service_pb2.ExportTraceServiceRequest.FromString,
        "spans",
        spans_to_rows,
        _trace_response,
        sink,
        limits,
        tenant_header,
    )
    logs = _Exporter(
        "logs",
        LOGS_SERVICE,
        logs_service_pb2.ExportLogsServiceRequest.FromString,
        "logs",
        logs_to_rows,
        _logs_response,
        sink,
        limits,
        tenant_header,
    )
    metrics = _Exporter(
        "metrics",
        METRICS_SERVICE,
        metrics_service_pb2.ExportMetricsServiceRequest.FromString,
        "metric_points",
        metrics_to_rows,
        _metrics_response,
        sink,
        limits,
        tenant_header,
    )
    return [
        traces.handler(trace_service_pb2.ExportTraceServiceResponse.SerializeToString),
        logs.handler(logs_service_pb2.ExportLogsServiceResponse.SerializeToString),
        metrics.handler(metrics_service_pb2.ExportMetricsServiceResponse.SerializeToString),
    ]
