"""The scenario generator and the tier-1 evaluation over it."""

from __future__ import annotations

import random

import pytest

from analyzer.triage.evaluate import evaluate, main, ranked_services
from analyzer.triage.scenarios import DATABASE, QUEUE, Fault, build, generate
from analyzer.triage.tier1 import rank_candidates
from tests.test_triage_tier1 import CLIENT, ERROR, span


def test_scenarios_are_real_otlp_with_every_fault_kind() -> None:
    """Scenarios cycle through the fault kinds, carry the faulty trace and unrelated traffic."""
    scenarios = generate(10, seed=3)
    assert {s.fault for s in scenarios} == set(Fault)
    for scenario in scenarios:
        trace_ids = {
            span.trace_id
            for resource in scenario.traces.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }
        assert scenario.trace_id in trace_ids
        assert len(trace_ids) >= 2  # noise traffic besides the faulty request
        assert scenario.traces.SerializeToString()  # a valid protobuf message


def test_dependency_faults_are_labelled_with_the_dependency() -> None:
    """Database and queue faults name the uninstrumented peer as the true root cause."""
    rng = random.Random(1)
    assert build(Fault.DATABASE, rng, "db").root_cause == DATABASE
    assert build(Fault.QUEUE, rng, "q").root_cause == QUEUE


@pytest.mark.parametrize("fault", list(Fault))
def test_tier1_finds_each_fault_kind(fault: Fault) -> None:
    """Through the receiver's mapping, tier 1 ranks the injected root cause first."""
    scenario = build(fault, random.Random(11), "one")
    assert ranked_services(scenario)[0] == scenario.root_cause


def test_accuracy_meets_the_target() -> None:
    """Over 60 scenarios top-1 accuracy is at least 0.8 and top-3 at least top-1."""
    report = evaluate(generate(60))
    assert report.scenarios == 60
    assert report.top1 >= 0.8
    assert report.top3 >= report.top1
    assert sum(total for _, total in report.by_fault.values()) == 60


def test_retried_failure_is_handled_noise() -> None:
    """A failed call retried successfully does not hide its parent's own failure."""
    root = span("orders", status=ERROR, message="invalid state")
    attempt = span("orders", root, kind=CLIENT, status=ERROR, attributes={"peer.service": "inv"})
    retry = span("orders", root, kind=CLIENT, name=attempt.name)
    ranked = rank_candidates([root, attempt, retry], [])
    assert ranked[0].service == "orders"
    assert not next(c for c in ranked if c.service == "inv").fatal


def test_command_prints_the_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m analyzer.triage.evaluate --scenarios N` prints both accuracies."""
    assert main(["--scenarios", "5"]) == 0
    out = capsys.readouterr().out
    assert "top-1 root-cause-service accuracy: " in out
    assert "top-3 root-cause-service accuracy: " in out
    with pytest.raises(SystemExit):
        main(["--scenarios", "0"])
