"""Tier-2 cost control across a fleet: the budget and cache in real Redis shared by several
clients, the per-incident lock raced by threads, the per-process concurrency limit, the
call timeout, and the PRODSENTINEL_LLM_* variables that configure them."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import redis
from analyzer_fixtures import *  # noqa: F403 - the fixtures
from dramatiq.brokers.stub import StubBroker

from analyzer.actors import IncidentActors
from analyzer.config import AnalyzerConfig
from analyzer.lifecycle import IncidentSeverity
from analyzer.triage import tier2
from analyzer.triage.llm_config import LLMConfig
from analyzer.triage.lock import IncidentLock, lock_key
from analyzer.triage.providers import Completion, Message
from analyzer.triage.quota import (
    BUCKET_GRACE_SECONDS,
    HOUR,
    MemoryBudget,
    RedisBudget,
    bucket_keys,
    cache_usable,
    permits,
)
from analyzer.triage.runner import Tier2Runner, run_tier2
from receiver.errors import SettingsError

GOOD = {
    "summary": "s",
    "root_cause": "r",
    "root_cause_service": "inventory",
    "confidence": 0.5,
    "suggested_actions": [],
    "affected_services": [],
}
CONFIG = LLMConfig(base_url="http://unused/v1", model="m", calls_per_hour=3, tokens_per_day=1000)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clients(redis_url: str) -> Iterator[list[redis.Redis]]:
    """Ten separate Redis clients: ten worker processes' connections."""
    made = [redis.Redis.from_url(redis_url) for _ in range(10)]
    yield made
    for client in made:
        client.close()


class GatedProvider:
    """A provider whose calls wait for `gate`; it counts calls and the most in flight."""

    name = "gated"
    model = "m"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.third_call = asyncio.Event()
        self.calls = self.in_flight = self.most_in_flight = 0

    async def complete(self, messages: Sequence[Message], max_tokens: int) -> Completion:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.entered.set()
        if self.calls == 3:
            self.third_call.set()
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return Completion(orjson.dumps(GOOD).decode(), 10, 5)


class RecordingConn:
    """Stands in for the database connection: records the statements run_tier2 executes."""

    def __init__(self) -> None:
        self.executed: list[tuple[Any, ...]] = []

    async def execute(self, query: str, *args: Any) -> str:
        self.executed.append(args)
        return "INSERT 0 1"


def evidence() -> Any:
    class Evidence:
        def to_json(self) -> dict[str, Any]:
            return {"summary": "x"}

    return Evidence()


def test_policy_is_pure() -> None:
    """The budget allows the limit's last call but not one more, refuses once the day's
    tokens are spent; a cached answer serves equal or lower severity only; buckets roll."""
    assert permits(3, 999, CONFIG)
    assert not permits(4, 0, CONFIG)
    assert not permits(1, 1000, CONFIG)
    assert cache_usable("high", "high")
    assert cache_usable("critical", "medium")
    assert not cache_usable("high", "critical")
    assert bucket_keys("ns", "t", 3599.0) != bucket_keys("ns", "t", 3600.0)
    assert bucket_keys("ns", "t", 0.0)[1] == bucket_keys("ns", "t", 86_399.0)[1]


def test_redis_budget_is_shared_and_expires(clients: list[redis.Redis], namespace: str) -> None:
    """Two workers' budgets count against one hourly budget, the buckets carry an expiry,
    tokens spent by one close the day for the other, and the cache is shared."""
    a, b = (RedisBudget(c, CONFIG, namespace) for c in clients[:2])
    assert [a.reserve("t"), b.reserve("t"), a.reserve("t"), b.reserve("t")] == [1, 1, 1, 0]
    calls_key, tokens_key = bucket_keys(namespace, "t", a.clock())
    assert 0 < clients[0].ttl(calls_key) <= HOUR + BUCKET_GRACE_SECONDS
    assert int(clients[0].get(calls_key) or 0) == 3  # the refused slot was given back
    assert b.reserve("other-tenant")
    b.spend("other-tenant", 1000)
    assert clients[0].ttl(bucket_keys(namespace, "other-tenant", a.clock())[1]) > HOUR
    assert not a.reserve("other-tenant")
    assert tokens_key != bucket_keys(namespace, "other-tenant", a.clock())[1]
    a.remember("t", "fp", "high", GOOD)
    assert b.cached("t", "fp", "high") == GOOD
    assert b.cached("t", "fp", "critical") is None  # severity rose: ask again
    assert b.cached("t", "other-fp", "high") is None
    assert 0 < clients[1].pttl(f"{namespace}:llm:cache:t:fp") <= CONFIG.cache_ttl_seconds * 1000


