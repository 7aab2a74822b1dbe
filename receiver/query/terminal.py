"""`prodsentinel trace | traces | logs | services`: the query API from a terminal.

Each command is one (or, for `services`, a few) QueryService calls over a plain gRPC
channel to --address, with --tenant sent in the tenant header; answers are printed as
text. Filters are the API's own: a list command prints a `--page-token` to continue.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from prodsentinel.v1 import query_pb2, query_pb2_grpc
from receiver.mapping.values import json_to_any_value
from receiver.query.waterfall import (
    body_text,
    format_duration,
    render_waterfall,
    service_of,
    severity_name,
)
from receiver.settings import Settings
from receiver.terminal_client import add_connection_arguments, call, guarded

SEVERITIES = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}

Command = Callable[[argparse.Namespace, Settings], int]


def parse_duration(text: str) -> int:
    """`250ms`, `1.5s`, `1h30m`, `7d` -> nanoseconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 250ms, 1.5s, 1h30m)")
    return round(sum(float(number) * _UNIT_NS[unit] for number, unit in parts))


def parse_time(text: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) -> Unix nanoseconds."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def parse_attribute(text: str) -> KeyValue:
    """`key=value`: the value as JSON when it parses (502, true, 1.5, "502"), else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"not key=value: {text!r}")
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    attribute = KeyValue(key=key)
    json_to_any_value(value, attribute.value)
    return attribute


def parse_severity(text: str) -> int:
    """A severity name (trace ... fatal) or number (1-24) -> the SeverityNumber."""
    number = SEVERITIES.get(text.lower())
    if number is None and text.isdigit() and 1 <= int(text) <= 24:
        number = int(text)
    if number is None:
        raise argparse.ArgumentTypeError(
            f"not a severity: {text!r} (trace, debug, info, warn, error, fatal or 1-24)"
        )
    return number


def add_commands(subparsers: Any) -> None:
    """Add trace, traces, logs and services to the `prodsentinel` command parser."""
    trace = _command(subparsers, "trace", "show one trace as a waterfall, with its logs", _trace)
    trace.add_argument("trace_id", help="32 hexadecimal characters")
    trace.add_argument("--width", type=int, default=120, help="line width (default 120)")

    traces = _command(subparsers, "traces", "find traces (newest first)", _traces)
    _add_window(traces, required=True)
    traces.add_argument("--service", default="")
    traces.add_argument("--operation", default="", help="span name")
    _add_attributes(traces)
    traces.add_argument("--min-duration", type=parse_duration, metavar="DURATION")
    traces.add_argument("--max-duration", type=parse_duration, metavar="DURATION")
    traces.add_argument("--errors", action="store_true", help="only spans with status ERROR")
    _add_paging(traces)

    logs = _command(subparsers, "logs", "search log records (newest first)", _logs)
    _add_window(logs, required=True)
    logs.add_argument("--service", default="")
    logs.add_argument(
        "--severity",
        type=parse_severity,
        default=0,
        help="minimum: trace, debug, info, warn, error, fatal or 1-24",
    )
    logs.add_argument("--trace-id", default="")
    logs.add_argument("--contains", default="", help="body substring (case-sensitive)")
    _add_attributes(logs)
    _add_paging(logs)

    services = _command(subparsers, "services", "list services seen recently", _services)
    _add_window(services, required=False)


def _command(subparsers: Any, name: str, help_text: str, run: Command) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
    add_connection_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _add_window(parser: argparse.ArgumentParser, *, required: bool) -> None:
    default = "1h" if required else "7d"
    parser.add_argument(
        "--since",
        type=parse_duration,
        metavar="DURATION",
        help=f"last DURATION (default {default})",
    )
    parser.add_argument("--start", type=parse_time, metavar="TIME", help="ISO 8601, UTC default")
    parser.add_argument("--end", type=parse_time, metavar="TIME", help="ISO 8601 (default now)")
    parser.set_defaults(default_since=parse_duration(default))


def _add_attributes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--attr",
        type=parse_attribute,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute equality, repeatable; VALUE is JSON when it parses (502, true)",
    )


def _add_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=0, help="page size (default: the API's)")
    parser.add_argument("--page-token", default="")


def _window(args: argparse.Namespace) -> tuple[Timestamp, Timestamp]:
    end = args.end if args.end is not None else time.time_ns()
    start = args.start if args.start is not None else end - (args.since or args.default_since)
    start_ts, end_ts = Timestamp(), Timestamp()
    start_ts.FromNanoseconds(start)
    end_ts.FromNanoseconds(end)
    return start_ts, end_ts


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    def body() -> None:
        response = call(
            args,
            settings.tenant_header,
            query_pb2_grpc.QueryServiceStub,
            "GetTrace",
            query_pb2.GetTraceRequest(trace_id=args.trace_id),
        )
        print(render_waterfall(response.trace, response.logs, args.width))
        if response.spans_truncated or response.logs_truncated:
            print("(truncated: the trace has more spans or logs than one answer holds)")

    return guarded(body)


def _traces(args: argparse.Namespace, settings: Settings) -> int:
    def body() -> None:
        start, end = _window(args)
        request = query_pb2.FindTracesRequest(
            service_name=args.service,
            operation_name=args.operation,
            attributes=args.attr,
            start_time=start,
            end_time=end,
            errors_only=args.errors,
            page_size=args.limit,
            page_token=args.page_token,
        )
        for field in ("min_duration", "max_duration"):
            if getattr(args, field) is not None:
                getattr(request, field).CopyFrom(_duration(getattr(args, field)))
        response = call(
            args, settings.tenant_header, query_pb2_grpc.QueryServiceStub, "FindTraces", request
        )
        print(f"{'START (UTC)':<24} {'DURATION':>9} {'SPANS':>5} {'ERR':>3}  TRACE ID  ROOT")
        for summary in response.traces:
            print(
                f"{_iso(summary.start_time.ToNanoseconds()):<24} "
                f"{format_duration(summary.duration.ToNanoseconds()):>9} "
                f"{summary.span_count:>5} {summary.error_count or '':>3}  {summary.trace_id}  "
                f"{summary.root_service_name}: {summary.root_span_name}"
            )
        _more(response.next_page_token)

    return guarded(body)


def _logs(args: argparse.Namespace, settings: Settings) -> int:
    def body() -> None:
        start, end = _window(args)
        request = query_pb2.SearchLogsRequest(
            start_time=start,
            end_time=end,
            service_name=args.service,
            min_severity=args.severity,
            trace_id=args.trace_id,
            body_contains=args.contains,
            attributes=args.attr,
            page_size=args.limit,
            page_token=args.page_token,
        )
        response = call(
            args, settings.tenant_header, query_pb2_grpc.QueryServiceStub, "SearchLogs", request
        )
        for resource_logs in response.logs.resource_logs:
            service = service_of(resource_logs.resource)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    when = record.time_unix_nano or record.observed_time_unix_nano
                    trace = f"  trace={record.trace_id.hex()}" if record.trace_id else ""
                    print(
                        f"{_iso(when)} {severity_name(record.severity_number, record.severity_text):<5} "
                        f"{service}: {body_text(record.body)}{trace}"
                    )
        _more(response.next_page_token)

    return guarded(body)


def _services(args: argparse.Namespace, settings: Settings) -> int:
    def body() -> None:
        start, end = _window(args)
        token = ""
        while True:
            request = query_pb2.GetServicesRequest(
                start_time=start, end_time=end, page_size=1000, page_token=token
            )
            response = call(
                args,
                settings.tenant_header,
                query_pb2_grpc.QueryServiceStub,
                "GetServices",
                request,
            )
            for name in response.services:
                print(name)
            token = response.next_page_token
            if not token:
                return

    return guarded(body)


def _duration(nanos: int) -> Duration:
    value = Duration()
    value.FromNanoseconds(nanos)
    return value


def _iso(unix_nano: int) -> str:
    moment = dt.datetime.fromtimestamp(unix_nano // 1_000_000_000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{unix_nano % 1_000_000_000 // 1_000_000:03d}Z"


def _more(token: str) -> None:
    if token:
        print(f"more: repeat with --page-token {token}")


def main(argv: Sequence[str] | None = None) -> int:
    """These commands alone: `python -m receiver.query.terminal trace ID`."""
    parser = argparse.ArgumentParser(prog="prodsentinel")
    add_commands(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    result: int = args.run(args, Settings.from_env())
    return result


if __name__ == "__main__":
    sys.exit(main())
