"""The graph discovered from real multi-service traces sent through the OpenTelemetry SDK.

Four instrumented services (each its own TracerProvider, resource and OTLP exporter, so a
parent and its child reach the receiver in different requests, some parents before their
children, some after) call each other and three uninstrumented peers; run_graph_upkeep
then derives the catalog and the edges from the stored spans.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import asyncpg
from opentelemetry.trace import SpanKind, Status, StatusCode
from test_graph_fixtures import (
    TEST_CONFIG,
    SdkService,
    duration_ms,
    edges_of,
    incoming,
    outgoing,
)

from analyzer.graph.config import GraphConfig
from analyzer.graph.model import LATENCY_BUCKETS
from analyzer.graph.upkeep import run_graph_upkeep
from receiver.app import Receiver

pytest_plugins = ["test_graph_fixtures"]

SHOP = {"service.namespace": "shop", "deployment.environment.name": "prod"}


def _shop_traffic(port: int | None, tenant: str, rounds: int) -> dict[str, SdkService]:
    """`rounds` checkouts: frontend -> checkout (http) -> payments (grpc, fails in round 0)
    -> api.bank.example; checkout -> postgresql (db), card-gateway (peer.service) and
    kafka -> shipping (async). Each service flushes its own spans, in a mixed order."""
    frontend = SdkService("frontend", port, tenant, **SHOP)
    checkout = SdkService("checkout", port, tenant, **SHOP)
    payments = SdkService("payments", port, tenant, **{"service.namespace": "money"})
    shipping = SdkService("shipping", port, tenant)
    for round_ in range(rounds):
        with (
            frontend.tracer.start_as_current_span("GET /buy", kind=SpanKind.SERVER),
            frontend.tracer.start_as_current_span(
                "POST",
                kind=SpanKind.CLIENT,
                attributes={"http.request.method": "POST", "server.address": "checkout"},
            ),
        ):
            request = outgoing()
            with checkout.tracer.start_as_current_span(
                "POST /checkout",
                context=incoming(request),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.route": "/checkout"},
            ):
                with checkout.tracer.start_as_current_span(
                    "payments.Charge",
                    kind=SpanKind.CLIENT,
                    attributes={"rpc.system": "grpc", "server.address": "payments"},
                ):
                    charge = outgoing()
                    with payments.tracer.start_as_current_span(
                        "payments.Charge",
                        context=incoming(charge),
                        kind=SpanKind.SERVER,
                        attributes={"rpc.system": "grpc"},
                    ) as served:
                        with payments.tracer.start_as_current_span(
                            "POST",
                            kind=SpanKind.CLIENT,
                            attributes={
                                "http.request.method": "POST",
                                "server.address": "api.bank.example",
                            },
                        ):
                            pass
                        if round_ == 0:
                            served.set_status(Status(StatusCode.ERROR, "card declined"))
                with checkout.tracer.start_as_current_span(
                    "INSERT orders",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "db.system": "postgresql",
                        "db.namespace": "orders",
                        "server.address": "orders-db",
                    },
                ):
                    pass
                with checkout.tracer.start_as_current_span(
                    "GET /cards",
                    kind=SpanKind.CLIENT,
                    attributes={"peer.service": "card-gateway", "http.request.method": "GET"},
                ):
                    pass
                with checkout.tracer.start_as_current_span(
                    "orders publish",
                    kind=SpanKind.PRODUCER,
                    attributes={"messaging.system": "kafka", "server.address": "broker"},
                ):
                    message = outgoing()
        # The consumer picks the message up after the producer (and the request) ended.
        with shipping.tracer.start_as_current_span(
            "orders process",
            context=incoming(message),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka"},
        ):
            pass
    for service in (frontend, payments, checkout, shipping):  # parents and children apart
        service.flush()
        service.shutdown()
    return {"frontend": frontend, "checkout": checkout, "payments": payments}


async def _upkeep(database_url: str, config: GraphConfig = TEST_CONFIG) -> Any:
    connection = await asyncpg.connect(database_url)
    try:
        return await run_graph_upkeep(connection, dt.datetime.now(dt.UTC), config)
    finally:
        await connection.close()


def _summary(row: Any) -> tuple[Any, ...]:
    return (
        row["call_count"],
        row["error_count"],
        row["protocol"],
        row["communication_mode"],
        row["confidence"],
        row["is_stale"],
    )


async def test_edges_from_sdk_traces_with_counts_errors_protocol_and_mode(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """Two checkouts give exactly the expected edges: trace edges where a span's parent is
    in another service (sync http/grpc, async messaging), peer edges to the uninstrumented
    database, peer.service and external host; a client span whose callee is instrumented
    makes no peer edge. Counts are per call, errors from either side, confidence by
    discovery source."""
    services = await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 2)

    summary = await _upkeep(database_url)
    assert summary.calls >= 12

    edges = await edges_of(db, tenant)
    assert {key: _summary(row) for key, row in edges.items()} == {
        ("frontend", "checkout", "trace"): (2, 0, "http", "sync", 1.0, False),
        ("checkout", "payments", "trace"): (2, 1, "grpc", "sync", 1.0, False),
        ("checkout", "shipping", "trace"): (2, 0, "messaging", "async", 1.0, False),
        ("checkout", "postgresql@orders-db", "db_system"): (2, 0, "db", "sync", 0.8, False),
        ("checkout", "card-gateway", "peer_service"): (2, 0, "http", "sync", 0.9, False),
        ("payments", "api.bank.example", "server_address"): (2, 0, "http", "sync", 0.6, False),
    }
    # The caller's CLIENT spans measure a sync edge's latency.
    charges = services["checkout"].spans("payments.Charge")
    payments = edges[("checkout", "payments", "trace")]
    assert math.isclose(payments["latency_sum_ms"], sum(map(duration_ms, charges)), rel_tol=1e-9)
    assert payments["latency_max_ms"] == max(map(duration_ms, charges))
    assert len(payments["latency_buckets"]) == LATENCY_BUCKETS
    assert sum(payments["latency_buckets"]) == 2
    # A call is observed when the callee's span ended.
    served = max(span.end_time or 0 for span in services["checkout"].spans("POST /checkout"))
    assert edges[("frontend", "checkout", "trace")]["last_observed_us"] == served // 1000


async def test_services_are_discovered_with_resource_metadata_and_peer_kinds(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """Instrumented services keep service.namespace and deployment.environment.name from
    their resource; peers known only from client spans are uninstrumented, with the kind
    their attributes show (database, external, or service for peer.service)."""
    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 1)
    await _upkeep(database_url)

    rows = await db.fetch(
        "SELECT name, kind, instrumented, namespace, environment, first_seen <= last_seen AS ok "
        "FROM services WHERE tenant_id = $1",
        tenant,
    )
    assert {row["name"]: tuple(row)[1:] for row in rows} == {
        "frontend": ("service", True, "shop", "prod", True),
        "checkout": ("service", True, "shop", "prod", True),
        "payments": ("service", True, "money", "", True),
        "shipping": ("service", True, "", "", True),
        "postgresql@orders-db": ("database", False, "", "", True),
        "card-gateway": ("service", False, "", "", True),
        "api.bank.example": ("external", False, "", "", True),
    }


async def test_rerunning_upkeep_counts_nothing_twice(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """A second run (and a third) over the same stored spans leaves every counter, the
    hourly stats and the latency histograms as they were: the watermark moved with them."""
    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 1)
    await _upkeep(database_url)
    before = {key: dict(row) for key, row in (await edges_of(db, tenant)).items()}

    await _upkeep(database_url)
    await _upkeep(database_url)

    after = {key: dict(row) for key, row in (await edges_of(db, tenant)).items()}
    assert after == before
    stats = await db.fetch(
        "SELECT d.id, sum(st.call_count) AS calls FROM service_dependency_stats st "
        "JOIN service_dependencies d ON d.id = st.edge_id WHERE d.tenant_id = $1 GROUP BY d.id",
        tenant,
    )
    assert {row["id"]: row["calls"] for row in stats} == {
        row["id"]: row["call_count"] for row in after.values()
    }


async def test_new_calls_add_to_existing_edges(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """Calls stored after a run are added by the next run to the same edges (one row per
    source, target and discovery source), and last_observed moves forward."""
    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 1)
    await _upkeep(database_url)
    first = await edges_of(db, tenant)

    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 2)
    await _upkeep(database_url)
    second = await edges_of(db, tenant)

    assert set(second) == set(first)
    for key, row in second.items():
        assert row["call_count"] == 3, key
        assert row["last_observed_at"] > first[key]["last_observed_at"], key
    assert second[("checkout", "payments", "trace")]["error_count"] == 2


async def test_spans_within_the_settle_delay_wait_for_the_next_run(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """Spans that ended less than settle_seconds ago are not read yet (the other side of
    a call may still be on its way); a later run counts them, once."""
    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 1)

    waiting = await _upkeep(database_url, GraphConfig(settle_seconds=3600))
    assert await edges_of(db, tenant) == {}
    assert waiting.calls == 0

    await _upkeep(database_url)
    edges = await edges_of(db, tenant)
    assert edges[("frontend", "checkout", "trace")]["call_count"] == 1


async def test_graphs_of_tenants_are_separate(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """The same service names sent by two tenants make two separate graphs."""
    other = f"{tenant}-other"
    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 2)
    await asyncio.to_thread(_shop_traffic, receiver.port, other, 1)
    await _upkeep(database_url)

    mine, theirs = await edges_of(db, tenant), await edges_of(db, other)
    assert set(mine) == set(theirs)
    assert {row["call_count"] for row in mine.values()} == {2}
    assert {row["call_count"] for row in theirs.values()} == {1}


async def test_concurrent_runs_count_each_call_once(
    receiver: Receiver, db: asyncpg.Connection, database_url: str, tenant: str
) -> None:
    """Runs started together from several processes (here: connections) take turns or
    skip; every call is still counted exactly once."""
    await asyncio.to_thread(_shop_traffic, receiver.port, tenant, 1)

    summaries = await asyncio.gather(*(_upkeep(database_url) for _ in range(4)))

    assert any(not summary.skipped for summary in summaries)
    edges = await edges_of(db, tenant)
    assert len(edges) == 6
    assert {row["call_count"] for row in edges.values()} == {1}
