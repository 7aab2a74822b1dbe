"""`prodsentinel graph | graph-cycles | graph-set`: the service graph from a terminal.

    prodsentinel graph checkout                  # what checkout calls, as a tree
    prodsentinel graph checkout --up --depth 5   # what calls checkout (blast radius)
    prodsentinel graph checkout --dot | dot -Tsvg > checkout.svg
    prodsentinel graph --dot --since 24h         # the whole graph of the last day
    prodsentinel graph-cycles
    prodsentinel graph-set checkout --team payments --criticality critical

Each command is one or two ServiceGraphService calls over a plain gRPC channel to
--address, with --tenant sent in the tenant header.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from analyzer.graph.render import CRITICALITY_NAMES, render_dot, render_list, render_tree
from prodsentinel.v1 import graph_pb2, graph_pb2_grpc
from receiver.terminal_client import add_connection_arguments, call, guarded

CRITICALITIES = {
    "none": graph_pb2.SERVICE_CRITICALITY_UNSPECIFIED,
    "low": graph_pb2.SERVICE_CRITICALITY_LOW,
    "medium": graph_pb2.SERVICE_CRITICALITY_MEDIUM,
    "high": graph_pb2.SERVICE_CRITICALITY_HIGH,
    "critical": graph_pb2.SERVICE_CRITICALITY_CRITICAL,
}
CYCLE_STATUS_NAMES = {
    graph_pb2.CYCLE_STATUS_OPEN: "open",
    graph_pb2.CYCLE_STATUS_ACKNOWLEDGED: "acknowledged",
    graph_pb2.CYCLE_STATUS_RESOLVED: "resolved",
}

Command = Callable[[argparse.Namespace, Any], int]


def parse_hours(text: str) -> int:
    """`24h`, `2d`, `90m` -> nanoseconds."""
    units = {"m": 60, "h": 3600, "d": 86_400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 24h, 7d)")
    return int(number) * units[unit] * 1_000_000_000


def add_commands(subparsers: Any) -> None:
    """Add graph, graph-cycles and graph-set to the `prodsentinel` command parser."""
    graph = _command(subparsers, "graph", "show a service's dependencies (tree or DOT)", _graph)
    graph.add_argument("service", nargs="?", default="", help="omit for the whole graph")
    way = graph.add_mutually_exclusive_group()
    way.add_argument("--up", action="store_true", help="what calls the service")
    way.add_argument("--both", action="store_true", help="both directions")
    graph.add_argument("--depth", type=int, default=3, help="hops, 1-10 (default 3)")
    graph.add_argument("--include-stale", action="store_true", help="follow stale edges too")
    graph.add_argument("--dot", action="store_true", help="write Graphviz DOT")
    graph.add_argument(
        "--since",
        type=parse_hours,
        default=parse_hours("24h"),
        help="without a service: the time range (default 24h)",
    )

    cycles = _command(subparsers, "graph-cycles", "list dependency cycle alerts", _cycles)
    cycles.add_argument("--all", action="store_true", help="resolved ones too")

    update = _command(subparsers, "graph-set", "set a service's team/criticality", _update)
    update.add_argument("service")
    update.add_argument("--team", help='"" clears it')
    update.add_argument("--criticality", choices=sorted(CRITICALITIES))
    update.add_argument("--description", help='"" clears it')


def _command(subparsers: Any, name: str, help_text: str, run: Command) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
    add_connection_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _graph(args: argparse.Namespace, settings: Any) -> int:
    def body() -> None:
        if not args.service:
            end = time.time_ns()
            start_ts, end_ts = Timestamp(), Timestamp()
            start_ts.FromNanoseconds(end - args.since)
            end_ts.FromNanoseconds(end)
            whole = call(
                args,
                settings.tenant_header,
                graph_pb2_grpc.ServiceGraphServiceStub,
                "GetServiceGraph",
                graph_pb2.GetServiceGraphRequest(start_time=start_ts, end_time=end_ts),
            )
            print(
                render_dot(whole.services, whole.dependencies) if args.dot else render_list(whole)
            )
            return
        direction = graph_pb2.TRAVERSAL_DIRECTION_DOWNSTREAM
        if args.up:
            direction = graph_pb2.TRAVERSAL_DIRECTION_UPSTREAM
        elif args.both:
            direction = graph_pb2.TRAVERSAL_DIRECTION_BOTH
        request = graph_pb2.TraverseDependenciesRequest(
            service=args.service,
            direction=direction,
            max_depth=args.depth,
            include_stale=args.include_stale,
        )
        response = call(
            args,
            settings.tenant_header,
            graph_pb2_grpc.ServiceGraphServiceStub,
            "TraverseDependencies",
            request,
        )
        if args.dot:
            nodes = [response.service, *(item.service for item in response.reached)]
            unique = {node.name: node for node in nodes}
            print(render_dot(unique.values(), response.dependencies, highlight=args.service))
        else:
            print(render_tree(response))

    return guarded(body)


def _cycles(args: argparse.Namespace, settings: Any) -> int:
    def body() -> None:
        request = graph_pb2.ListDependencyCyclesRequest(include_resolved=args.all)
        response = call(
            args,
            settings.tenant_header,
            graph_pb2_grpc.ServiceGraphServiceStub,
            "ListDependencyCycles",
            request,
        )
        for cycle in response.cycles:
            path = " -> ".join([*cycle.path, cycle.path[0]])
            detected = _iso(cycle.detected.ToMicroseconds())
            status = CYCLE_STATUS_NAMES.get(cycle.status, "?")
            print(f"{status:<12} since {detected}  {path}")
        if not response.cycles:
            print("(no dependency cycles)")

    return guarded(body)


def _update(args: argparse.Namespace, settings: Any) -> int:
    def body() -> None:
        request = graph_pb2.UpdateServiceRequest(service=args.service)
        if args.team is not None:
            request.team = args.team
        if args.criticality is not None:
            request.criticality = CRITICALITIES[args.criticality]
        if args.description is not None:
            request.description = args.description
        response = call(
            args,
            settings.tenant_header,
            graph_pb2_grpc.ServiceGraphServiceStub,
            "UpdateService",
            request,
        )
        node = response.service
        criticality = CRITICALITY_NAMES.get(node.criticality, "-")
        print(
            f"{node.name}: team={node.team or '-'} criticality={criticality} "
            f"description={node.description or '-'}"
        )

    return guarded(body)


def _iso(us: int) -> str:
    moment = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
