"""Severity rules (pure) and their rules file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.lifecycle import IncidentSeverity as Sev
from analyzer.severity import (
    SeverityFacts,
    SeverityRules,
    is_spike,
    load_rules,
    trace_severity,
    with_spike,
)
from receiver.errors import SettingsError

RULES = SeverityRules()


def facts(**overrides: object) -> SeverityFacts:
    values: dict[str, object] = {
        "fatal_log": False,
        "reached_entry": False,
        "unhandled": False,
        "services": ("a",),
        "origin_service": "a",
    }
    values.update(overrides)
    return SeverityFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, Sev.LOW),
        ({"unhandled": True}, Sev.MEDIUM),
        ({"reached_entry": True}, Sev.HIGH),
        ({"fatal_log": True}, Sev.CRITICAL),
        ({"services": ("a", "b", "c")}, Sev.MEDIUM),
        ({"reached_entry": True, "services": ("a", "b", "c")}, Sev.CRITICAL),
        ({"fatal_log": True, "services": ("a", "b", "c")}, Sev.CRITICAL),
    ],
)
def test_default_rules(given: dict[str, object], expected: Sev) -> None:
    """The documented defaults, with one escalation for errors across >= 3 services."""
    severity, reasons = trace_severity(facts(**given), RULES)
    assert severity is expected
    assert reasons


def test_critical_service_escalates_once_even_with_several_reasons() -> None:
    """A critical origin service escalates one level; two reasons still escalate only once."""
    rules = SeverityRules(critical_services=frozenset({"payments"}))
    assert trace_severity(facts(origin_service="payments"), rules)[0] is Sev.MEDIUM
    both = facts(origin_service="payments", services=("payments", "b", "c"))
    assert trace_severity(both, rules)[0] is Sev.MEDIUM


@pytest.mark.parametrize(
    ("recent", "previous_hour", "spike"),
    [(50, 0, True), (49, 0, False), (10, 12, True), (10, 13, False), (9, 1, False), (20, 0, False)],
)
def test_spikes(recent: int, previous_hour: int, spike: bool) -> None:
    """>= 50 in 5 minutes, or >= 10x the previous hour's rate with at least 10 occurrences."""
    assert is_spike(recent, previous_hour, RULES) is spike


def test_a_spike_escalates_unless_already_escalated() -> None:
    """A spike raises one level, but not on top of another escalation."""
    assert with_spike(Sev.LOW, ("x",), True)[0] is Sev.MEDIUM
    assert with_spike(Sev.MEDIUM, ("escalated: errors in 3 services",), True)[0] is Sev.MEDIUM
    assert with_spike(Sev.LOW, ("x",), False) == (Sev.LOW, ("x",))
    assert with_spike(Sev.CRITICAL, (), True)[0] is Sev.CRITICAL


def test_rules_file_toml_and_json(tmp_path: Path) -> None:
    """A TOML `[severity]` table or a JSON object overrides the named rules only."""
    toml = tmp_path / "rules.toml"
    toml.write_text(
        '[severity]\nentry_error = "critical"\ncritical_services = ["pay"]\nspike_count = 5\n'
    )
    rules = load_rules(toml)
    assert rules.entry_error is Sev.CRITICAL
    assert rules.critical_services == frozenset({"pay"})
    assert rules.spike_count == 5
    assert rules.handled_below_entry is Sev.LOW
    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps({"spike_ratio": 3, "fatal_log": "HIGH"}))
    rules = load_rules(as_json)
    assert (rules.spike_ratio, rules.fatal_log) == (3.0, Sev.HIGH)
    assert load_rules(None) == SeverityRules()


@pytest.mark.parametrize(
    "content",
    [
        '[severity]\nentry_error = "urgent"\n',
        "spike_count = 0\n",
        "nonsense = 1\n",
        "critical_services = 'a'\n",
        "not toml [",
    ],
)
def test_bad_rules_files_fail_naming_the_setting(tmp_path: Path, content: str) -> None:
    """An unknown rule, a bad value or a broken file is a SettingsError naming the variable."""
    path = tmp_path / "rules.toml"
    path.write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_rules(path)
    assert caught.value.variable == "PRODSENTINEL_INCIDENT_RULES_FILE"
