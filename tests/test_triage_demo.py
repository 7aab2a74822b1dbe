"""`prodsentinel demo`: the scenario generator's requests sent to a running receiver over
real OTLP/gRPC Export calls, stored for the demo tenant, with each scenario reported."""

from __future__ import annotations

import argparse
import asyncio

import asyncpg
import pytest

from analyzer.triage import demo
from analyzer.triage.scenarios import generate
from receiver.app import Receiver


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="prodsentinel")
    demo.add_commands(root.add_subparsers(dest="command", required=True))
    return root


def test_demo_arguments_and_defaults() -> None:
    """`demo` parses with the documented defaults and sets its `run` callable."""
    args = parser().parse_args(["demo"])
    assert (args.address, args.tenant, args.scenarios, args.seed) == (
        "localhost:4317",
        "demo",
        10,
        7,
    )
    assert args.run is demo.run
    args = parser().parse_args(["demo", "--scenarios", "3", "--seed", "11", "--tenant", "x"])
    assert (args.scenarios, args.seed, args.tenant) == (3, 11, "x")


def test_timestamps_move_to_now() -> None:
    """The fixed-clock scenario is shifted so that its earliest span starts at `now`,
    keeping every duration; the original requests are left as they were."""
    scenario = generate(1)[0]
    original = scenario.traces.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano
    now = 1_800_000_000_000_000_000
    traces, logs = demo.shifted(scenario, now)
    spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert min(s.start_time_unix_nano for s in spans) == now
    assert all(s.end_time_unix_nano >= s.start_time_unix_nano for s in spans)
    assert all(
        r.time_unix_nano >= now
        for rl in logs.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
    )
    assert (
        scenario.traces.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano == original
    )


async def test_demo_sends_scenarios_to_a_running_receiver(
    receiver: Receiver, db: asyncpg.Connection, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three scenarios go through real Export calls: every span and log of the generator is
    stored for the tenant, each scenario's fault and root cause is printed, and the user is
    told to list the tenant's incidents."""
    args = parser().parse_args(
        ["demo", "--address", f"127.0.0.1:{receiver.port}", "--tenant", tenant, "--scenarios", "3"]
    )
    assert await asyncio.to_thread(args.run, args, receiver.settings) == 0
    scenarios = generate(3, 7)
    sent_spans = sum(
        len(ss.spans) for s in scenarios for rs in s.traces.resource_spans for ss in rs.scope_spans
    )
    sent_logs = sum(
        len(sl.log_records)
        for s in scenarios
        for rl in s.logs.resource_logs
        for sl in rl.scope_logs
    )
    assert (
        await db.fetchval("SELECT count(*) FROM spans WHERE tenant_id = $1", tenant) == sent_spans
    )
    assert await db.fetchval("SELECT count(*) FROM logs WHERE tenant_id = $1", tenant) == sent_logs
    faulty = await db.fetchval(
        "SELECT count(DISTINCT trace_id) FROM spans WHERE tenant_id = $1 AND trace_id = ANY($2)",
        tenant,
        [s.trace_id for s in scenarios],
    )
    assert faulty == 3
    out = capsys.readouterr().out
    for scenario in scenarios:
        assert f"{scenario.name}: {scenario.fault.value}" in out
        assert scenario.root_cause in out
    assert f"prodsentinel incidents --tenant {tenant}" in out


def test_demo_reports_an_unreachable_instance(capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing listening, the demo exits 1 and says it cannot send."""
    args = parser().parse_args(["demo", "--address", "127.0.0.1:1", "--scenarios", "1"])
    assert args.run(args, None) == 1
    assert "cannot send to 127.0.0.1:1" in capsys.readouterr().out
