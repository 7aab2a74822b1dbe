"""Evaluate tier-1 triage on generated fault scenarios: top-1 and top-3 root-cause accuracy.

    python -m analyzer.triage.evaluate --scenarios 60

Each scenario's OTLP requests go through the receiver's own mapping (`spans_to_rows`,
`logs_to_rows`); the rows become the records the analyzer loads from the database, and
tier 1 ranks the faulty trace's candidates.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from collections.abc import Sequence

import orjson

from analyzer.origin import LogRecord, SpanRecord
from analyzer.triage import tier1
from analyzer.triage.scenarios import Scenario, generate
from receiver.mapping.logs import logs_to_rows
from receiver.mapping.rows import LogRow, SpanRow
from receiver.mapping.spans import spans_to_rows
from receiver.settings import Limits

TENANT = "evaluation"


@dataclasses.dataclass(frozen=True)
class Report:
    """Accuracy over a set of scenarios, overall and per fault kind."""

    scenarios: int
    top1: float
    top3: float
    by_fault: dict[str, tuple[int, int]]  # fault -> (top-1 hits, scenarios)
    misses: tuple[str, ...]

    def render(self) -> str:
        lines = [
            f"scenarios: {self.scenarios}",
            f"top-1 root-cause-service accuracy: {self.top1:.3f}",
            f"top-3 root-cause-service accuracy: {self.top3:.3f}",
        ]
        for fault, (hits, total) in sorted(self.by_fault.items()):
            lines.append(f"  {fault}: {hits}/{total}")
        lines.extend(f"  miss: {miss}" for miss in self.misses)
        return "\n".join(lines)


def span_record(row: SpanRow) -> SpanRecord:
    """A mapped span row as the record `analyzer.store.signals.load_trace` returns."""
    return SpanRecord(
        signal_id=row.signal_id,
        span_id=row.span_id,
        parent_span_id=row.parent_span_id,
        service_name=row.service_name,
        name=row.name,
        kind=row.kind,
        status_code=row.status_code,
        status_message=row.status_message,
        start_unix_nano=row.start_time_unix_nano,
        events=orjson.loads(row.events),
        attributes=orjson.loads(row.attributes),
    )


def log_record(row: LogRow) -> LogRecord:
    """A mapped log row as the record the analyzer loads."""
    return LogRecord(
        signal_id=row.signal_id,
        trace_id=row.trace_id,
        service_name=row.service_name,
        scope_name=row.scope_name,
        time_unix_nano=row.time_unix_nano or row.observed_time_unix_nano,
        severity_number=row.severity_number,
        severity_text=row.severity_text,
        body=orjson.loads(row.body),
        attributes=orjson.loads(row.attributes),
    )


def ranked_services(scenario: Scenario) -> list[str]:
    """Tier 1's candidate services for the scenario's faulty trace, best first."""
    limits = Limits()
    spans = [
        span_record(row)
        for row in spans_to_rows(scenario.traces, TENANT, limits).rows
        if row.trace_id == scenario.trace_id
    ]
    spans.sort(key=lambda s: s.start_unix_nano)
    logs = [
        log_record(row)
        for row in logs_to_rows(scenario.logs, TENANT, limits).rows
        if row.trace_id == scenario.trace_id
    ]
    result = tier1.analyse(spans, logs)
    return [c.service for c in result.candidates] if result else []


def evaluate(scenarios: Sequence[Scenario]) -> Report:
    """Score tier 1 against each scenario's labelled root cause."""
    top1 = top3 = 0
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    misses = []
    for scenario in scenarios:
        ranked = ranked_services(scenario)
        totals[scenario.fault.value] += 1
        if ranked[:1] == [scenario.root_cause]:
            top1 += 1
            hits[scenario.fault.value] += 1
        else:
            misses.append(
                f"{scenario.name} {scenario.fault.value}: {scenario.root_cause} vs {ranked[:3]}"
            )
        top3 += scenario.root_cause in ranked[:3]
    n = max(len(scenarios), 1)
    by_fault = {fault: (hits[fault], total) for fault, total in totals.items()}
    return Report(len(scenarios), top1 / n, top3 / n, by_fault, tuple(misses))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenarios", type=int, default=60, help="how many scenarios (>= 1)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the generator")
    args = parser.parse_args(argv)
    if args.scenarios < 1:
        parser.error("--scenarios must be at least 1")
    print(evaluate(generate(args.scenarios, args.seed)).render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
