"""Dependency cycles: Tarjan's strongly connected components, the elementary cycles inside
them (Johnson's algorithm), canonical paths, and the alerts that follow them.

The pure part works on an adjacency mapping of names. A cycle's canonical path starts at
its smallest name and follows the edges (the closing edge back to the start is implied),
so the same cycle always has the same path and the same alert. Alerts are raised once per
cycle (an upsert on the path's hash), reopened if a resolved cycle comes back, and
resolved when the cycle is gone from the live graph (an edge went stale).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence

import structlog

from analyzer.graph.model import Conn, ts

log = structlog.get_logger(__name__)

Graph = Mapping[str, Iterable[str]]


def adjacency(edges: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """Edges -> {node: successors}, every node present; self-loops are dropped."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[target]
        if source != target:
            graph[source].add(target)
    return dict(graph)


def strongly_connected_components(graph: Graph) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative (graphs deeper than Python's recursion limit)."""
    successors = {node: sorted(targets) for node, targets in graph.items()}
    for targets in list(successors.values()):
        for target in targets:
            successors.setdefault(target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[frozenset[str]] = []
    for root in sorted(successors):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            following = successors[node]
            if position < len(following):
                work.append((node, position + 1))
                target = following[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:  # done with node: its caller takes its low-link
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(frozenset(component))
    return components


def canonical(path: Sequence[str]) -> tuple[str, ...]:
    """The cycle's path rotated to start at its smallest name."""
    start = min(range(len(path)), key=path.__getitem__)
    return tuple(path[start:]) + tuple(path[:start])


def elementary_cycles(graph: Graph) -> Iterator[tuple[str, ...]]:
    """Every elementary cycle once, as a canonical path (Johnson's algorithm, iterative).

    Self-loops are not cycles here (a service calling itself is not a dependency).
    """
    remaining = {node: set(targets) - {node} for node, targets in graph.items()}
    pending = [c for c in strongly_connected_components(remaining) if len(c) > 1]
    while pending:
        component = pending.pop()
        start = min(component)
        sub = {node: sorted(remaining[node] & component) for node in component}
        yield from _cycles_through(start, sub)
        rest = component - {start}
        inner = {node: remaining[node] & rest for node in rest}
        pending.extend(c for c in strongly_connected_components(inner) if len(c) > 1)


def _cycles_through(start: str, sub: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, ...]]:
    path = [start]
    blocked = {start}
    closed: set[str] = set()
    blockers: dict[str, set[str]] = defaultdict(set)
    stack: list[tuple[str, list[str]]] = [(start, list(reversed(sub[start])))]
    while stack:
        node, successors = stack[-1]
        if successors:
            following = successors.pop()
            if following == start:
                yield canonical(path)
                closed.update(path)
            elif following not in blocked:
                path.append(following)
                stack.append((following, list(reversed(sub[following]))))
                closed.discard(following)
                blocked.add(following)
                continue
        if not successors:
            if node in closed:
                _unblock(node, blocked, blockers)
            else:
                for successor in sub[node]:
                    blockers[successor].add(node)
            stack.pop()
            path.pop()


def _unblock(node: str, blocked: set[str], blockers: dict[str, set[str]]) -> None:
    work = {node}
    while work:
        current = work.pop()
        if current in blocked:
            blocked.discard(current)
            work.update(blockers[current])
            blockers[current].clear()


def find_cycles(graph: Graph, limit: int) -> tuple[list[tuple[str, ...]], bool]:
    """Up to `limit` canonical cycles, sorted; True when there were more."""
    found: list[tuple[str, ...]] = []
    for cycle in elementary_cycles(graph):
        if len(found) == limit:
            return sorted(found), True
        found.append(cycle)
    return sorted(found), False


def cycle_key(path: Sequence[str]) -> str:
    """The alert's unique key: a hash, as a long path may not fit a btree entry."""
    return hashlib.sha256("\x1f".join(path).encode()).hexdigest()


# --------------------------------------------------------------------------- alerts


@dataclasses.dataclass(frozen=True, slots=True)
class CycleSync:
    raised: int = 0
    reopened: int = 0
    resolved: int = 0
    truncated: bool = False


LIVE_EDGES = """
SELECT src.name AS source, dst.name AS target
FROM service_dependencies d
JOIN services src ON src.id = d.source_id
JOIN services dst ON dst.id = d.target_id
WHERE d.tenant_id = $1 AND NOT d.is_stale
"""

RAISE = f"""
INSERT INTO circular_dependency_alerts AS a (
    tenant_id, cycle_key, cycle_path, status, first_detected_at, detected_at, last_seen_at)
VALUES ($1, $2, $3, 'open', {ts("$4")}, {ts("$4")}, {ts("$4")})
ON CONFLICT (tenant_id, cycle_key) DO UPDATE SET
    last_seen_at = excluded.last_seen_at,
    status = CASE WHEN a.status = 'resolved' THEN 'open' ELSE a.status END,
    detected_at = CASE WHEN a.status = 'resolved' THEN excluded.detected_at
                       ELSE a.detected_at END,
    resolved_at = CASE WHEN a.status = 'resolved' THEN NULL ELSE a.resolved_at END
"""

RESOLVE = f"""
UPDATE circular_dependency_alerts SET status = 'resolved', resolved_at = {ts("$3")}
WHERE tenant_id = $1 AND status <> 'resolved' AND NOT (cycle_key = ANY($2::text[]))
RETURNING cycle_path
"""


async def sync_cycle_alerts(conn: Conn, tenant: str, now_us: int, max_cycles: int) -> CycleSync:
    """Make the tenant's alerts match the cycles of its live graph (idempotent)."""
    edges = await conn.fetch(LIVE_EDGES, tenant)
    cycles, truncated = find_cycles(
        adjacency((r["source"], r["target"]) for r in edges), max_cycles
    )
    keys = [cycle_key(cycle) for cycle in cycles]
    before = {
        row["cycle_key"]: row["status"]
        for row in await conn.fetch(
            "SELECT cycle_key, status FROM circular_dependency_alerts "
            "WHERE tenant_id = $1 AND cycle_key = ANY($2::text[])",
            tenant,
            keys,
        )
    }
    await conn.executemany(
        RAISE, [(tenant, key, list(cycle), now_us) for key, cycle in zip(keys, cycles, strict=True)]
    )
    raised = [cycle for key, cycle in zip(keys, cycles, strict=True) if key not in before]
    reopened = [k for k in keys if before.get(k) == "resolved"]
    # With a truncated list an alert not found this time may still be a cycle: keep it.
    resolved = [] if truncated else await conn.fetch(RESOLVE, tenant, keys, now_us)
    for cycle in raised:
        log.warning("dependency_cycle_detected", tenant=tenant, path=" -> ".join(cycle))
    for row in resolved:
        log.info("dependency_cycle_resolved", tenant=tenant, path=" -> ".join(row["cycle_path"]))
    if truncated:
        log.warning("dependency_cycles_truncated", tenant=tenant, limit=max_cycles)
    return CycleSync(len(raised), len(reopened), len(resolved), truncated)
