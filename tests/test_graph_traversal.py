"""Traversal: the recursive CTE against the real database equals a plain-Python breadth-
first reference on random graphs (Hypothesis), and the fixed cases spelled out: cycles,
stale edges, depth bounds, unknown services, tenants.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.graph.bench import Edge, load_graph
from analyzer.graph.model import Direction, Reached
from analyzer.graph.store import blast_radius
from analyzer.graph.traversal import traverse

NAMES = [f"s{n}" for n in range(8)]
DISCOVERY = ["trace", "peer_service"]


def reference(
    ids: dict[str, int],
    edges: Sequence[Edge],
    start: str,
    direction: Direction,
    max_depth: int,
    include_stale: bool,
) -> set[tuple[str, int, tuple[str, ...]]]:
    """Breadth-first: each service at its fewest hops, with the shortest path that is
    smallest as a sequence of service ids (the documented tie-break)."""
    following: dict[str, set[str]] = {}
    for edge in edges:
        if edge.stale and not include_stale:
            continue
        a, b = (edge.source, edge.target)
        if direction is Direction.UPSTREAM:
            a, b = b, a
        following.setdefault(a, set()).add(b)
    best: dict[str, list[int]] = {start: [ids[start]]}
    frontier = [start]
    for _ in range(max_depth):
        candidates: dict[str, list[int]] = {}
        for node in frontier:
            for nxt in following.get(node, ()):
                if nxt in best:
                    continue
                path = [*best[node], ids[nxt]]
                if nxt not in candidates or path < candidates[nxt]:
                    candidates[nxt] = path
        best.update(candidates)
        frontier = list(candidates)
    names = {v: k for k, v in ids.items()}
    return {
        (node, len(path) - 1, tuple(names[i] for i in path))
        for node, path in best.items()
        if node != start
    }


def as_set(
    reached: Sequence[Reached], direction: Direction
) -> set[tuple[str, int, tuple[str, ...]]]:
    return {(r.name, r.depth, r.path) for r in reached if r.direction is direction}


edge_lists = st.lists(
    st.builds(
        Edge,
        source=st.sampled_from(NAMES),
        target=st.sampled_from(NAMES),
        stale=st.booleans(),
        discovery=st.sampled_from(DISCOVERY),
    ),
    max_size=24,
).map(
    lambda edges: list(
        {(e.source, e.target, e.discovery): e for e in edges if e.source != e.target}.values()
    )
)


@given(
    edges=edge_lists,
    start=st.sampled_from(NAMES),
    max_depth=st.integers(1, 5),
    include_stale=st.booleans(),
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
async def test_traversal_equals_the_python_reference(
    db: asyncpg.Connection,
    edges: list[Edge],
    start: str,
    max_depth: int,
    include_stale: bool,
) -> None:
    """For random graphs (cycles, parallel edges from two discovery sources, stale edges),
    every direction returns exactly the reference's services, depths and paths."""
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    await load_graph(db, tenant, NAMES, edges)
    ids = {
        row["name"]: row["id"]
        for row in await db.fetch("SELECT name, id FROM services WHERE tenant_id = $1", tenant)
    }
    both = await traverse(db, tenant, start, None, max_depth, include_stale)
    assert both is not None
    for direction in Direction:
        expected = reference(ids, edges, start, direction, max_depth, include_stale)
        alone = await traverse(db, tenant, start, direction, max_depth, include_stale)
        assert alone is not None
        assert as_set(alone, direction) == expected
        assert len(alone) == len(expected)
        assert as_set(both, direction) == expected


async def test_cycles_do_not_loop_and_the_start_is_not_reached(
    db: asyncpg.Connection, tenant: str
) -> None:
    """In a ring a -> b -> c -> a walked 10 deep, each other service is reached once at
    its distance and the start never comes back."""
    await load_graph(db, tenant, ["a", "b", "c"], [Edge("a", "b"), Edge("b", "c"), Edge("c", "a")])
    reached = await traverse(db, tenant, "a", Direction.DOWNSTREAM, 10)
    assert reached == [
        Reached("b", 1, ("a", "b"), Direction.DOWNSTREAM),
        Reached("c", 2, ("a", "b", "c"), Direction.DOWNSTREAM),
    ]


async def test_stale_edges_are_left_out_unless_asked(db: asyncpg.Connection, tenant: str) -> None:
    """A stale edge (and what lies only behind it) is not followed by default."""
    await load_graph(db, tenant, ["a", "b", "c"], [Edge("a", "b"), Edge("b", "c", stale=True)])
    live = await traverse(db, tenant, "a", Direction.DOWNSTREAM, 3)
    everything = await traverse(db, tenant, "a", Direction.DOWNSTREAM, 3, include_stale=True)
    assert [r.name for r in live or ()] == ["b"]
    assert [r.name for r in everything or ()] == ["b", "c"]


async def test_depth_is_bounded_and_unknown_services_are_none(
    db: asyncpg.Connection, tenant: str
) -> None:
    """Depth 1 stops at the neighbours; depth outside 1..10 is refused; an unknown
    service (or another tenant's) gives None, a known one without edges an empty list."""
    await load_graph(db, tenant, ["a", "b", "c", "lonely"], [Edge("a", "b"), Edge("b", "c")])
    assert [r.name for r in await traverse(db, tenant, "a", Direction.DOWNSTREAM, 1) or ()] == ["b"]
    for depth in (0, 11):
        with pytest.raises(ValueError, match="max_depth"):
            await traverse(db, tenant, "a", Direction.DOWNSTREAM, depth)
    assert await traverse(db, tenant, "nobody", Direction.DOWNSTREAM, 3) is None
    assert await traverse(db, f"{tenant}-other", "a", Direction.DOWNSTREAM, 3) is None
    assert await traverse(db, tenant, "lonely", None, 3) == []


async def test_blast_radius_is_the_upstream_walk(db: asyncpg.Connection, tenant: str) -> None:
    """blast_radius (for incidents) lists who depends on a service, nearest first."""
    await load_graph(
        db,
        tenant,
        ["web", "api", "db", "cron"],
        [Edge("web", "api"), Edge("api", "db"), Edge("cron", "db")],
    )
    radius = await blast_radius(db, tenant, "db")
    assert [(r.name, r.depth) for r in radius] == [("api", 1), ("cron", 1), ("web", 2)]
    assert await blast_radius(db, tenant, "unknown") == []
