"""Traversal: the services reachable from one service, as one recursive CTE.

Downstream follows edges caller -> callee (what the service depends on), upstream the
other way (what depends on it: the blast radius of its failure); both walks both, each
reached service reported per direction. Depth 1 to 10. Stale edges are left out unless
asked for.

Each reached service comes with its depth (the fewest hops) and one shortest path: the
smallest by service id among the shortest. The CTE is a breadth-first walk that keeps,
per level, one row per (direction, service), the smallest path reaching it; a path never
revisits a service (cycle-safe), and the work per level is bounded by the edges out of
that level, so dense or cyclic graphs stay linear in depth x edges.
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.graph.model import MAX_DEPTH, Conn, Direction, Reached


def traversal_sql(include_stale: bool) -> str:
    """The CTE; two texts so that the live case uses the partial indexes on live edges.

    $1 tenant, $2 start service name, $3 directions (text[]), $4 max depth.
    """
    live = "" if include_stale else "AND NOT e.is_stale"
    return f"""
WITH RECURSIVE walk (id, depth, path, direction) AS (
    SELECT s.id, 0, ARRAY[s.id], d.direction
    FROM services s CROSS JOIN unnest($3::text[]) AS d(direction)
    WHERE s.tenant_id = $1 AND s.name = $2
  UNION ALL
    SELECT level.id, level.depth, level.path, level.direction
    FROM (
        SELECT DISTINCT ON (w.direction, n.id)
               n.id, w.depth + 1 AS depth, w.path || n.id AS path, w.direction
        FROM walk w
        CROSS JOIN LATERAL (
            SELECT e.target_id AS id FROM service_dependencies e
            WHERE w.direction = 'downstream' AND e.tenant_id = $1 AND e.source_id = w.id {live}
            UNION ALL
            SELECT e.source_id FROM service_dependencies e
            WHERE w.direction = 'upstream' AND e.tenant_id = $1 AND e.target_id = w.id {live}
        ) n
        WHERE w.depth < $4 AND n.id <> ALL (w.path)
        ORDER BY w.direction, n.id, w.path || n.id
    ) level
),
reached AS (
    SELECT DISTINCT ON (direction, id) direction, id, depth, path
    FROM walk
    ORDER BY direction, id, depth, path
)
SELECT r.direction, r.depth,
       ARRAY(SELECT s.name FROM unnest(r.path) WITH ORDINALITY AS u(id, i)
             JOIN services s ON s.id = u.id ORDER BY u.i) AS path
FROM reached r
ORDER BY r.direction, r.depth, r.path
"""


LIVE_SQL = traversal_sql(include_stale=False)
ALL_SQL = traversal_sql(include_stale=True)


def directions_for(direction: Direction | None) -> list[str]:
    """One direction, or both (None)."""
    return [str(direction)] if direction is not None else [str(d) for d in Direction]


async def traverse(
    conn: Conn,
    tenant: str,
    service: str,
    direction: Direction | None,
    max_depth: int,
    include_stale: bool = False,
) -> list[Reached] | None:
    """Services reached from `service` (not itself), nearest first; None if it is unknown.

    `direction` None walks both ways. `max_depth` must be within 1..MAX_DEPTH.
    """
    if not 1 <= max_depth <= MAX_DEPTH:
        raise ValueError(f"max_depth must be within 1..{MAX_DEPTH}, got {max_depth}")
    rows = await conn.fetch(
        ALL_SQL if include_stale else LIVE_SQL,
        tenant,
        service,
        directions_for(direction),
        max_depth,
    )
    if not rows:
        return None
    return [
        Reached(
            name=row["path"][-1],
            depth=row["depth"],
            path=tuple(row["path"]),
            direction=Direction(row["direction"]),
        )
        for row in rows
        if row["depth"] > 0
    ]


def reached_names(reached: Sequence[Reached]) -> list[str]:
    """Each reached name once, in order of first appearance."""
    return list(dict.fromkeys(item.name for item in reached))
