"""`prodsentinel graph`, `graph-cycles` and `graph-set` against a real server, and the
tree and DOT renderings they print.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import pytest
import structlog.testing

from analyzer.graph.bench import Edge, load_graph
from analyzer.graph.cycles import sync_cycle_alerts
from analyzer.graph.render import dot_id, render_dot, render_tree
from analyzer.graph.terminal import add_commands
from prodsentinel.v1 import graph_pb2
from receiver.settings import Settings

pytest_plugins = ["test_graph_fixtures"]

SHOP = ["web", "api", "postgresql@db", "cache"]
SHOP_EDGES = [Edge("web", "api"), Edge("api", "postgresql@db"), Edge("api", "cache")]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prodsentinel")
    add_commands(parser.add_subparsers(required=True))
    return parser.parse_args(argv)


async def _run(argv: list[str], port: int, tenant: str) -> int:
    """Run a command as `prodsentinel` would (blocking gRPC, so in a thread); the
    in-process server's logs are captured so stdout holds only what the command printed."""
    args = _parse([*argv, "--address", f"127.0.0.1:{port}", "--tenant", tenant])
    with structlog.testing.capture_logs():
        result: int = await asyncio.to_thread(args.run, args, Settings())
    return result


async def test_graph_prints_a_tree_of_dependencies(
    graph_port: int, db: asyncpg.Connection, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prodsentinel graph web` prints web's dependencies as a tree, each line with what
    the service is and how it is called."""
    await load_graph(db, tenant, SHOP, SHOP_EDGES)
    await db.execute(
        "UPDATE services SET kind = 'database', instrumented = false "
        "WHERE tenant_id = $1 AND name = 'postgresql@db'",
        tenant,
    )
    await db.execute(
        "UPDATE services SET criticality = 'critical', team = 'core' "
        "WHERE tenant_id = $1 AND name = 'api'",
        tenant,
    )
    assert await _run(["graph", "web"], graph_port, tenant) == 0
    assert capsys.readouterr().out.splitlines() == [
        "web",
        "└-> api [critical, team core]  (http sync, 1 call, p95 1.0 ms)",
        "   ├-> cache  (http sync, 1 call, p95 1.0 ms)",
        "   └-> postgresql@db [database]  (http sync, 1 call, p95 1.0 ms)",
    ]


async def test_graph_up_dot_and_errors(
    graph_port: int, db: asyncpg.Connection, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--up walks callers; --dot writes a Graphviz digraph with every edge among the
    reached services; an unknown service prints NOT_FOUND and exits 1."""
    await load_graph(db, tenant, SHOP, SHOP_EDGES)
    assert await _run(["graph", "cache", "--up"], graph_port, tenant) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cache",
        "└<- api  (http sync, 1 call, p95 1.0 ms)",
        "   └<- web  (http sync, 1 call, p95 1.0 ms)",
    ]
    assert await _run(["graph", "web", "--dot"], graph_port, tenant) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph services {")
    assert '"api" -> "postgresql@db"' in dot
    assert dot.count(" -> ") == 3
    assert await _run(["graph", "nobody"], graph_port, tenant) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


async def test_graph_set_and_cycles(
    graph_port: int, db: asyncpg.Connection, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`graph-set` updates a service's metadata; `graph-cycles` lists the open cycles."""
    await load_graph(db, tenant, ["a", "b"], [Edge("a", "b"), Edge("b", "a")])
    await sync_cycle_alerts(db, tenant, 1_000_000, max_cycles=10)
    assert (
        await _run(
            ["graph-set", "a", "--team", "core", "--criticality", "high"], graph_port, tenant
        )
        == 0
    )
    assert "team=core criticality=high" in capsys.readouterr().out
    assert (
        await db.fetchval(
            "SELECT criticality FROM services WHERE tenant_id = $1 AND name = 'a'", tenant
        )
        == "high"
    )
    assert await _run(["graph-cycles"], graph_port, tenant) == 0
    assert capsys.readouterr().out.strip() == "open         since 1970-01-01T00:00:01Z  a -> b -> a"


def _node(name: str, **fields: Any) -> graph_pb2.ServiceNode:
    return graph_pb2.ServiceNode(name=name, **{"instrumented": True, **fields})


def test_tree_of_both_directions_has_a_heading_each() -> None:
    """With both directions the tree shows a downstream and an upstream part."""
    response = graph_pb2.TraverseDependenciesResponse(
        service=_node("api"),
        reached=[
            graph_pb2.ReachedService(
                service=_node("db"),
                depth=1,
                path=["api", "db"],
                direction=graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM,
            ),
            graph_pb2.ReachedService(
                service=_node("web", instrumented=False),
                depth=1,
                path=["api", "web"],
                direction=graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM,
            ),
        ],
    )
    assert render_tree(response).splitlines() == [
        "api",
        "downstream (what it calls):",
        "└-> db",
        "upstream (what calls it):",
        "└<- web [uninstrumented]",
    ]


def test_dot_escapes_names_and_marks_stale_async_and_failing_edges() -> None:
    """Names with quotes stay one DOT id; stale edges are dashed, async ones have open
    arrowheads, failing ones are red; databases are cylinders."""
    assert dot_id('a "b"\\c') == '"a \\"b\\"\\\\c"'
    dot = render_dot(
        [_node("a"), _node("pg", kind=graph_pb2.SERVICE_KIND_DATABASE)],
        [
            graph_pb2.Dependency(
                source="a",
                target="pg",
                stale=True,
                mode=graph_pb2.COMMUNICATION_MODE_ASYNC,
                call_count=3,
                error_count=1,
            )
        ],
    )
    assert '"pg" [label="pg\\n[database]", shape=cylinder];' in dot
    assert "style=dashed, arrowhead=empty, color=red" in dot
