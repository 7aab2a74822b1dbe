"""The graph as text: a dependency tree for a terminal, and Graphviz DOT for a picture.

Pure functions of graph.proto messages. A traversal's shortest paths form a tree (each
path's prefix is its parent's path), so the tree is built from the paths alone; the
edges annotate it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from prodsentinel.v1 import graph_pb2

CRITICALITY_NAMES = {
    graph_pb2.SERVICE_CRITICALITY_LOW: "low",
    graph_pb2.SERVICE_CRITICALITY_MEDIUM: "medium",
    graph_pb2.SERVICE_CRITICALITY_HIGH: "high",
    graph_pb2.SERVICE_CRITICALITY_CRITICAL: "critical",
}
KIND_NAMES = {
    graph_pb2.SERVICE_KIND_DATABASE: "database",
    graph_pb2.SERVICE_KIND_MESSAGING: "messaging",
    graph_pb2.SERVICE_KIND_EXTERNAL: "external",
}
PROTOCOL_NAMES = {
    graph_pb2.DEPENDENCY_PROTOCOL_HTTP: "http",
    graph_pb2.DEPENDENCY_PROTOCOL_GRPC: "grpc",
    graph_pb2.DEPENDENCY_PROTOCOL_DB: "db",
    graph_pb2.DEPENDENCY_PROTOCOL_MESSAGING: "messaging",
    graph_pb2.DEPENDENCY_PROTOCOL_OTHER: "other",
}
DOT_SHAPES = {
    graph_pb2.SERVICE_KIND_DATABASE: "cylinder",
    graph_pb2.SERVICE_KIND_MESSAGING: "cds",
    graph_pb2.SERVICE_KIND_EXTERNAL: "hexagon",
}
HEADINGS = {
    graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM: "downstream (what it calls)",
    graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM: "upstream (what calls it)",
}


def describe_service(node: graph_pb2.ServiceNode) -> str:
    """`name [kind, criticality, team T]`, leaving out what is not set."""
    notes = []
    if node.kind in KIND_NAMES:
        notes.append(KIND_NAMES[node.kind])
    elif not node.instrumented:
        notes.append("uninstrumented")
    if node.criticality in CRITICALITY_NAMES:
        notes.append(CRITICALITY_NAMES[node.criticality])
    if node.team:
        notes.append(f"team {node.team}")
    return f"{node.name} [{', '.join(notes)}]" if notes else node.name


def describe_edge(edge: graph_pb2.Dependency) -> str:
    """`grpc sync, 12 calls, 1 error, p95 45.0 ms` (+ `, stale`)."""
    mode = "async" if edge.mode == graph_pb2.COMMUNICATION_MODE_ASYNC else "sync"
    parts = [
        f"{PROTOCOL_NAMES.get(edge.protocol, 'other')} {mode}",
        f"{edge.call_count} call{'s' if edge.call_count != 1 else ''}",
    ]
    if edge.error_count:
        parts.append(f"{edge.error_count} error{'s' if edge.error_count != 1 else ''}")
    if edge.call_count:
        parts.append(f"p95 {edge.latency.p95_ms:.1f} ms")
    if edge.stale:
        parts.append("stale")
    return ", ".join(parts)


def render_tree(response: graph_pb2.TraverseDependenciesResponse) -> str:
    """The traversal as an indented tree per direction, each line with its edge."""
    edges: dict[tuple[str, str], list[graph_pb2.Dependency]] = defaultdict(list)
    for edge in response.dependencies:
        edges[(edge.source, edge.target)].append(edge)
    lines = [describe_service(response.service)]
    directions = sorted({item.direction for item in response.reached})
    for direction in directions:
        items = [item for item in response.reached if item.direction == direction]
        children: dict[tuple[str, ...], list[graph_pb2.ReachedService]] = defaultdict(list)
        for item in items:
            children[tuple(item.path[:-1])].append(item)
        if len(directions) > 1:
            lines.append(f"{HEADINGS.get(direction, '')}:")
        arrow = "<-" if direction == graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM else "->"
        _branch(lines, children, (response.service.name,), "", arrow, edges)
    if not response.reached:
        lines.append("(no dependencies)")
    return "\n".join(lines)


def _branch(
    lines: list[str],
    children: dict[tuple[str, ...], list[graph_pb2.ReachedService]],
    path: tuple[str, ...],
    indent: str,
    arrow: str,
    edges: dict[tuple[str, str], list[graph_pb2.Dependency]],
) -> None:
    below = sorted(children.get(path, ()), key=lambda item: item.service.name)
    for position, item in enumerate(below):
        last = position == len(below) - 1
        parent, name = path[-1], item.service.name
        pair = (parent, name) if arrow == "->" else (name, parent)
        label = "; ".join(describe_edge(edge) for edge in edges.get(pair, ()))
        branch = "└" if last else "├"
        lines.append(
            f"{indent}{branch}{arrow} {describe_service(item.service)}"
            + (f"  ({label})" if label else "")
        )
        _branch(lines, children, (*path, name), indent + ("   " if last else "│  "), arrow, edges)


def render_list(response: graph_pb2.GetServiceGraphResponse) -> str:
    """The whole graph of a time range: each service with what it calls."""
    calls: dict[str, list[graph_pb2.Dependency]] = defaultdict(list)
    for edge in response.dependencies:
        calls[edge.source].append(edge)
    lines = []
    for node in response.services:
        lines.append(describe_service(node))
        for edge in sorted(calls.get(node.name, ()), key=lambda e: e.target):
            lines.append(f"  -> {edge.target}  ({describe_edge(edge)})")
    if response.truncated:
        lines.append("(truncated: more dependencies than one answer holds)")
    return "\n".join(lines) if lines else "(no services in this time range)"


def dot_id(text: str) -> str:
    """A DOT quoted id: quotes, backslashes and newlines escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_dot(
    services: Iterable[graph_pb2.ServiceNode],
    dependencies: Sequence[graph_pb2.Dependency],
    highlight: str = "",
) -> str:
    """Graphviz DOT: databases as cylinders, brokers as cds, external hosts as hexagons;
    stale edges dashed, async edges with open arrowheads, erroring edges red."""
    lines = [
        "digraph services {",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in sorted(services, key=lambda n: n.name):
        attributes = [f"label={dot_id(describe_service(node).replace(' [', chr(10) + '['))}"]
        if node.kind in DOT_SHAPES:
            attributes.append(f"shape={DOT_SHAPES[node.kind]}")
        if node.name == highlight:
            attributes.append('style="rounded,bold"')
        lines.append(f"  {dot_id(node.name)} [{', '.join(attributes)}];")
    for edge in dependencies:
        attributes = [f"label={dot_id(describe_edge(edge).replace(', ', chr(10)))}"]
        if edge.stale:
            attributes.append("style=dashed")
        if edge.mode == graph_pb2.COMMUNICATION_MODE_ASYNC:
            attributes.append("arrowhead=empty")
        if edge.error_count:
            attributes.append("color=red")
        lines.append(f"  {dot_id(edge.source)} -> {dot_id(edge.target)} [{', '.join(attributes)}];")
    lines.append("}")
    return "\n".join(lines)
