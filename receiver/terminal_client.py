"""What every terminal command shares: one RPC on a fresh channel, and gRPC errors printed
as one line with exit status 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import grpc

DEFAULT_ADDRESS = "localhost:4317"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 10,000-span trace or a big graph exceeds 4 MiB
TIMEOUT_SECONDS = 30.0


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help="receiver host:port")
    parser.add_argument("--tenant", default=None, help="tenant header value (default: none)")


def call(
    args: argparse.Namespace,
    tenant_header: str,
    stub_class: Callable[[grpc.Channel], Any],
    method: str,
    request: Any,
) -> Any:
    """One RPC on a fresh channel (a command makes one or a few)."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    metadata = ((tenant_header, args.tenant),) if args.tenant else ()
    with grpc.insecure_channel(args.address, options=options) as channel:
        return getattr(stub_class(channel), method)(
            request, metadata=metadata, timeout=TIMEOUT_SECONDS
        )


def guarded(body: Callable[[], None]) -> int:
    """Run a command's body; a gRPC error becomes one line on stderr and exit status 1."""
    try:
        body()
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = error.details() if isinstance(error, grpc.Call) else str(error)
        name = code.name if code is not None else "ERROR"
        print(f"prodsentinel: {name}: {details}", file=sys.stderr)
        return 1
    return 0
