"""Terminal client: `prodsentinel incidents` and `prodsentinel incident ID` over the gRPC API.

    prodsentinel incidents [--status open ...] [--severity high ...] [--service S] [--limit N]
    prodsentinel incident 42 [--acknowledge | --resolve] [--by NAME] [--note TEXT]

It talks to a running receiver (`--address`, by default the local PRODSENTINEL_GRPC_ADDRESS)
as tenant `--tenant` (sent in PRODSENTINEL_TENANT_HEADER).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from analyzer.lifecycle import IncidentSeverity, IncidentStatus
from analyzer.service import SEVERITY_TO_PB, STATUS_TO_PB
from prodsentinel.v1 import incidents_pb2 as pb
from prodsentinel.v1 import incidents_pb2_grpc

STATUS_NAMES = {value: key.value for key, value in STATUS_TO_PB.items()}
SEVERITY_NAMES = {value: key.value for key, value in SEVERITY_TO_PB.items()}
CALL_TIMEOUT_SECONDS = 10.0


def add_commands(subparsers: Any) -> None:
    """Add `incidents` and `incident` to the `prodsentinel` command line (cli.py calls this)."""
    listing = subparsers.add_parser("incidents", help="list incidents, most recently seen first")
    _connection_arguments(listing)
    listing.add_argument(
        "--status", action="append", choices=[s.value for s in IncidentStatus], default=[]
    )
    listing.add_argument(
        "--severity", action="append", choices=[s.value for s in IncidentSeverity], default=[]
    )
    listing.add_argument("--service", default="", help="origin service or any service affected")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=run_list)

    one = subparsers.add_parser("incident", help="show, acknowledge or resolve one incident")
    _connection_arguments(one)
    one.add_argument("id")
    action = one.add_mutually_exclusive_group()
    action.add_argument("--acknowledge", action="store_true")
    action.add_argument("--resolve", action="store_true")
    one.add_argument("--by", default=None, help="who (default: the login name)")
    one.add_argument("--note", default="")
    one.add_argument("--occurrences", type=int, default=10)
    one.set_defaults(run=run_one)


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, help="receiver host:port (default: local)")
    parser.add_argument("--tenant", default="default")


def _target(args: argparse.Namespace, settings: Any) -> str:
    if args.address:
        return str(args.address)
    host, _, port = str(settings.grpc_address).rpartition(":")
    return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]', '') else host}:{port}"


def _call(args: argparse.Namespace, settings: Any, method: str, request: Any) -> Any:
    with grpc.insecure_channel(_target(args, settings)) as channel:
        stub = incidents_pb2_grpc.IncidentServiceStub(channel)
        metadata = ((settings.tenant_header, args.tenant),)
        return getattr(stub, method)(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)


def run_list(args: argparse.Namespace, settings: Any) -> int:
    request = pb.ListIncidentsRequest(
        statuses=[STATUS_TO_PB[IncidentStatus(s)] for s in args.status],
        severities=[SEVERITY_TO_PB[IncidentSeverity(s)] for s in args.severity],
        service=args.service,
        page_size=args.limit,
    )
    try:
        response = _call(args, settings, "ListIncidents", request)
    except grpc.RpcError as error:
        return _failed(error)
    print(format_incidents(list(response.incidents)))
    return 0


def run_one(args: argparse.Namespace, settings: Any) -> int:
    try:
        if args.acknowledge or args.resolve:
            by = args.by or getpass.getuser()
            if args.acknowledge:
                _call(
                    args,
                    settings,
                    "AcknowledgeIncident",
                    pb.AcknowledgeIncidentRequest(id=args.id, by=by, note=args.note),
                )
            else:
                _call(
                    args,
                    settings,
                    "ResolveIncident",
                    pb.ResolveIncidentRequest(id=args.id, by=by, note=args.note),
                )
        response = _call(
            args,
            settings,
            "GetIncident",
            pb.GetIncidentRequest(id=args.id, occurrence_limit=args.occurrences),
        )
    except grpc.RpcError as error:
        return _failed(error)
    print(format_incident(response))
    return 0


def _failed(error: grpc.RpcError) -> int:
    code = error.code().name if hasattr(error, "code") else "ERROR"
    details = error.details() if hasattr(error, "details") else str(error)
    print(f"prodsentinel: {code}: {details}", file=sys.stderr)
    return 1


def _when(stamp: timestamp_pb2.Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_incidents(incidents: list[pb.Incident]) -> str:
    """A table: id, status, severity, count, last seen, service, title."""
    if not incidents:
        return "no incidents"
    header = ("ID", "STATUS", "SEVERITY", "COUNT", "LAST SEEN (UTC)", "SERVICE", "TITLE")
    rows = [
        (
            i.id,
            STATUS_NAMES.get(i.status, "?"),
            SEVERITY_NAMES.get(i.severity, "?"),
            str(i.occurrence_count),
            _when(i.last_seen),
            i.service_name,
            i.title,
        )
        for i in incidents
    ]
    widths = [max(len(row[n]) for row in (header, *rows)) for n in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def format_incident(response: pb.GetIncidentResponse) -> str:
    """One incident: its facts, latest occurrences and history."""
    i = response.incident
    lines = [
        f"incident {i.id}: {i.title}",
        f"  status    {STATUS_NAMES.get(i.status, '?')}    severity {SEVERITY_NAMES.get(i.severity, '?')}",
        f"  origin    {i.service_name} / {i.operation}",
        f"  seen      {i.occurrence_count} times, {_when(i.first_seen)} .. {_when(i.last_seen)} UTC",
        f"  services  {', '.join(i.services)}",
    ]
    if i.acknowledged_by:
        lines.append(f"  acknowledged by {i.acknowledged_by} at {_when(i.acknowledged_at)}")
    if i.resolved_by:
        lines.append(
            f"  resolved by {i.resolved_by} at {_when(i.resolved_at)}: {i.resolution_note}"
        )
    lines.append("occurrences (latest first):")
    for o in response.occurrences:
        trace = o.trace_id or "(log without trace)"
        lines.append(
            f"  {_when(o.time)}  {trace}  {o.service_name}  {SEVERITY_NAMES.get(o.severity, '?')}"
        )
    lines.append("history:")
    for e in response.events:
        change = f"{e.from_value or '-'} -> {e.to_value}"
        note = f" ({e.note})" if e.note else ""
        lines.append(f"  {_when(e.time)}  {change:<28} {e.reason} [{e.actor}]{note}")
    lines.extend(format_analyses(response.analyses))
    return "\n".join(lines)


def format_analyses(analyses: Sequence[pb.Analysis]) -> list[str]:
    """The incident's triage analyses, newest first: root cause, summary and next steps."""
    lines = ["analyses (latest first):"] if analyses else []
    for a in analyses:
        who = f" {a.provider}/{a.model}" if a.provider else ""
        lines.append(
            f"  {_when(a.created_at)}  tier {a.tier}{who}  {a.trigger}  {a.status}"
            + (
                f"  root cause {a.root_cause_service} ({a.confidence:.2f})"
                if a.root_cause_service
                else ""
            )
        )
        if a.summary:
            lines.append(f"    {a.summary}")
        lines.extend(f"    - {step}" for step in a.next_steps)
        if a.error:
            lines.append(f"    error: {a.error}")
    return lines
