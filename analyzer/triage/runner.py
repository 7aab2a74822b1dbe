"""Running tier-1 triage for an incident after an occurrence is recorded.

Triage runs when an incident is created and when its severity rises (the trigger names
which: "created" or "severity:<level>"); (incident, tier, trigger) is unique, so running
twice for one trigger stores one analysis. It runs after the occurrence's transaction has
committed and never fails the occurrence: an error is logged and the incident keeps
whatever analyses it had (a later severity rise triages again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import orjson
import redis
import structlog

from analyzer.lifecycle import IncidentSeverity
from analyzer.origin import LogRecord, SpanRecord
from analyzer.store import analyses as analysis_store
from analyzer.store.common import Conn
from analyzer.triage import tier1, tier2
from analyzer.triage.llm_config import LLMConfig
from analyzer.triage.lock import IncidentLock
from analyzer.triage.providers import Provider
from analyzer.triage.providers.openai_compatible import OpenAICompatibleProvider
from analyzer.triage.quota import CostControl, MemoryBudget, RedisBudget

log = structlog.get_logger(__name__)
TIER1 = 1
TIER2 = 2
CREATED = "created"


def trigger_of(
    created: bool, before: IncidentSeverity | None, after: IncidentSeverity
) -> str | None:
    """Why triage should run for this occurrence: a new incident, a severity rise, or not."""
    if created or before is None:
        return CREATED
    if after.rank > before.rank:
        return f"severity:{after.value}"
    return None


@dataclasses.dataclass
class Tier2Runner:
    """Tier 2 for one worker process: its settings and provider, the fleet's budget, cache
    and incident locks (in Redis), and the process's limit on model calls in flight."""

    config: LLMConfig
    provider: Provider | None
    budget: CostControl
    lock: IncidentLock | None = None
    limit: asyncio.Semaphore = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.limit = asyncio.Semaphore(self.config.max_concurrency)

    @classmethod
    def from_config(
        cls, config: LLMConfig, marks: redis.Redis | None = None, namespace: str = "prodsentinel"
    ) -> Tier2Runner | None:
        """A runner when a provider is configured, else None (tier 2 never calls out).

        With the marks Redis, budget, cache and locks are shared by every worker; without
        it (tools, tests) they are this process's own and there is no lock."""
        if not config.enabled or config.base_url is None or config.model is None:
            return None
        provider = OpenAICompatibleProvider(
            config.base_url, config.model, config.api_key, timeout_seconds=config.timeout_seconds
        )
        if marks is None:
            return cls(config, provider, MemoryBudget(config))
        lock = IncidentLock(marks, namespace, config.lock_ttl_seconds)
        return cls(config, provider, RedisBudget(marks, config, namespace), lock)


async def run_tier1(
    conn: Conn,
    tenant: str,
    incident_id: int,
    trigger: str,
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord],
    *,
    tier2_runner: Tier2Runner | None = None,
    severity: IncidentSeverity | None = None,
    fingerprint: str = "",
) -> bool:
    """Analyse the occurrence's trace and store the result (then tier 2 when configured and
    the incident is severe enough); True when a tier-1 row was stored."""
    try:
        if await analysis_store.analysis_exists(conn, incident_id, TIER1, trigger):
            return False
        history = await analysis_store.incident_history(conn, tenant, incident_id)
        started = time.perf_counter()
        result = tier1.analyse(spans, logs, history)
        latency_ms = (time.perf_counter() - started) * 1000
        stored = await analysis_store.insert_analysis(
            conn,
            tenant,
            incident_id,
            tier=TIER1,
            trigger=trigger,
            status="ok" if result is not None else "skipped",
            result=result.to_json() if result is not None else {},
            latency_ms=latency_ms,
        )
    except Exception:
        log.exception("triage_failed", tenant=tenant, incident_id=incident_id, trigger=trigger)
        return False
    if stored and result is not None and tier2_runner is not None and severity is not None:
        await run_tier2(
            conn, tenant, incident_id, trigger, tier2_runner, severity, fingerprint, result
        )
    log.info(
        "triage_recorded",
        tenant=tenant,
        incident_id=incident_id,
        trigger=trigger,
        stored=stored,
        root_cause=result.root_cause_service if result is not None else None,
    )
    return stored


async def run_tier2(
    conn: Conn,
    tenant: str,
    incident_id: int,
    trigger: str,
    runner: Tier2Runner,
    severity: IncidentSeverity,
    fingerprint: str,
    evidence: tier1.Tier1Result,
) -> None:
    """Ask the model about the tier-1 evidence and store its answer (or its failure).

    At most `max_concurrency` of these run at once in the process; the incident's lock is
    taken after that wait, so its expiry only has to cover the analysis itself. When
    another worker holds the lock this one records nothing (see analyzer/triage/lock.py).
    """
    async with runner.limit:
        lock = runner.lock
        try:
            token = await asyncio.to_thread(lock.acquire, tenant, incident_id) if lock else None
        except Exception:
            log.exception("tier2_lock_failed", tenant=tenant, incident_id=incident_id)
            return
        if lock is not None and token is None:
            log.info("tier2_locked", tenant=tenant, incident_id=incident_id, trigger=trigger)
            return
        try:
            await _analyse_and_store(
                conn, tenant, incident_id, trigger, runner, severity, fingerprint, evidence
            )
        finally:
            if lock is not None and token is not None:
                await asyncio.to_thread(lock.release, tenant, incident_id, token)


async def _analyse_and_store(
    conn: Conn,
    tenant: str,
    incident_id: int,
    trigger: str,
    runner: Tier2Runner,
    severity: IncidentSeverity,
    fingerprint: str,
    evidence: tier1.Tier1Result,
) -> None:
    try:
        started = time.perf_counter()
        outcome = await tier2.analyse(
            runner.provider,
            runner.config,
            runner.budget,
            tenant=tenant,
            fingerprint=fingerprint,
            severity=severity,
            evidence=evidence.to_json(),
        )
        if outcome.status == "skipped":
            log.info("tier2_skipped", tenant=tenant, incident_id=incident_id, why=outcome.error)
            return
        await conn.execute(
            """
            INSERT INTO analysis_results (tenant_id, incident_id, tier, trigger, status,
                provider, model, prompt_hash, input_tokens, output_tokens, latency_ms,
                result, error)
            VALUES ($1, $2, 2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12)
            ON CONFLICT ON CONSTRAINT analysis_results_trigger DO NOTHING
            """,
            tenant,
            incident_id,
            trigger,
            "failed" if outcome.status == "failed" else "ok",
            runner.provider.name if runner.provider else "",
            runner.config.model or "",
            outcome.prompt_hash,
            outcome.input_tokens,
            outcome.output_tokens,
            (time.perf_counter() - started) * 1000,
            orjson.dumps(outcome.result | {"cached": outcome.status == "cached"}).decode(),
            outcome.error,
        )
    except Exception:
        log.exception("tier2_failed", tenant=tenant, incident_id=incident_id)
