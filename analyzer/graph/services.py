"""The service catalog: discovery from span resources and call endpoints, and the
metadata a person sets (team, criticality, description).

A service is one name per tenant. Instrumented services come from resource
`service.name` (kept with the latest `service.namespace` and
`deployment.environment.name` seen); the peers that only appear in other services'
client spans are added with their kind (database, messaging, external, or service for
`peer.service`). A peer that later reports its own telemetry becomes instrumented.
`updated_at` is kept by the database (a trigger); first/last seen only ever widen.
"""

from __future__ import annotations

from typing import Any

from analyzer.graph.edges import attr
from analyzer.graph.model import Conn, Criticality, ServiceRecord, ts, us

MAX_TEAM_LENGTH = 128
MAX_DESCRIPTION_LENGTH = 4096

# $1, $2: window [lo, hi) of span end times (µs); $3 longest span (µs).
DISCOVER = f"""
WITH seen AS (
    SELECT tenant_id, service_name,
           {attr("resource", "service.namespace")} AS namespace,
           coalesce({attr("resource", "deployment.environment.name")},
                    {attr("resource", "deployment.environment")}) AS environment,
           min(start_time) AS first_seen, max(end_time) AS last_seen
    FROM spans
    WHERE end_time >= {ts("$1")} AND end_time < {ts("$2")}
      AND start_time >= {ts("$1")} - $3 * interval '1 microsecond' AND start_time < {ts("$2")}
    GROUP BY 1, 2, 3, 4
),
latest AS (
    SELECT DISTINCT ON (tenant_id, service_name)
           tenant_id, service_name, namespace, environment,
           min(first_seen) OVER w AS first_seen, max(last_seen) OVER w AS last_seen
    FROM seen
    WINDOW w AS (PARTITION BY tenant_id, service_name)
    ORDER BY tenant_id, service_name, last_seen DESC, namespace NULLS LAST,
             environment NULLS LAST
)
INSERT INTO services AS s (tenant_id, name, kind, instrumented, namespace, environment,
                           first_seen, last_seen)
SELECT tenant_id, service_name, 'service', true, coalesce(namespace, ''),
       coalesce(environment, ''), first_seen, last_seen
FROM latest
ON CONFLICT (tenant_id, name) DO UPDATE SET
    kind = 'service',
    instrumented = true,
    namespace = excluded.namespace,
    environment = excluded.environment,
    first_seen = least(s.first_seen, excluded.first_seen),
    last_seen = greatest(s.last_seen, excluded.last_seen)
"""

# Both ends of every call in graph_calls (edges.py), so a caller whose own spans fell in
# an earlier window, and the uninstrumented peers, exist before their edges.
ENDPOINTS = """
WITH ends AS (
    SELECT tenant_id, source AS name, 'service' AS kind, true AS instrumented,
           first_observed, last_observed
    FROM graph_calls WHERE bucket IS NULL
    UNION ALL
    SELECT tenant_id, target, target_kind, target_instrumented, first_observed, last_observed
    FROM graph_calls WHERE bucket IS NULL
)
INSERT INTO services AS s (tenant_id, name, kind, instrumented, first_seen, last_seen)
SELECT tenant_id, name,
       CASE WHEN bool_or(instrumented) THEN 'service'
            ELSE mode() WITHIN GROUP (ORDER BY kind) END,
       bool_or(instrumented), min(first_observed), max(last_observed)
FROM ends
GROUP BY tenant_id, name
ON CONFLICT (tenant_id, name) DO UPDATE SET
    kind = CASE WHEN excluded.instrumented THEN 'service' ELSE s.kind END,
    instrumented = s.instrumented OR excluded.instrumented,
    first_seen = least(s.first_seen, excluded.first_seen),
    last_seen = greatest(s.last_seen, excluded.last_seen)
"""

SERVICE_COLUMNS = (
    f"name, kind, instrumented, namespace, environment, team, criticality, description, "
    f"{us('first_seen')} AS first_seen_us, {us('last_seen')} AS last_seen_us, "
    f"{us('updated_at')} AS updated_at_us"
)


async def discover_services(conn: Conn, start_us: int, end_us: int, max_span_us: int) -> int:
    """Upsert the services whose spans ended in [start_us, end_us); return how many."""
    status = await conn.execute(DISCOVER, start_us, end_us, max_span_us)
    return int(status.rsplit(" ", 1)[-1])


async def upsert_endpoints(conn: Conn) -> int:
    """Upsert both ends of the calls in `graph_calls`; return how many services."""
    status = await conn.execute(ENDPOINTS)
    return int(status.rsplit(" ", 1)[-1])


def service_record(row: Any) -> ServiceRecord:
    """A services row (selected with SERVICE_COLUMNS) as a record."""
    criticality = row["criticality"]
    return ServiceRecord(
        name=row["name"],
        kind=row["kind"],
        instrumented=row["instrumented"],
        namespace=row["namespace"],
        environment=row["environment"],
        team=row["team"],
        criticality=Criticality(criticality) if criticality else None,
        description=row["description"],
        first_seen_us=row["first_seen_us"],
        last_seen_us=row["last_seen_us"],
        updated_at_us=row["updated_at_us"],
    )


class Unset:
    """Marks a metadata field the update leaves as it is."""


UNSET = Unset()


async def update_metadata(
    conn: Conn,
    tenant: str,
    service: str,
    *,
    team: str | Unset | None = UNSET,
    criticality: Criticality | Unset | None = UNSET,
    description: str | Unset | None = UNSET,
) -> ServiceRecord | None:
    """Set (a value), clear (None) or keep (UNSET) each field; None if no such service."""
    sets: list[str] = []
    params: list[object] = [tenant, service]
    for column, value in (
        ("team", team),
        ("criticality", criticality),
        ("description", description),
    ):
        if not isinstance(value, Unset):
            params.append(None if value is None else str(value))
            sets.append(f"{column} = ${len(params)}")
    if not sets:
        row = await conn.fetchrow(
            f"SELECT {SERVICE_COLUMNS} FROM services WHERE tenant_id = $1 AND name = $2",
            *params,
        )
    else:
        row = await conn.fetchrow(
            f"UPDATE services SET {', '.join(sets)} WHERE tenant_id = $1 AND name = $2 "
            f"RETURNING {SERVICE_COLUMNS}",
            *params,
        )
    return None if row is None else service_record(row)
