"""Helpers shared by tests that run `prodsentinel` as a real subprocess."""

from __future__ import annotations

import asyncio
import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_serving(port: int, process: asyncio.subprocess.Process, timeout: float = 90) -> None:
    """Follow the health service until SERVING (the process may still be starting its servers)."""
    async with asyncio.timeout(timeout):
        while process.returncode is None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    await asyncio.wait_for(channel.channel_ready(), 1.0)
                except TimeoutError:
                    continue
                stub = health_pb2_grpc.HealthStub(channel)
                async for update in stub.Watch(health_pb2.HealthCheckRequest()):
                    if update.status == health_pb2.HealthCheckResponse.SERVING:
                        return
        raise AssertionError(f"prodsentinel up exited early with {process.returncode}")
