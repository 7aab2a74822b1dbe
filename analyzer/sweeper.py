"""The sweeper: finds committed error signals that belong to no incident and schedules them.

It is the safety net under the trigger. When Redis was down during an Export, or a mark
was set but its message never sent, the signals are in PostgreSQL but nothing will
analyse them; the sweeper, run periodically by every worker, finds them and sends their
messages. Analysing twice is harmless (occurrences are unique), but the sweeper leaves
alone what is younger than `sweep_min_age_seconds` so that triggered traces settle first.

It scans by signal time from a watermark kept in `incident_sweeps` (minus an overlap for
late arrivals) up to now - min_age, through partial indexes on error spans and logs, under
an advisory lock so that only one sweep runs at a time. Messages are sent before the
watermark commits: a send that fails rolls the advance back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from analyzer.config import AnalyzerConfig
from analyzer.grouping import fingerprint_of_log, now_us
from analyzer.origin import LogRecord
from analyzer.store import signals as signal_store

log = structlog.get_logger(__name__)

TraceJobs = list[tuple[str, bytes]]
LogJobs = list[tuple[str, str, int]]  # (tenant, fingerprint, earliest log time in µs)
Schedule = Callable[[TraceJobs, LogJobs], None]


def sweep_window(watermark_us: int, now: int, config: AnalyzerConfig) -> tuple[int, int]:
    """[lower, upper) in µs: from the watermark less the overlap to now less the minimum age."""
    lower = watermark_us - int(config.sweep_overlap_seconds * 1e6)
    upper = now - int(config.sweep_min_age_seconds * 1e6)
    return lower, upper


def log_jobs(found: list[tuple[str, LogRecord]]) -> LogJobs:
    """One job per (tenant, fingerprint), from the earliest log of the group."""
    earliest: dict[tuple[str, str], int] = {}
    for tenant, record in found:
        key = (tenant, fingerprint_of_log(record))
        at_us = record.time_unix_nano // 1000
        earliest[key] = min(earliest.get(key, at_us), at_us)
    return [(tenant, fingerprint, at) for (tenant, fingerprint), at in earliest.items()]


async def sweep(pool: asyncpg.Pool, config: AnalyzerConfig, schedule: Schedule) -> int:
    """One sweep; returns how many jobs it scheduled (0 also when another sweep holds the lock)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await signal_store.try_lock_sweep(conn):
            return 0
        now = now_us()
        first = now - int(config.sweep_first_lookback_seconds * 1e6)
        watermark = await signal_store.sweep_watermark(conn, first)
        lower, upper = sweep_window(watermark, now, config)
        if upper <= lower:
            return 0
        traces = await signal_store.unassigned_error_traces(conn, lower, upper, config.sweep_batch)
        logs = await signal_store.unassigned_traceless_logs(conn, lower, upper, config.sweep_batch)
        jobs = log_jobs(logs)
        if traces or jobs:
            # Sending is blocking network I/O: keep it off the event loop.
            await asyncio.to_thread(schedule, traces, jobs)
        if len(traces) < config.sweep_batch and len(logs) < config.sweep_batch:
            await signal_store.advance_sweep(conn, upper)
    if traces or jobs:
        log.info("sweep_scheduled", traces=len(traces), log_groups=len(jobs))
    return len(traces) + len(jobs)
