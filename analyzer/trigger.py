"""The trigger: after each commit, schedule the analysis of every trace that has errors.

Registered with `GroupCommitWriter.add_commit_listener`. For each (tenant, trace_id) with
an error in a committed batch, one Redis `SET NX` with a TTL marks the trace as scheduled
and only the caller that set the mark sends the (settle-delayed) Dramatiq message; the
mark is set *before* sending (seed 001's duplicate-analysis race). Error logs without a
trace are keyed by their fingerprint instead, with a mark that lives exactly one settle
window, so every burst of them is picked up by one message.

It never slows or fails an Export: `on_commit` only detects errors (cheap, pure) and
queues keys; a background task does the Redis and broker calls in a thread of its own,
with short timeouts, and logs and swallows failures. What fails or is dropped stays in
PostgreSQL, where the sweeper finds it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
from collections.abc import Callable

import dramatiq
import redis
import structlog

from analyzer.actors import IncidentActors
from analyzer.broker import build_broker, marks_client
from analyzer.config import AnalyzerConfig
from analyzer.detection import detect_errors
from analyzer.origin import log_fingerprint
from receiver.writer import CommittedBatch

log = structlog.get_logger(__name__)

SCHEDULE_CHUNK = 500
CLOSE_SECONDS = 5.0

TraceKey = tuple[str, bytes]
LogKey = tuple[str, str]


class IncidentTrigger:
    """Commit listener that schedules incident analysis; one per receiver process."""

    def __init__(
        self,
        config: AnalyzerConfig,
        *,
        broker: dramatiq.Broker | None = None,
        marks: redis.Redis | None = None,
    ) -> None:
        self._config = config
        timeout = config.redis_timeout_seconds
        self._broker = broker or build_broker(config, socket_timeout=timeout)
        self._actors = IncidentActors(self._broker, config)  # send-only: no database
        self._marks = marks if marks is not None else marks_client(config, timeout)
        self._traces: dict[TraceKey, None] = {}  # an ordered set
        self._logs: dict[LogKey, int] = {}  # -> earliest log time (µs)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "incident-trigger")
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._failing = False
        self.sent = 0  # messages sent by this trigger (tests and the benchmark read these)
        self.dropped = 0  # keys not scheduled (queue full or Redis failing): the sweeper's

    def on_commit(self, batch: CommittedBatch) -> None:
        """The commit listener: detect errors and queue their keys. Never blocks, never raises."""
        try:
            found = detect_errors(batch)
            if not found:
                return
            room = self._config.max_pending_marks - len(self._traces) - len(self._logs)
            for key in found.traces:
                if key in self._traces:
                    continue
                if room <= 0:
                    self.dropped += 1
                    continue
                self._traces[key] = None
                room -= 1
            for error in found.traceless_logs:
                fingerprint = log_fingerprint(
                    error.service_name, error.scope_name, error.body, error.attributes
                )
                log_key = (error.tenant_id, fingerprint)
                if log_key not in self._logs and room <= 0:
                    self.dropped += 1
                    continue
                room -= log_key not in self._logs
                self._logs[log_key] = min(
                    self._logs.get(log_key, error.time_unix_us), error.time_unix_us
                )
            if self._task is None or self._task.done():
                self._idle.clear()
                self._task = asyncio.get_running_loop().create_task(
                    self._drain(), name="incident-trigger"
                )
        except Exception:
            log.exception("incident_trigger_failed")

    async def wait_idle(self) -> None:
        """Wait until everything queued so far has been scheduled (or given up on)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Finish what is queued (a few seconds at most), then release Redis and the broker."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._broker.close()
        self._marks.close()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._traces or self._logs:
                traces = list(itertools.islice(self._traces, SCHEDULE_CHUNK))
                for key in traces:
                    del self._traces[key]
                logs = list(self._logs.items())
                self._logs.clear()
                try:
                    await loop.run_in_executor(self._executor, self._schedule, traces, logs)
                except Exception as error:
                    self.dropped += len(traces) + len(logs)
                    if not self._failing:  # log the start of an outage, not every batch
                        log.warning("incident_trigger_unavailable", error=str(error))
                    self._failing = True
                else:
                    if self._failing:
                        log.info("incident_trigger_available")
                    self._failing = False
        finally:
            self._idle.set()

    def _mark(self, kind: str, tenant: str, key: str) -> str:
        return f"{self._config.namespace}:incident-mark:{kind}:{tenant}:{key}"

    def _schedule(self, traces: list[TraceKey], logs: list[tuple[LogKey, int]]) -> None:
        """Runs in the trigger's thread: SET NX each mark, send a message for each mark won."""
        config = self._config
        settle_ms = config.settle_ms
        marks = [self._mark("trace", tenant, trace_id.hex()) for tenant, trace_id in traces]
        marks += [self._mark("logs", tenant, fingerprint) for (tenant, fingerprint), _ in logs]
        pipe = self._marks.pipeline(transaction=False)
        trace_ttl_ms = int(config.trace_mark_ttl_seconds * 1000)
        for index, mark in enumerate(marks):
            ttl = trace_ttl_ms if index < len(traces) else max(settle_ms, 1)
            pipe.set(mark, b"1", nx=True, px=ttl)
        won = pipe.execute()
        for index, (tenant, trace_id) in enumerate(traces):
            if won[index]:
                self._send(
                    marks[index],
                    self._actors.analyze_trace.send_with_options,
                    (tenant, trace_id.hex()),
                )
        for offset, ((tenant, fingerprint), since_us) in enumerate(logs):
            index = len(traces) + offset
            if won[index]:
                self._send(
                    marks[index],
                    self._actors.analyze_logs.send_with_options,
                    (tenant, fingerprint, since_us),
                )

    def _send(self, mark: str, send: Callable[..., object], args: tuple[object, ...]) -> None:
        try:
            send(args=args, delay=self._config.settle_ms)
        except Exception:
            # Without its message the mark would hide the trace until it expires: give it
            # back so a later error can trigger it (the sweeper covers it either way).
            with contextlib.suppress(redis.RedisError):
                self._marks.delete(mark)
            raise
        self.sent += 1
