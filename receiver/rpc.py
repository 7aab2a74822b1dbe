"""The one way a read API method runs: resolve the tenant, call the handler, turn errors
into gRPC statuses (receiver.errors.to_grpc_status), log the call."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from receiver.errors import InvalidRequestError, ProdSentinelError, to_grpc_status
from receiver.otlp_service import tenant_of

log = structlog.get_logger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def serve_rpc(
    api: str,
    rpc: str,
    tenant_header: str,
    handler: Callable[[str, Req], Awaitable[Resp]],
    request: Req,
    context: Any,
) -> Resp:
    """Run `handler(tenant, request)`; any ProdSentinelError ends the call with its status."""
    started = time.perf_counter()
    try:
        tenant = tenant_of(context, tenant_header)
        response = await handler(tenant, request)
    except ProdSentinelError as error:
        level = log.debug if isinstance(error, InvalidRequestError) else log.info
        level("rpc_failed", api=api, rpc=rpc, error=str(error))
        await context.abort_with_status(to_grpc_status(error))
        raise  # unreachable: abort_with_status raises
    log.debug(
        "rpc",
        api=api,
        rpc=rpc,
        tenant=tenant,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response
