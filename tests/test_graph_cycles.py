"""Dependency cycles: Tarjan's components and the canonical elementary cycles (pure, with
Hypothesis against brute force), and the alerts kept by run_graph_upkeep for a cycle
A -> B -> C -> A built from real SDK traces: raised once, resolved when an edge goes stale,
reopened when it comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind
from test_graph_fixtures import TEST_CONFIG, SdkService, edges_of, incoming, outgoing

from analyzer.graph.cycles import (
    adjacency,
    canonical,
    cycle_key,
    find_cycles,
    strongly_connected_components,
    sync_cycle_alerts,
)
from analyzer.graph.upkeep import run_graph_upkeep
from receiver.app import Receiver

pytest_plugins = ["test_graph_fixtures"]

NODES = "abcdef"
graphs = st.sets(st.tuples(st.sampled_from(NODES), st.sampled_from(NODES)), max_size=14).map(sorted)


def _brute_force_cycles(edges: list[tuple[str, str]]) -> set[tuple[str, ...]]:
    """Every ordering of every node subset that closes through existing edges."""
    present = set(edges)
    nodes = sorted({n for edge in edges for n in edge})
    found = set()
    for size in range(2, len(nodes) + 1):
        for subset in itertools.combinations(nodes, size):
            first, rest = subset[0], subset[1:]
            for order in itertools.permutations(rest):
                path = (first, *order)
                hops = zip(path, (*path[1:], first), strict=True)
                if all(hop in present for hop in hops):
                    found.add(path)
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for following in graph.get(todo.pop(), ()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


@given(graphs)
@settings(max_examples=300, deadline=None)
def test_elementary_cycles_equal_brute_force(edges: list[tuple[str, str]]) -> None:
    """Johnson's enumeration finds exactly the elementary cycles (length >= 2) that brute
    force finds, each once, each starting at its smallest name."""
    cycles, truncated = find_cycles(adjacency(edges), limit=10_000)
    assert not truncated
    assert len(cycles) == len(set(cycles))
    assert set(cycles) == _brute_force_cycles(edges)
    assert all(cycle == canonical(cycle) for cycle in cycles)


@given(graphs)
@settings(max_examples=300, deadline=None)
def test_components_are_mutual_reachability_classes(edges: list[tuple[str, str]]) -> None:
    """Tarjan's components partition the nodes, and two nodes share one exactly when each
    reaches the other."""
    graph = adjacency(edges)
    components = strongly_connected_components(graph)
    assert sorted(n for c in components for n in c) == sorted(graph)
    component_of = {node: c for c in components for node in c}
    for a, b in itertools.product(graph, repeat=2):
        mutual = b in _reachable(graph, a) and a in _reachable(graph, b)
        assert (component_of[a] == component_of[b]) == mutual


def test_deep_chain_needs_no_recursion() -> None:
    """A 5,000-service ring (deeper than Python's recursion limit) is one component and
    one cycle."""
    names = [f"s{n:05d}" for n in range(5000)]
    ring = adjacency(zip(names, names[1:] + names[:1], strict=True))
    assert len(strongly_connected_components(ring)) == 1
    assert find_cycles(ring, limit=5) == ([tuple(names)], False)


def test_cycles_are_capped_and_canonical() -> None:
    """A complete graph on 6 services has 409 elementary cycles: the cap stops at the
    limit and says so; canonical rotation and the key do not depend on the start."""
    complete = adjacency((a, b) for a in NODES for b in NODES if a != b)
    cycles, truncated = find_cycles(complete, limit=50)
    assert (len(cycles), truncated) == (50, True)
    assert find_cycles(complete, limit=409)[1] is False
    assert canonical(("c", "a", "b")) == ("a", "b", "c")
    assert cycle_key(canonical(("b", "c", "a"))) == cycle_key(("a", "b", "c"))
    assert cycle_key(("a", "b", "c")) != cycle_key(("a", "c", "b"))


# --------------------------------------------------------------------------- alerts


def _calls(port: int | None, tenant: str, hops: list[tuple[str, str]]) -> None:
    """One trace per hop: caller's CLIENT span -> callee's SERVER span, each service
    exporting through its own provider."""
    services = {
        name: SdkService(name, port, tenant) for name in sorted({n for hop in hops for n in hop})
    }
    for caller, callee in hops:
        with services[caller].tracer.start_as_current_span(
            f"call {callee}", kind=SpanKind.CLIENT, attributes={"http.request.method": "GET"}
        ):
            carrier = outgoing()
            with services[callee].tracer.start_as_current_span(
                "GET /", context=incoming(carrier), kind=SpanKind.SERVER
            ):
                pass
    for service in services.values():
        service.flush()
        service.shutdown()


async def _upkeep(database_url: str, now: dt.datetime | None = None) -> Any:
    connection = await asyncpg.connect(database_url)
    try:
        return await run_graph_upkeep(connection, now or dt.datetime.now(dt.UTC), TEST_CONFIG)
    finally:
        await connection.close()


async def _alerts(db: asyncpg.Connection, tenant: str) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT id, cycle_path, status, resolved_at IS NOT NULL AS resolved "
        "FROM circular_dependency_alerts WHERE tenant_id = $1 ORDER BY id",
        tenant,
    )
    return [tuple(row) for row in rows]


RING = [("svc-a", "svc-b"), ("svc-b", "svc-c"), ("svc-c", "svc-a")]


async def test_cycle_alert_is_raised_once_resolved_when_stale_and_reopened(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """A -> B -> C -> A from real traces raises one open alert with the canonical path;
    more traffic and more runs do not raise another; when C -> A goes stale (A -> B and
    B -> C observed since) the alert resolves; when C -> A is called again the same alert
    reopens."""
    await asyncio.to_thread(_calls, receiver.port, tenant, RING)
    first = await _upkeep(database_url)
    assert first.cycles_raised >= 1
    (alert,) = await _alerts(db, tenant)
    assert alert[1:] == (["svc-a", "svc-b", "svc-c"], "open", False)

    await asyncio.to_thread(_calls, receiver.port, tenant, RING)
    await _upkeep(database_url)
    await _upkeep(database_url)
    assert await _alerts(db, tenant) == [alert]

    closing = (await edges_of(db, tenant))[("svc-c", "svc-a", "trace")]["last_observed_us"]
    await asyncio.to_thread(_calls, receiver.port, tenant, RING[:2])
    await _upkeep(database_url)
    edges = await edges_of(db, tenant)
    assert min(edges[(a, b, "trace")]["last_observed_us"] for a, b in RING[:2]) > closing
    # `now` such that C -> A (and only it) was last observed before the stale cutoff.
    cutoff = closing + 1
    later = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=cutoff, seconds=TEST_CONFIG.stale_after_seconds
    )
    staled = await _upkeep(database_url, later)
    assert staled.cycles_resolved >= 1
    stale = {key[:2]: row["is_stale"] for key, row in (await edges_of(db, tenant)).items()}
    assert stale == {("svc-a", "svc-b"): False, ("svc-b", "svc-c"): False, ("svc-c", "svc-a"): True}
    assert await _alerts(db, tenant) == [(alert[0], ["svc-a", "svc-b", "svc-c"], "resolved", True)]
    await _upkeep(database_url, later)
    assert len(await _alerts(db, tenant)) == 1

    await asyncio.to_thread(_calls, receiver.port, tenant, RING[2:])
    revived = await _upkeep(database_url)
    assert revived.edges_revived >= 1
    assert await _alerts(db, tenant) == [alert]


async def test_sync_is_idempotent_and_leaves_other_tenants_alone(
    db: asyncpg.Connection, tenant: str
) -> None:
    """Syncing twice changes nothing the second time; a tenant without the cycle gets no
    alert and does not resolve another tenant's."""
    from analyzer.graph.bench import Edge, load_graph

    other = f"{tenant}-other"
    await load_graph(db, tenant, ["x", "y"], [Edge("x", "y"), Edge("y", "x")])
    await load_graph(db, other, ["x", "y"], [Edge("x", "y")])

    first = await sync_cycle_alerts(db, tenant, 1_000_000, max_cycles=10)
    again = await sync_cycle_alerts(db, tenant, 2_000_000, max_cycles=10)
    elsewhere = await sync_cycle_alerts(db, other, 3_000_000, max_cycles=10)

    assert (first.raised, again.raised, again.reopened, again.resolved) == (1, 0, 0, 0)
    assert (elsewhere.raised, elsewhere.resolved) == (0, 0)
    assert [a[1:] for a in await _alerts(db, tenant)] == [(["x", "y"], "open", False)]
    assert await _alerts(db, other) == []
