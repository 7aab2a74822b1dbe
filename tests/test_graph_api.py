"""ServiceGraphService over real gRPC: UpdateService, TraverseDependencies,
GetServiceGraph, ListDependencyCycles; statuses for bad and unknown input; tenants; and
the schema's own rules (criticality CHECK, updated_at trigger, downgrade).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from conftest import _with_database
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from test_graph_cycles import RING, _calls
from test_graph_fixtures import TEST_CONFIG, as_tenant

from analyzer.graph.bench import Edge, load_graph
from analyzer.graph.store import criticalities, service_criticality
from analyzer.graph.upkeep import run_graph_upkeep
from prodsentinel.v1 import graph_pb2
from receiver import migrations
from receiver.app import Receiver

pytest_plugins = ["test_graph_fixtures"]

HOUR_NS = 3_600_000_000_000


def _bad_field(error: grpc.aio.AioRpcError) -> str:
    """The field named by an INVALID_ARGUMENT's BadRequest detail."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return str(detail.field_violations[0].field)


def _ts(ns: int) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(ns)
    return value


async def test_update_service_sets_and_clears_metadata(
    graph: Any, db: asyncpg.Connection, tenant: str
) -> None:
    """UpdateService sets team, criticality and description (only the fields present),
    returns the service as stored, and "" / UNSPECIFIED clear a field; the incidents'
    lookups see the criticality."""
    await load_graph(db, tenant, ["checkout", "payments"], [Edge("checkout", "payments")])

    set_all = await graph.UpdateService(
        graph_pb2.UpdateServiceRequest(
            service="checkout",
            team="payments-team",
            criticality=graph_pb2.SERVICE_CRITICALITY_CRITICAL,
            description="takes the money",
        ),
        metadata=as_tenant(tenant),
    )
    node = set_all.service
    assert (node.name, node.team, node.criticality, node.description) == (
        "checkout",
        "payments-team",
        graph_pb2.SERVICE_CRITICALITY_CRITICAL,
        "takes the money",
    )
    assert await service_criticality(db, tenant, "checkout") == "critical"
    assert await criticalities(db, tenant, ["checkout", "payments"]) == {"checkout": "critical"}

    only_team = await graph.UpdateService(
        graph_pb2.UpdateServiceRequest(service="checkout", team=""), metadata=as_tenant(tenant)
    )
    assert only_team.service.team == ""
    assert only_team.service.criticality == graph_pb2.SERVICE_CRITICALITY_CRITICAL
    cleared = await graph.UpdateService(
        graph_pb2.UpdateServiceRequest(
            service="checkout", criticality=graph_pb2.SERVICE_CRITICALITY_UNSPECIFIED
        ),
        metadata=as_tenant(tenant),
    )
    assert cleared.service.criticality == graph_pb2.SERVICE_CRITICALITY_UNSPECIFIED
    assert cleared.service.description == "takes the money"
    row = await db.fetchrow(
        "SELECT team, criticality FROM services WHERE tenant_id = $1 AND name = 'checkout'", tenant
    )
    assert tuple(row) == (None, None)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"service": ""}, "service"),
        ({"service": "checkout", "criticality": 9}, "criticality"),
        ({"service": "checkout", "team": "x" * 129}, "team"),
        ({"service": "checkout", "description": "x" * 4097}, "description"),
    ],
)
async def test_update_service_rejects_bad_fields(
    graph: Any, tenant: str, request_fields: dict[str, Any], field: str
) -> None:
    """A bad field is INVALID_ARGUMENT with a BadRequest naming it."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await graph.UpdateService(
            graph_pb2.UpdateServiceRequest(**request_fields), metadata=as_tenant(tenant)
        )
    assert _bad_field(raised.value) == field


async def test_other_tenants_do_not_see_or_change_a_service(
    graph: Any, db: asyncpg.Connection, tenant: str
) -> None:
    """Another tenant's UpdateService and TraverseDependencies on the service are
    NOT_FOUND, its graph and cycles are empty, and nothing of ours changed."""
    await load_graph(db, tenant, ["a", "b"], [Edge("a", "b"), Edge("b", "a")])
    stranger = as_tenant(f"{tenant}-stranger")
    for call, request in (
        (graph.UpdateService, graph_pb2.UpdateServiceRequest(service="a", team="mine")),
        (graph.TraverseDependencies, graph_pb2.TraverseDependenciesRequest(service="a")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(request, metadata=stranger)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    whole = await graph.GetServiceGraph(graph_pb2.GetServiceGraphRequest(), metadata=stranger)
    assert (list(whole.services), list(whole.dependencies)) == ([], [])
    cycles = await graph.ListDependencyCycles(
        graph_pb2.ListDependencyCyclesRequest(include_resolved=True), metadata=stranger
    )
    assert list(cycles.cycles) == []
    assert (
        await db.fetchval("SELECT team FROM services WHERE tenant_id = $1 AND name = 'a'", tenant)
        is None
    )


async def test_traverse_returns_depths_paths_and_the_subgraph(
    graph: Any, db: asyncpg.Connection, tenant: str
) -> None:
    """TraverseDependencies returns each reached service with depth, path and direction,
    nearest first, plus the edges among them; bad depth and empty service are
    INVALID_ARGUMENT naming the field."""
    await load_graph(
        db,
        tenant,
        ["web", "api", "db", "cache"],
        [Edge("web", "api"), Edge("api", "db"), Edge("api", "cache"), Edge("cache", "db")],
    )
    down = await graph.TraverseDependencies(
        graph_pb2.TraverseDependenciesRequest(service="web", max_depth=3),
        metadata=as_tenant(tenant),
    )
    assert down.service.name == "web"
    assert [(r.service.name, r.depth, list(r.path)) for r in down.reached] == [
        ("api", 1, ["web", "api"]),
        ("db", 2, ["web", "api", "db"]),
        ("cache", 2, ["web", "api", "cache"]),
    ]
    assert {r.direction for r in down.reached} == {graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM}
    assert {(d.source, d.target) for d in down.dependencies} == {
        ("web", "api"),
        ("api", "db"),
        ("api", "cache"),
        ("cache", "db"),
    }
    both = await graph.TraverseDependencies(
        graph_pb2.TraverseDependenciesRequest(
            service="api", direction=graph_pb2.TRAVERSAL_DIRECTION_BOTH, max_depth=1
        ),
        metadata=as_tenant(tenant),
    )
    assert {(r.service.name, r.direction) for r in both.reached} == {
        ("web", graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM),
        ("db", graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM),
        ("cache", graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM),
    }
    for fields, field in (({"service": "web", "max_depth": 11}, "max_depth"), ({}, "service")):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await graph.TraverseDependencies(
                graph_pb2.TraverseDependenciesRequest(**fields), metadata=as_tenant(tenant)
            )
        assert _bad_field(raised.value) == field


async def test_service_graph_counts_calls_within_the_time_range_and_lists_cycles(
    graph: Any, receiver: Receiver, database_url: str, tenant: str
) -> None:
    """After real traffic and an upkeep, GetServiceGraph of the current hour has the ring's
    services and edges with their calls; a range two hours back has none; the cycle is
    listed by ListDependencyCycles; start after end is INVALID_ARGUMENT."""
    await asyncio.to_thread(_calls, receiver.port, tenant, RING + RING[:1])
    connection = await asyncpg.connect(database_url)
    try:
        await run_graph_upkeep(connection, dt.datetime.now(dt.UTC), TEST_CONFIG)
    finally:
        await connection.close()
    now = dt.datetime.now(dt.UTC).timestamp() * 1e9

    current = await graph.GetServiceGraph(
        graph_pb2.GetServiceGraphRequest(
            start_time=_ts(int(now - HOUR_NS)), end_time=_ts(int(now + HOUR_NS))
        ),
        metadata=as_tenant(tenant),
    )
    assert [s.name for s in current.services] == ["svc-a", "svc-b", "svc-c"]
    assert {(d.source, d.target): d.call_count for d in current.dependencies} == {
        ("svc-a", "svc-b"): 2,
        ("svc-b", "svc-c"): 1,
        ("svc-c", "svc-a"): 1,
    }
    assert all(d.protocol == graph_pb2.DEPENDENCY_PROTOCOL_HTTP for d in current.dependencies)
    assert current.start_time.ToNanoseconds() % HOUR_NS == 0

    past = await graph.GetServiceGraph(
        graph_pb2.GetServiceGraphRequest(
            start_time=_ts(int(now - 3 * HOUR_NS)), end_time=_ts(int(now - 2 * HOUR_NS))
        ),
        metadata=as_tenant(tenant),
    )
    assert (list(past.services), list(past.dependencies)) == ([], [])

    cycles = await graph.ListDependencyCycles(
        graph_pb2.ListDependencyCyclesRequest(), metadata=as_tenant(tenant)
    )
    assert [(list(c.path), c.status) for c in cycles.cycles] == [
        (["svc-a", "svc-b", "svc-c"], graph_pb2.CYCLE_STATUS_OPEN)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await graph.GetServiceGraph(
            graph_pb2.GetServiceGraphRequest(start_time=_ts(int(now)), end_time=_ts(int(now))),
            metadata=as_tenant(tenant),
        )
    assert _bad_field(raised.value) == "start_time"


# --------------------------------------------------------------------------- schema


async def test_criticality_check_rejects_unknown_values(
    db: asyncpg.Connection, tenant: str
) -> None:
    """The database refuses a criticality outside low/medium/high/critical."""
    await load_graph(db, tenant, ["a"], [])
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE services SET criticality = 'urgent' WHERE tenant_id = $1", tenant)
    await db.execute("UPDATE services SET criticality = 'high' WHERE tenant_id = $1", tenant)


async def test_updated_at_moves_on_changes_but_not_on_last_seen(
    db: asyncpg.Connection, tenant: str
) -> None:
    """The trigger sets updated_at when the record changes, not when only last_seen moves
    (every aggregation moves it), and nobody can set it by hand."""
    await load_graph(db, tenant, ["a"], [])
    query = "SELECT updated_at FROM services WHERE tenant_id = $1"
    created = await db.fetchval(query, tenant)
    await db.execute("UPDATE services SET last_seen = now() WHERE tenant_id = $1", tenant)
    await db.execute("UPDATE services SET updated_at = 'epoch' WHERE tenant_id = $1", tenant)
    assert await db.fetchval(query, tenant) == created
    await db.execute("UPDATE services SET team = 'core' WHERE tenant_id = $1", tenant)
    assert await db.fetchval(query, tenant) > created


def test_graph_migration_downgrades_alone_and_upgrades_again(
    postgres_server_url: tuple[str, object],
) -> None:
    """Downgrading 0004_service_graph by one step drops exactly its tables (the other
    branches stay); upgrading to heads brings them back."""
    admin_url = postgres_server_url[0]
    name = f"prodsentinel_graph_{uuid.uuid4().hex[:10]}"
    url = _with_database(admin_url, name)

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def tables() -> set[str]:
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            return {row["tablename"] for row in rows}
        finally:
            await connection.close()

    graph_tables = {
        "services",
        "service_dependencies",
        "service_dependency_stats",
        "circular_dependency_alerts",
        "service_graph_watermark",
    }
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        migrations.upgrade(url)
        assert graph_tables <= asyncio.run(tables())
        migrations.downgrade(url, "0004_service_graph@-1")
        remaining = asyncio.run(tables())
        assert not graph_tables & remaining
        assert "spans" in remaining
        migrations.upgrade(url)
        assert graph_tables <= asyncio.run(tables())
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
