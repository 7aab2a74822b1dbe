"""Ageing: edges go stale when not observed for a while, hourly stats expire.

An edge not observed within `stale_after_seconds` of `now` is stale. Stale edges are
kept (with their counts and last observation) but traversals and cycle detection leave
them out unless asked. An edge observed again is live again. Both directions are one
indexed UPDATE each (partial indexes on last_observed_at per flag), so a run touches only
the edges whose state changes.

Hourly stats (time-range graphs) older than `stats_retention_seconds` are deleted; the
edges keep their cumulative counters.
"""

from __future__ import annotations

import dataclasses

from analyzer.graph.model import Conn, ts

MARK_STALE = f"""
UPDATE service_dependencies SET is_stale = true
WHERE NOT is_stale AND last_observed_at < {ts("$1")}
RETURNING tenant_id
"""

MARK_LIVE = f"""
UPDATE service_dependencies SET is_stale = false
WHERE is_stale AND last_observed_at >= {ts("$1")}
RETURNING tenant_id
"""


@dataclasses.dataclass(frozen=True, slots=True)
class StalenessChange:
    staled: int
    revived: int
    tenants: frozenset[str]  # tenants whose live graph changed


def stale_cutoff_us(now_us: int, stale_after_seconds: float) -> int:
    """Edges last observed before this time (µs) are stale."""
    return now_us - round(stale_after_seconds * 1_000_000)


async def refresh_staleness(conn: Conn, now_us: int, stale_after_seconds: float) -> StalenessChange:
    """Flip the edges whose last observation crossed the cutoff, either way."""
    cutoff = stale_cutoff_us(now_us, stale_after_seconds)
    staled = await conn.fetch(MARK_STALE, cutoff)
    revived = await conn.fetch(MARK_LIVE, cutoff)
    return StalenessChange(
        staled=len(staled),
        revived=len(revived),
        tenants=frozenset(row["tenant_id"] for row in (*staled, *revived)),
    )


async def prune_stats(conn: Conn, now_us: int, retention_seconds: float) -> int:
    """Delete hourly stats older than the retention; return how many rows went."""
    cutoff = now_us - round(retention_seconds * 1_000_000)
    status = await conn.execute(
        f"DELETE FROM service_dependency_stats WHERE bucket < {ts('$1')}", cutoff
    )
    return int(status.rsplit(" ", 1)[-1])
