"""Storing and reading incident analyses (the `analysis_results` table) and their history."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from analyzer.store.common import Conn
from analyzer.store.common import us as _us
from analyzer.triage.tier1 import History

MAX_SIMILAR = 5


@dataclasses.dataclass(frozen=True, slots=True)
class AnalysisRow:
    """One stored analysis of an incident."""

    id: int
    tier: int
    trigger: str
    status: str
    provider: str
    model: str
    prompt_hash: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    result: dict[str, Any]
    error: str
    created_at_us: int


async def analysis_exists(conn: Conn, incident_id: int, tier: int, trigger: str) -> bool:
    """Whether the incident already has this tier's analysis for this trigger."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM analysis_results "
            "WHERE incident_id = $1 AND tier = $2 AND trigger = $3)",
            incident_id,
            tier,
            trigger,
        )
    )


async def insert_analysis(
    conn: Conn,
    tenant: str,
    incident_id: int,
    *,
    tier: int,
    trigger: str,
    status: str,
    result: dict[str, Any],
    latency_ms: float,
    error: str = "",
) -> bool:
    """Store an analysis; False when one already exists for (incident, tier, trigger)."""
    inserted = await conn.fetchval(
        """
        INSERT INTO analysis_results (tenant_id, incident_id, tier, trigger, status, result,
            latency_ms, error)
        VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)
        ON CONFLICT ON CONSTRAINT analysis_results_trigger DO NOTHING
        RETURNING id
        """,
        tenant,
        incident_id,
        tier,
        trigger,
        status,
        orjson.dumps(result).decode(),
        latency_ms,
        error,
    )
    return inserted is not None


async def list_analyses(conn: Conn, tenant: str, incident_id: int) -> list[AnalysisRow]:
    """The incident's analyses, newest first."""
    rows = await conn.fetch(
        f"""
        SELECT id, tier, trigger, status, coalesce(provider, '') AS provider,
               coalesce(model, '') AS model, coalesce(prompt_hash, '') AS prompt_hash,
               input_tokens, output_tokens, latency_ms, result::text AS result, error,
               {_us("created_at")} AS created_at_us
        FROM analysis_results WHERE tenant_id = $1 AND incident_id = $2
        ORDER BY created_at DESC, id DESC
        """,
        tenant,
        incident_id,
    )
    return [AnalysisRow(**{**dict(r), "result": orjson.loads(r["result"])}) for r in rows]


async def incident_history(conn: Conn, tenant: str, incident_id: int) -> History:
    """First seen, occurrences, regressions and similar incidents (same service and type)."""
    row = await conn.fetchrow(
        f"""
        SELECT {_us("i.first_seen")} AS first_seen_us, i.occurrence_count,
               (SELECT count(*) FROM incident_events e
                WHERE e.incident_id = i.id AND e.kind = 'status' AND e.to_value = 'regressed')
                   AS regressions,
               ARRAY(SELECT s.id::text FROM incidents s
                     WHERE s.tenant_id = i.tenant_id AND s.id <> i.id
                       AND s.service_name = i.service_name
                       AND s.exception_type = i.exception_type
                     ORDER BY s.last_seen DESC LIMIT {MAX_SIMILAR}) AS similar
        FROM incidents i WHERE i.tenant_id = $1 AND i.id = $2
        """,
        tenant,
        incident_id,
    )
    if row is None:
        return History()
    return History(
        first_seen_us=row["first_seen_us"],
        occurrences=row["occurrence_count"],
        regressions=row["regressions"],
        similar=tuple(row["similar"]),
    )
