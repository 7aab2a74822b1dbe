"""The terminal client (`prodsentinel trace/traces/logs/services`) against a real server.

The commands run as a real process (`python -m receiver.query.terminal`, the same
argparse subcommands receiver/cli.py mounts), with asyncio subprocesses so the server on
the test's event loop keeps serving, and a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import pytest
from conftest import repo_root
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from test_query_find import MS, Shop
from test_query_server import export_logs, export_spans, kv

from receiver.query.terminal import add_commands

pytest_plugins = ["test_query_server"]


TIMEOUT_SECONDS = 60.0


async def _run(*argv: str) -> tuple[int, str, str]:
    """Run a command; return its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver.query.terminal",
        *argv,
        cwd=repo_root(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{argv} did not finish in {TIMEOUT_SECONDS}s")
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def shop_with_log(receiver, tenant) -> Shop:
    """The Shop traces, and a WARN log line inside the failing `charge` span."""
    shop = Shop()
    request = shop.request()
    await export_spans(receiver.port, tenant, request)
    charge = request.resource_spans[1].scope_spans[0].spans[0]
    logs = ExportLogsServiceRequest()
    resource_logs = logs.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", "payments"))
    record = resource_logs.scope_logs.add().log_records.add(
        time_unix_nano=shop.base + 60 * MS,
        severity_number=13,
        trace_id=charge.trace_id,
        span_id=charge.span_id,
    )
    record.body.string_value = "gateway slow"
    await export_logs(receiver.port, tenant, logs)
    return shop


async def test_trace_prints_a_waterfall_with_logs(shop_with_log, query_port, tenant) -> None:
    """`prodsentinel trace ID` prints the trace header, the root then its child indented
    with an error mark and the status message, and the child's log line beneath it."""
    code, out, _ = await _run(
        "trace",
        shop_with_log.ids["pay"].hex(),
        "--address",
        f"127.0.0.1:{query_port}",
        "--tenant",
        tenant,
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"Trace {shop_with_log.ids['pay'].hex()} · 2 spans · 2 services")
    assert lines[1].startswith("checkout: POST /pay ")
    assert lines[1].endswith("200.0ms")
    assert lines[2].startswith("  payments: charge ")
    assert "✗" in lines[2]
    assert lines[3].startswith("    │ ")
    assert lines[3].endswith("WARN  gateway slow")


async def test_unknown_trace_exits_1_with_the_status(query_port, tenant) -> None:
    """A trace the tenant does not have: exit status 1 and NOT_FOUND on stderr."""
    code, out, err = await _run(
        "trace", os.urandom(16).hex(), "--address", f"127.0.0.1:{query_port}"
    )
    assert (code, out) == (1, "")
    assert err.startswith("prodsentinel: NOT_FOUND: trace ")


async def test_traces_lists_summaries_with_filters(shop_with_log, query_port, tenant) -> None:
    """`prodsentinel traces` takes the API's filters (service, typed attribute, errors,
    durations, time window) and prints one line per trace; --limit pages."""
    common = ("--address", f"127.0.0.1:{query_port}", "--tenant", tenant, "--since", "2h")
    code, out, _ = await _run("traces", *common, "--attr", "amount=10", "--errors")
    assert code == 0
    (header, line) = out.splitlines()
    assert header.split()[:3] == ["START", "(UTC)", "DURATION"]
    assert line.split()[2:] == [
        "2",
        "1",
        shop_with_log.ids["pay"].hex(),
        "checkout:",
        "POST",
        "/pay",
    ]

    _, out, _ = await _run("traces", *common, "--min-duration", "1s")
    assert [shop_with_log.ids["search"].hex() in line for line in out.splitlines()[1:]] == [True]

    _, out, _ = await _run("traces", *common, "--limit", "1")
    assert len(out.splitlines()) == 3  # header, one trace, the page token hint
    assert out.splitlines()[-1].startswith("more: repeat with --page-token ")


async def test_logs_and_services(shop_with_log, query_port, tenant) -> None:
    """`prodsentinel logs` filters by severity and body text; `services` lists the
    tenant's services."""
    common = ("--address", f"127.0.0.1:{query_port}", "--tenant", tenant)
    code, out, _ = await _run("logs", *common, "--since", "2h", "--severity", "warn")
    assert code == 0
    (line,) = out.splitlines()
    assert line.endswith(f"WARN  payments: gateway slow  trace={shop_with_log.ids['pay'].hex()}")
    _, out, _ = await _run("logs", *common, "--since", "2h", "--contains", "nothing")
    assert out == ""

    code, out, _ = await _run("services", *common)
    assert (code, out.split()) == (0, ["checkout", "payments", "search"])


def test_bad_arguments_are_usage_errors(capsys) -> None:
    """A malformed duration or severity stops argparse with a usage message (exit 2)."""
    parser = argparse.ArgumentParser(prog="prodsentinel")
    add_commands(parser.add_subparsers(required=True))
    for argv in (["traces", "--since", "an hour"], ["logs", "--severity", "loud"]):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(argv)
        assert caught.value.code == 2
    assert "not a duration" in capsys.readouterr().err
