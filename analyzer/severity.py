"""Severity rules: pure functions of what a trace shows, with documented, overridable defaults.

Defaults (each overridable in a TOML or JSON rules file, `[severity]` table or top level):

| rule | default |
|---|---|
| a FATAL/CRITICAL log (severity_number >= 21, or text FATAL/CRITICAL) | `fatal_log = "critical"` |
| the error reaches the trace's root/entry span | `entry_error = "high"` |
| an unhandled error below the root (a span with status ERROR) | `unhandled_below_entry = "medium"` |
| a handled error below the root (exception event or error log only) | `handled_below_entry = "low"` |
| escalate one level when errors span this many services in one trace | `escalate_services = 3` |
| escalate one level when the origin service is critical (the service catalog) | `critical_services = []` |
| escalate one level on a spike: this many occurrences within the window... | `spike_count = 50`, `spike_window_seconds = 300` |
| ...or this many times the previous hour's rate (with at least `spike_min_count`) | `spike_ratio = 10.0`, `spike_min_count = 10` |

Escalation is one level whatever the number of reasons, capped at critical.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analyzer.lifecycle import IncidentSeverity
from receiver.errors import SettingsError

RULES_FILE_VARIABLE = "PRODSENTINEL_INCIDENT_RULES_FILE"
FATAL_SEVERITY_NUMBER = 21
FATAL_TEXTS = frozenset({"FATAL", "CRITICAL", "EMERGENCY", "ALERT"})


@dataclasses.dataclass(frozen=True, slots=True)
class SeverityRules:
    fatal_log: IncidentSeverity = IncidentSeverity.CRITICAL
    entry_error: IncidentSeverity = IncidentSeverity.HIGH
    unhandled_below_entry: IncidentSeverity = IncidentSeverity.MEDIUM
    handled_below_entry: IncidentSeverity = IncidentSeverity.LOW
    escalate_services: int = 3
    critical_services: frozenset[str] = frozenset()
    spike_count: int = 50
    spike_window_seconds: float = 300.0
    spike_ratio: float = 10.0
    spike_min_count: int = 10


@dataclasses.dataclass(frozen=True, slots=True)
class SeverityFacts:
    """What the rules look at, as found in one trace (or one traceless error log)."""

    fatal_log: bool
    reached_entry: bool
    unhandled: bool
    services: tuple[str, ...]
    origin_service: str


def trace_severity(
    facts: SeverityFacts, rules: SeverityRules
) -> tuple[IncidentSeverity, tuple[str, ...]]:
    """The severity of one occurrence before spikes are considered, and why."""
    if facts.fatal_log:
        severity, reasons = rules.fatal_log, ["a FATAL/CRITICAL log"]
    elif facts.reached_entry:
        severity, reasons = rules.entry_error, ["the error reached the trace's entry span"]
    elif facts.unhandled:
        severity, reasons = rules.unhandled_below_entry, ["an unhandled error below the entry span"]
    else:
        severity, reasons = rules.handled_below_entry, ["a handled error below the entry span"]
    escalations = []
    if len(facts.services) >= rules.escalate_services:
        escalations.append(f"errors in {len(facts.services)} services")
    if facts.origin_service in rules.critical_services:
        escalations.append(f"{facts.origin_service} is a critical service")
    if escalations:
        severity = severity.escalated()
        reasons.append("escalated: " + ", ".join(escalations))
    return severity, tuple(reasons)


def is_spike(in_window: int, previous_hour: int, rules: SeverityRules) -> bool:
    """True when occurrences in the spike window are many, or far above the previous hour's rate.

    `in_window` counts occurrences in the last `spike_window_seconds` (this one included),
    `previous_hour` those in the hour before that window.
    """
    if in_window >= rules.spike_count:
        return True
    if in_window < rules.spike_min_count or previous_hour == 0:
        return False
    window_rate = in_window / rules.spike_window_seconds
    hour_rate = previous_hour / 3600.0
    return window_rate >= rules.spike_ratio * hour_rate


def with_spike(
    severity: IncidentSeverity, reasons: tuple[str, ...], spike: bool
) -> tuple[IncidentSeverity, tuple[str, ...]]:
    """Escalate one level for a spike (unless another reason already escalated this occurrence)."""
    if not spike or any(reason.startswith("escalated") for reason in reasons):
        return severity, (*reasons, "occurrences spiking") if spike else reasons
    return severity.escalated(), (*reasons, "escalated: occurrences spiking")


def load_rules(path: Path | None) -> SeverityRules:
    """The default rules, overridden by a TOML (.toml) or JSON file; errors name the file."""
    if path is None:
        return SeverityRules()
    try:
        raw = path.read_bytes()
        data: Any = tomllib.loads(raw.decode()) if path.suffix != ".json" else json.loads(raw)
    except (OSError, ValueError) as error:
        raise SettingsError(RULES_FILE_VARIABLE, f"cannot read {path}: {error}") from None
    if isinstance(data, Mapping) and isinstance(data.get("severity"), Mapping):
        data = data["severity"]
    if not isinstance(data, Mapping):
        raise SettingsError(RULES_FILE_VARIABLE, f"{path} must hold a table of rules")
    return rules_from_mapping(data, str(path))


def rules_from_mapping(data: Mapping[str, Any], source: str = "rules") -> SeverityRules:
    defaults = SeverityRules()
    known = {field.name for field in dataclasses.fields(SeverityRules)}
    unknown = set(data) - known
    if unknown:
        raise SettingsError(RULES_FILE_VARIABLE, f"{source}: unknown rule(s) {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        try:
            if isinstance(default, IncidentSeverity):
                values[name] = IncidentSeverity(str(value).lower())
            elif isinstance(default, frozenset):
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise ValueError("must be a list of service names")
                values[name] = frozenset(value)
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError("must be an integer >= 1")
                values[name] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise ValueError("must be a number > 0")
                values[name] = float(value)
        except (TypeError, ValueError) as error:
            raise SettingsError(RULES_FILE_VARIABLE, f"{source}: {name} {error}") from None
    return dataclasses.replace(defaults, **values)