def test_racing_workers_never_exceed_the_hourly_budget(
    clients: list[redis.Redis], namespace: str
) -> None:
    """Ten threads with ten clients reserve at once: exactly calls_per_hour succeed."""
    budgets = [RedisBudget(c, CONFIG, namespace) for c in clients]
    start = threading.Barrier(len(budgets))

    def reserve(budget: RedisBudget) -> bool:
        start.wait()
        return budget.reserve("t")

    with ThreadPoolExecutor(len(budgets)) as pool:
        granted = list(pool.map(reserve, budgets))
    assert sum(granted) == CONFIG.calls_per_hour


def test_lock_is_exclusive_and_released_only_by_its_holder(
    clients: list[redis.Redis], namespace: str
) -> None:
    """Threads racing for one incident's lock: one token; a stranger's token releases
    nothing; the holder's release frees it; the lock expires after its TTL at most."""
    locks = [IncidentLock(c, namespace, ttl_seconds=70.0) for c in clients]
    start = threading.Barrier(len(locks))

    def acquire(lock: IncidentLock) -> str | None:
        start.wait()
        return lock.acquire("t", 42)

    with ThreadPoolExecutor(len(locks)) as pool:
        tokens = list(pool.map(acquire, locks))
    holders = [(lock, token) for lock, token in zip(locks, tokens, strict=True) if token]
    assert len(holders) == 1
    holder, token = holders[0]
    assert 60_000 < clients[0].pttl(lock_key(namespace, "t", 42)) <= 70_000
    assert not locks[0].release("t", 42, "not-the-token")
    assert locks[1].acquire("t", 42) is None
    assert holder.release("t", 42, token)
    assert locks[1].acquire("t", 42) is not None


async def test_second_worker_skips_an_incident_being_analysed(
    clients: list[redis.Redis], namespace: str
) -> None:
    """Worker A is inside the model call for incident 7 when worker B (its own Redis client)
    reaches tier 2 for it: B makes no call and records nothing; A stores its answer and
    releases the lock."""
    provider_a, provider_b = GatedProvider(), GatedProvider()
    runner_a, runner_b = (
        Tier2Runner(CONFIG, p, RedisBudget(c, CONFIG, namespace), IncidentLock(c, namespace, 70))
        for p, c in ((provider_a, clients[0]), (provider_b, clients[1]))
    )
    conn_a, conn_b = RecordingConn(), RecordingConn()
    high = IncidentSeverity.HIGH
    task_a = asyncio.create_task(
        run_tier2(conn_a, "t", 7, "created", runner_a, high, "fp", evidence())  # type: ignore[arg-type]
    )
    await provider_a.entered.wait()
    await run_tier2(conn_b, "t", 7, "severity:high", runner_b, high, "fp", evidence())  # type: ignore[arg-type]
    assert (provider_b.calls, conn_b.executed) == (0, [])
    provider_a.gate.set()
    await task_a
    assert provider_a.calls == 1
    assert len(conn_a.executed) == 1
    assert clients[0].exists(lock_key(namespace, "t", 7)) == 0


