"""What people (and the auto-resolver) do to incidents: acknowledge, resolve, auto-resolve.

Each action locks the incident row, asks the pure lifecycle for the transition, and
writes the new state and its events in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import structlog

from analyzer.grouping import now_us
from analyzer.lifecycle import IncidentState, Transition, acknowledge, auto_resolve, resolve
from analyzer.store import incidents as incident_store
from analyzer.store.common import Conn
from analyzer.store.incidents import IncidentRow
from receiver.errors import NotFoundError

log = structlog.get_logger(__name__)


class IncidentNotFoundError(NotFoundError):
    """No incident with that id for the caller's tenant."""


async def _apply(
    conn: Conn, tenant: str, incident_id: int, change: Callable[[IncidentState], Transition]
) -> IncidentRow:
    async with conn.transaction():
        row = await incident_store.lock_incident(conn, tenant, incident_id)
        if row is None:
            raise IncidentNotFoundError(f"incident {incident_id} not found")
        transition = change(row.state)
        if transition.changed:
            await incident_store.save_state(conn, row.id, transition.state)
            await incident_store.insert_events(conn, tenant, row.id, transition.events)
    updated = await incident_store.get_incident(conn, tenant, incident_id)
    assert updated is not None
    return updated


async def acknowledge_incident(
    conn: Conn, tenant: str, incident_id: int, by: str, note: str
) -> IncidentRow:
    at = now_us()
    return await _apply(conn, tenant, incident_id, lambda s: acknowledge(s, by, note, at))


async def resolve_incident(
    conn: Conn, tenant: str, incident_id: int, by: str, note: str
) -> IncidentRow:
    at = now_us()
    return await _apply(conn, tenant, incident_id, lambda s: resolve(s, by, note, at))


async def auto_resolve_quiet(pool: asyncpg.Pool, quiet_seconds: float, limit: int = 500) -> int:
    """Resolve active incidents that have been quiet for `quiet_seconds`; returns how many."""
    if quiet_seconds <= 0:
        return 0
    at = now_us()
    resolved = 0
    async with pool.acquire() as conn:
        quiet = await incident_store.quiet_incidents(conn, at - int(quiet_seconds * 1e6), limit)
        for tenant, incident_id in quiet:
            # Re-checked under the row lock: an occurrence may have arrived meanwhile.
            row = await _apply(
                conn, tenant, incident_id, lambda s: auto_resolve(s, at, quiet_seconds)
            )
            if not row.state.status.active:
                resolved += 1
    if resolved:
        log.info("incidents_auto_resolved", count=resolved)
    return resolved
