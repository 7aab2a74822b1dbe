"""Receivers and PostgreSQL that the bench starts for itself when not given an address."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import structlog
from grpc_health.v1 import health_pb2

from receiver.errors import ProdSentinelError

log = structlog.get_logger(__name__)

HEALTH_METHOD = "/grpc.health.v1.Health/Check"
EMBEDDED_DATABASE = "prodsentinel_bench"
CHILD_START_TIMEOUT_SECONDS = 60.0
CHILD_STOP_TIMEOUT_SECONDS = 20.0


def free_loopback_address() -> str:
    """A loopback host:port that is free now, for a receiver to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


class ReceiverChild:
    """A receiver in a child process, its output in a log file."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.address = env["PRODSENTINEL_GRPC_ADDRESS"]
        self.log_path = log_path
        with log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                list(command),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C is ours; stop() ends it
            )

    @property
    def pid(self) -> int:
        return self._process.pid

    async def wait_serving(self, within: float = CHILD_START_TIMEOUT_SECONDS) -> None:
        """Return once its health service answers SERVING (it reaches the database)."""
        deadline = time.monotonic() + within
        request = health_pb2.HealthCheckRequest().SerializeToString()
        async with grpc.aio.insecure_channel(self.address) as channel:
            check: Any = channel.unary_unary(HEALTH_METHOD)
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ProdSentinelError(
                        f"bench: receiver exited with code {self._process.returncode}:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    answer = health_pb2.HealthCheckResponse.FromString(
                        await check(request, timeout=1.0)
                    )
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.1)
        raise ProdSentinelError(
            f"bench: receiver not serving after {within:g} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop it; its log is kept only when it had exited by itself."""
        if self._process.poll() is not None:
            log.warning("bench_receiver_exited", pid=self.pid, log=str(self.log_path))
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(CHILD_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self.log_path.unlink(missing_ok=True)

    def log_tail(self, limit: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        return ""


def embedded_database(cleanup: contextlib.ExitStack) -> str:
    """A migrated database on an embedded PostgreSQL in a temporary directory."""
    from receiver import migrations
    from receiver.embedded import start_postgres

    data_dir = Path(tempfile.mkdtemp(prefix="prodsentinel-bench-"))
    cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
    postgres = start_postgres(data_dir)
    cleanup.callback(postgres.stop)
    postgres.create_database(EMBEDDED_DATABASE)
    url = postgres.dsn(EMBEDDED_DATABASE)
    migrations.upgrade(url)
    return url