async def test_concurrency_limit_bounds_calls_in_flight() -> None:
    """With max_concurrency=2, four incidents analysed at once never have more than two
    model calls in flight; all four are answered once the first calls return."""
    config = LLMConfig(base_url="http://unused/v1", model="m", max_concurrency=2)
    provider = GatedProvider()
    runner = Tier2Runner(config, provider, MemoryBudget(config))
    conns = [RecordingConn() for _ in range(4)]
    tasks = [
        asyncio.create_task(
            run_tier2(conn, "t", n, "created", runner, IncidentSeverity.HIGH, f"fp{n}", evidence())  # type: ignore[arg-type]
        )
        for n, conn in enumerate(conns)
    ]
    while provider.in_flight < 2:
        provider.entered.clear()
        await provider.entered.wait()
    with pytest.raises(TimeoutError):  # without the limit a third call starts at once
        await asyncio.wait_for(provider.third_call.wait(), 0.5)
    provider.gate.set()
    await asyncio.gather(*tasks)
    assert provider.most_in_flight == 2
    assert all(len(conn.executed) == 1 for conn in conns)


async def test_a_provider_call_past_the_timeout_fails_the_analysis() -> None:
    """A model that never answers is cut at timeout_seconds: the outcome is "failed"."""
    config = LLMConfig(base_url="http://unused/v1", model="m", timeout_seconds=0.2)
    outcome = await tier2.analyse(
        GatedProvider(),
        config,
        MemoryBudget(config),
        tenant="t",
        fingerprint="fp",
        severity=IncidentSeverity.CRITICAL,
        evidence={"summary": "x"},
    )
    assert outcome.status == "failed"
    assert "no answer within 0.2s" in outcome.error


def test_environment_configures_cost_control_and_redaction() -> None:
    """The new PRODSENTINEL_LLM_* variables are read and validated; extra redaction
    patterns are applied to the evidence; a bad value names its variable."""
    config = LLMConfig.from_environment(
        {
            "PRODSENTINEL_LLM_CALLS_PER_HOUR": "5",
            "PRODSENTINEL_LLM_TOKENS_PER_DAY": "9000",
            "PRODSENTINEL_LLM_TIMEOUT_SECONDS": "12.5",
            "PRODSENTINEL_LLM_MAX_CONCURRENCY": "4",
            "PRODSENTINEL_LLM_REDACT_PATTERNS": r"ACME-\d+, cust_[a-z]+",
        }
    )
    assert (config.calls_per_hour, config.tokens_per_day) == (5, 9000)
    assert (config.timeout_seconds, config.max_concurrency) == (12.5, 4)
    assert config.lock_ttl_seconds > 2 * config.timeout_seconds
    text = tier2.build_messages({"note": "ACME-123 for cust_bob"}, config)[1].content
    assert "ACME-123" not in text
    assert "cust_bob" not in text
    assert "[REDACTED:custom_0]" in text
    assert "[REDACTED:custom_1]" in text
    bad = {
        "PRODSENTINEL_LLM_REDACT_PATTERNS": "ok,(unclosed",
        "PRODSENTINEL_LLM_CALLS_PER_HOUR": "many",
        "PRODSENTINEL_LLM_TOKENS_PER_DAY": "-1",
        "PRODSENTINEL_LLM_TIMEOUT_SECONDS": "0",
        "PRODSENTINEL_LLM_MAX_CONCURRENCY": "0",
    }
    for name, value in bad.items():
        with pytest.raises(SettingsError, match=name):
            LLMConfig.from_environment({name: value})


def test_worker_actors_use_the_marks_redis_for_tier2(analyzer_config: AnalyzerConfig) -> None:
    """A worker with a provider configured keeps its budget and locks in the marks Redis
    (shared by the fleet), with the limit sized by max_concurrency."""
    llm = LLMConfig(base_url="http://unused/v1", model="m", max_concurrency=3)
    actors = IncidentActors(StubBroker(), analyzer_config, llm=llm)
    assert actors.tier2 is not None
    assert isinstance(actors.tier2.budget, RedisBudget)
    assert actors.tier2.lock is not None
    assert actors.tier2.budget.namespace == analyzer_config.namespace
    assert actors.tier2.limit._value == 3
    assert IncidentActors(StubBroker(), analyzer_config).tier2 is None
